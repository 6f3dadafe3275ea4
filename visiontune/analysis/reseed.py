"""Robust ranking: retrain the top-k configurations with further seeds and rank them by the mean.

One search trial is one draw of weight initialisation, batch order and augmentation; on a
17-image validation set the winner can be lucky. ``--reseed N`` retrains each of the top-k
configurations with N more seeds, ranks the configurations by their mean best validation
metric, and reports the test metric as mean and standard deviation over the same runs.

The retrains are trials of the search service: one grid search whose rows are the
(configuration, seed) pairs, in ``RUN/reseed/topK-seedsN/``. They run on the search's resources
(or those given: GPU fractions, ``--address`` of a cluster), each choosing its epoch on
validation and evaluated once on test from that checkpoint; an interrupted reseed resumes, a
finished one is read again rather than rerun. Every run is seeded, so the figures do not
depend on how many run at once.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import pandas as pd

from visiontune import record
from visiontune.analysis.load import RunRecord, load_run
from visiontune.analysis.retrain import complete_rows, row_key, run_rows
from visiontune.record import TrialRecord


def _mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if v == v]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def _retrain(run: RunRecord, rows: list[dict[str, Any]], epochs: int, name: str, data_dir: str | None,
             resources: dict[str, Any], progress: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Run the rows as a grid search of the service; {row key: {"val", "test", "epoch"}}."""
    folder = run_rows(run, rows, epochs, record.RESEED_DIR, name, "reseeding", data_dir, resources, progress)
    retrained = load_run(folder)
    kind = run.card.task_kind
    outcomes = {}
    for trial in retrained.trials:
        value, epoch = trial.best(kind.val_metric)
        tested = retrained.test.get(trial.trial_id) or {}
        outcomes[row_key(trial.config)] = {"val": float("nan") if value is None else value, "epoch": epoch,
                                           "test": float(tested.get(kind.test_metric, float("nan")))}
    return outcomes


def reseed_top(run: RunRecord, ranked: list[TrialRecord], seeds: int, data_dir: str | None = None,
               resources: dict[str, Any] | None = None, progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Retrain each ranked trial's configuration with ``seeds`` further seeds; one row per config.

    The search's own run of each configuration counts as one more seed when its test metric was
    recorded (the top-k). Rows are ranked by mean validation metric. ``resources`` overrides the
    search's own trial resources (``search.TrialResources`` fields).
    """
    test_metric = run.card.task_kind.test_metric
    epochs = run.max_epochs or int(ranked[0].config.get("epochs", 10))
    plans = []  # per trial: its configuration, its new seeds, and the run it already has
    for trial in ranked:
        base = dict(trial.config)
        base[record.PRECISION] = trial.precision() or base.get(record.PRECISION, "auto")
        first_seed = int(base.get("seed", 0))
        recorded = run.test.get(trial.trial_id)
        best_value = trial.best(run.metric)[0]
        searched = ([(f"{first_seed} (search)", {"val": best_value, "test": float(recorded[test_metric])})]
                    if recorded and best_value is not None else [])
        plans.append((trial, base, range(first_seed + 1, first_seed + 1 + seeds), searched))
    configs = [{**base, "seed": seed} for _, base, new_seeds, _ in plans for seed in new_seeds]
    rows = complete_rows(configs)
    outcomes = _retrain(run, rows, epochs, f"top{len(ranked)}-seeds{seeds}", data_dir, resources or {}, progress)
    results = iter(outcomes[row_key(row)] for row in rows)
    table = []
    for trial, _, new_seeds, searched in plans:
        runs_of_trial = searched + [(str(seed), next(results)) for seed in new_seeds]
        vals = [outcome["val"] for _, outcome in runs_of_trial]
        tests = [outcome["test"] for _, outcome in runs_of_trial]
        val_mean, val_std = _mean_std(vals)
        test_mean, test_std = _mean_std(tests)
        table.append({"trial": trial.trial_id, "seeds": ", ".join(label for label, _ in runs_of_trial),
                      "runs": len(vals),
                      f"{run.metric} mean": val_mean, f"{run.metric} std": val_std,
                      f"{test_metric} mean": test_mean, f"{test_metric} std": test_std,
                      f"{test_metric} values": ", ".join(f"{t:.4f}" for t in tests)})
    frame = pd.DataFrame(table).sort_values(f"{run.metric} mean", ascending=False, kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


__all__ = ["reseed_top"]
