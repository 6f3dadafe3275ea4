"""Robust ranking: retrain the top-k configurations with further seeds and rank them by the mean.

One search trial is one draw of weight initialisation, batch order and augmentation; on a
17-image validation set the winner can be lucky. ``--reseed N`` retrains each of the top-k
configurations with N more seeds through the same engine (choosing each run's epoch on
validation), ranks the configurations by their mean best validation metric, and reports the
test metric as mean and standard deviation over the same runs.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import pandas as pd

from visiontune.analysis.load import RunRecord, TrialRecord
from visiontune.config import config_from_dict
from visiontune.data import load_splits
from visiontune.engine import Trainer
from visiontune.tasks import get_task
from visiontune.train import fit_keeping_best


def retrain(config: dict[str, Any], splits, epochs: int, device: str = "auto") -> dict[str, float]:
    """Train one configuration, keep its best validation epoch, evaluate that once on test."""
    trainer = Trainer(config_from_dict({**config, "epochs": epochs}, "reseeded config"), splits, device=device)
    outcome = fit_keeping_best(trainer, epochs)
    if outcome.best_state is None:
        return {"val": float("nan"), "test": float("nan"), "epoch": 0}
    trainer.model.load_state_dict(outcome.best_state)
    test = trainer.evaluate("test")[trainer.spec.test_metric]
    return {"val": outcome.best_value, "test": test, "epoch": outcome.best_epoch}


def _mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if v == v]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def reseed_top(run: RunRecord, ranked: list[TrialRecord], seeds: int, data_dir: str | None = None,
               device: str = "auto", progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Retrain each ranked trial's configuration with ``seeds`` further seeds; one row per config.

    The search's own run of each configuration counts as one more seed when its test metric was
    recorded (the top-k). Rows are ranked by mean validation metric.
    """
    options = run.options
    splits = load_splits(run.task, data_dir=data_dir or options.get("data_dir"),
                         synthetic=bool(options.get("synthetic")), val_size=options.get("val_size"),
                         split_seed=int(options.get("split_seed") or 0), train_limit=options.get("train_limit"),
                         download=False)
    spec = get_task(run.task)
    epochs = run.max_epochs or int(ranked[0].config.get("epochs", 10))
    rows = []
    for trial in ranked:
        base = {k: v for k, v in trial.config.items()}
        base["precision"] = trial.precision() or base.get("precision", "auto")
        first_seed = int(base.get("seed", 0))
        vals, tests, labels = [], [], []
        recorded = run.test.get(trial.trial_id)
        best_value = trial.best(run.metric)[0]
        if recorded and best_value is not None:
            vals.append(best_value)
            tests.append(float(recorded[spec.test_metric]))
            labels.append(f"{first_seed} (search)")
        for seed in range(first_seed + 1, first_seed + 1 + seeds):
            progress(f"reseeding trial {trial.trial_id}: seed {seed} ({epochs} epochs)")
            outcome = retrain({**base, "seed": seed}, splits, epochs, device)
            vals.append(outcome["val"])
            tests.append(outcome["test"])
            labels.append(str(seed))
        val_mean, val_std = _mean_std(vals)
        test_mean, test_std = _mean_std(tests)
        rows.append({"trial": trial.trial_id, "seeds": ", ".join(labels), "runs": len(vals),
                     f"{run.metric} mean": val_mean, f"{run.metric} std": val_std,
                     f"{spec.test_metric} mean": test_mean, f"{spec.test_metric} std": test_std,
                     f"{spec.test_metric} values": ", ".join(f"{t:.4f}" for t in tests)})
    frame = pd.DataFrame(rows).sort_values(f"{run.metric} mean", ascending=False, kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)
