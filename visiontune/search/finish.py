"""The end of a search: rank on validation, evaluate the top-k once on test, write the record.

The ranking uses the validation metric only (each trial's best epoch); the test split is looked
at once, after the search, for the top-k trials, from their best checkpoints. The run folder
then holds the ranked table, the trial summaries, the test results and predictions, and
``search.json`` gains the bytes the search keeps on disk.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from visiontune import record, runs
from visiontune.data.splits import DataSplits
from visiontune.record import TrialRecord
from visiontune.search.options import SearchOptions, SearchPlan
from visiontune.storage import RunStore
from visiontune.trained import TrainedModel


def best_checkpoint(result, metric: str, best_epoch: int):
    """The checkpoint of a trial's best validation epoch among those Ray kept (the best and the
    latest), chosen by the rule every reader of the run folder uses (``record.choose_checkpoint``)."""
    kept = [(checkpoint, metrics.get(metric), metrics.get(record.EPOCH))
            for checkpoint, metrics in (result.best_checkpoints or [])]
    return record.choose_checkpoint(kept, best_epoch)


def load_trial_state(checkpoint) -> dict[str, Any]:
    """The trial loop's saved state from a Ray checkpoint."""
    with checkpoint.as_directory() as folder:
        return runs.load_checkpoint(Path(folder) / record.STATE_FILE)


def evaluate_top_k(results: dict[str, Any], ranked: list[tuple[TrialRecord, float | None, int]], metric: str,
                   data: DataSplits, top_k: int, progress: Callable[[str], None]
                   ) -> tuple[dict[str, dict], dict[str, bytes], dict[str, Any]]:
    """Evaluate the ``top_k`` best trials once on the test split, from their best checkpoints,
    through the model layer (``trained.TrainedModel``: what predict and export run), each at the
    precision it trained in; then, where there are several, their ensemble (what ``predict
    --ensemble K`` runs), for the record.

    ``results`` maps trial ids to their ``ray.tune.Result``. Returns ``{trial_id: {"rank",
    "best_epoch", "best_METRIC", "test/...", "config"}}``, per trial the predictions as ``.npz``
    bytes, and the ensemble's ``{"members": [trial ids], "test/...": ...}`` (empty for one).
    """
    evaluated, predictions, members = {}, {}, []
    candidates = [(trial, value, epoch) for trial, value, epoch in ranked if value is not None][:top_k]
    for position, (trial, value, epoch) in enumerate(candidates, start=1):
        checkpoint = best_checkpoint(results[trial.trial_id], metric, epoch)
        if checkpoint is None:
            progress(f"warning: trial {trial.trial_id} has no checkpoint to evaluate on test; skipped")
            continue
        state = load_trial_state(checkpoint)
        weights, bf16 = runs.weights_of(state)
        members.append((trial.trained_config(), weights, bool(bf16)))
        model = TrainedModel.from_weights(data.card, members[-1:], source=f"trial {trial.trial_id}")
        tested = model.evaluate(data.test, "test", artefacts=True)
        evaluated[trial.trial_id] = {"rank": position, record.BEST_EPOCH: int(state[record.BEST_EPOCH]),
                                     record.best_column(metric): value, **tested.metrics, "config": trial.config}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **tested.artefacts)
        predictions[trial.trial_id] = buffer.getvalue()
    ensemble = {}
    if len(members) > 1:
        model = TrainedModel.from_weights(data.card, members, source=f"the top {len(members)}")
        ensemble = {"members": list(evaluated), **model.evaluate(data.test, "test").metrics}
    return evaluated, predictions, ensemble


def pareto_front(trials: list[TrialRecord], metric: str) -> list[dict[str, Any]]:
    """Trials not dominated in (best validation metric: higher, learnable weights: fewer)."""
    scored = [(t, t.best(metric)[0], t.weights()) for t in trials]
    scored = [(t, value, weights) for t, value, weights in scored if value is not None and weights is not None]
    front = [(t, value, weights) for t, value, weights in scored
             if not any(v >= value and w <= weights and (v > value or w < weights) for _, v, w in scored)]
    return [{"trial_id": t.trial_id, metric: value, record.PARAMS: weights, "config": t.config}
            for t, value, weights in sorted(front, key=lambda item: item[2])]


