"""Robust ranking: retrain the top-k configurations with further seeds and rank them by the mean.

One search trial is one draw of weight initialisation, batch order and augmentation; on a
17-image validation set the winner can be lucky. ``--reseed N`` retrains each of the top-k
configurations with N more seeds, ranks the configurations by their mean best validation
metric, and reports the test metric as mean and standard deviation over the same runs.

The retrains are trials of the search service (``grid.retrain``): one grid search whose rows are
the (configuration, seed) pairs, in ``RUN/reseed/topK-seedsN/``, each choosing its epoch on
validation and evaluated once on test from that checkpoint by the model layer. The table is
recorded in ``RUN/reseed/reseed.json`` for the analysis to render. Every run is seeded, so the
figures do not depend on how many run at once.
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from visiontune import record, runs
from visiontune.record import TrialRecord
from visiontune.runfolder import SearchRun, load_search
from visiontune.selection.grid import complete_rows, mean_std, retrain, row_key


def _outcomes(folder, metric: str, test_metric: str) -> dict[str, dict[str, float]]:
    """{row key: {"val", "test", "epoch"}} of a finished reseeding grid."""
    retrained = load_search(folder)
    outcomes = {}
    for trial in retrained.trials:
        value, epoch = trial.best(metric)
        tested = retrained.test.get(trial.trial_id) or {}
        outcomes[row_key(trial.config)] = {"val": float("nan") if value is None else value, "epoch": epoch,
                                           "test": float(tested.get(test_metric, float("nan")))}
    return outcomes


def reseed_top(run: SearchRun, ranked: list[TrialRecord], seeds: int, data_dir: str | None = None,
               resources: dict[str, Any] | None = None, progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Retrain each ranked trial's configuration with ``seeds`` further seeds; one row per config,
    also written to ``RUN/reseed/reseed.json``.

    The search's own run of each configuration counts as one more seed when its test metric was
    recorded (the top-k). Rows are ranked by mean validation metric. ``resources`` overrides the
    search's own trial resources (``search.TrialResources`` fields).
    """
    metric, test_metric = run.metric, run.card.kind_spec.test_metric
    epochs = run.max_epochs or int(ranked[0].config.get("epochs", 10))
    plans = []  # per trial: its configuration, its new seeds, and the run it already has
    for trial in ranked:
        base = trial.trained_config()
        first_seed = int(base.get("seed", 0))
        recorded = run.test.get(trial.trial_id)
        best_value = trial.best(metric)[0]
        searched = ([(f"{first_seed} (search)", {"val": best_value, "test": float(recorded[test_metric])})]
                    if recorded and best_value is not None else [])
        plans.append((trial, base, range(first_seed + 1, first_seed + 1 + seeds), searched))
    rows = complete_rows([{**base, "seed": seed} for _, base, new_seeds, _ in plans for seed in new_seeds])
    name = f"top{len(ranked)}-seeds{seeds}"
    folder = retrain(run, rows, epochs, record.RESEED_DIR, name, "reseeding", data_dir, resources or {}, progress)
    outcomes = _outcomes(folder, metric, test_metric)
    results = iter(outcomes[row_key(row)] for row in rows)
    table = []
    for trial, _, new_seeds, searched in plans:
        runs_of_trial = searched + [(str(seed), next(results)) for seed in new_seeds]
        vals = [outcome["val"] for _, outcome in runs_of_trial]
        tests = [outcome["test"] for _, outcome in runs_of_trial]
        val_mean, val_std = mean_std(vals)
        test_mean, test_std = mean_std(tests)
        table.append({"trial": trial.trial_id, "seeds": ", ".join(label for label, _ in runs_of_trial),
                      "runs": len(vals), f"{metric} mean": val_mean, f"{metric} std": val_std,
                      f"{test_metric} mean": test_mean, f"{test_metric} std": test_std,
                      f"{test_metric} values": ", ".join(f"{t:.4f}" for t in tests)})
    frame = pd.DataFrame(table).sort_values(f"{metric} mean", ascending=False, kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame = frame.reset_index(drop=True)
    runs.write_json(run.folder / record.RESEED_DIR / record.RESEED_FILE,
                    {"metric": metric, "top": len(ranked), "seeds": seeds, "epochs": epochs,
                     "grid": str(folder.relative_to(run.folder)), "rows": frame.to_dict("records")})
    return frame


__all__ = ["reseed_top"]