def disk_usage(store: RunStore, trials: list[TrialRecord], deleted: int) -> dict[str, Any]:
    """What the run folder keeps on disk: all bytes, the checkpoints' bytes, who still has some."""
    kept, checkpoint_bytes = [], 0
    for trial in trials:
        folder = record.trial_dirname(trial.trial_id)
        names = [n for n in store.list_dir(folder) if n.startswith(record.CHECKPOINT_PREFIX)]
        if names:
            kept.append(trial.trial_id)
            checkpoint_bytes += sum(store.size(f"{folder}/{name}") for name in names)
    return {"bytes": store.size(), "checkpoint_bytes": checkpoint_bytes, "trials_with_checkpoints": kept,
            "checkpoints_deleted": deleted}


def finish_search(result_grid, options: SearchOptions, plan: SearchPlan, splits: DataSplits, store: RunStore,
                  checkpoints_deleted: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Rank the trials, evaluate the top-k on test once, write the run folder's summary files."""
    metric = plan.metric
    results = list(result_grid)
    trials = [record.trial_from_result(r, store.root, options.max_epochs, plan.deadline) for r in results]
    ranked = record.rank(trials, metric)
    by_id = {trial.trial_id: result for trial, result in zip(trials, results)}
    # A fold search or refit (analyze --cv) has no test images: its caller ranks by out-of-fold figures first.
    tested = 0 if options.cv_folds else options.top_k
    test, predictions, ensemble = evaluate_top_k(by_id, ranked, metric, splits, tested, progress)
    table = record.ranked_table(trials, metric, test)
    store.write_text(record.TRIALS_CSV, table.to_csv(index=False))
    store.write_text(record.TRIALS_JSON, json.dumps([t.summary(metric) for t, _, _ in ranked], indent=2, default=str))
    store.write_text(record.TEST_FILE, json.dumps({"metric": metric, "split": splits.describe(), "trials": test,
                                                   **({"ensemble": ensemble} if ensemble else {})},
                                                  indent=2, default=str))
    for trial_id, data in predictions.items():
        store.write_bytes(f"{record.PREDICTIONS_DIR}/{trial_id}.npz", data)
    front = pareto_front(trials, metric) if plan.objectives else []
    if plan.objectives:
        store.write_text(record.PARETO_FILE, json.dumps(front, indent=2))
    disk = disk_usage(store, trials, checkpoints_deleted)
    search = json.loads(store.read_text(record.SEARCH_FILE))
    store.write_text(record.SEARCH_FILE, json.dumps({**search, "disk": disk}, indent=2, default=str))
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    _print_ranking(table, metric, tested, counts, store.location, disk, progress)
    return {"name": options.name, "location": store.location, "report": options.report, "trials": len(trials), "status": counts,
            "metric": metric, "top": test, "pareto": [point["trial_id"] for point in front], "disk": disk}


def _print_ranking(table, metric: str, top_k: int, counts: dict[str, int], location: str, disk: dict[str, Any],
                   progress: Callable[[str], None]) -> None:
    from visiontune.tables import to_terminal

    shown = table.drop(columns=[c for c in (*record.PLACEMENT_COLUMNS, record.PARAMS) if c in table])
    progress(f"\n{sum(counts.values())} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    looked = f"test metrics once, for the top {top_k}" if top_k else "no test images: a fold search"
    progress(f"top trials by {metric} (validation; {looked}):\n{to_terminal(shown, max(top_k, 5))}")
    progress(f"run folder: {location} ({disk['bytes'] / 1e6:.1f} MB; checkpoints of "
             f"{len(disk['trials_with_checkpoints'])} trials kept, {disk['checkpoints_deleted']} deleted)")
