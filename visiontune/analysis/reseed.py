"""Robust ranking: retrain the top-k configurations with further seeds and rank them by the mean.

One search trial is one draw of weight initialisation, batch order and augmentation; on a
17-image validation set the winner can be lucky. ``--reseed N`` retrains each of the top-k
configurations with N more seeds through the same engine (choosing each run's epoch on
validation), ranks the configurations by their mean best validation metric, and reports the
test metric as mean and standard deviation over the same runs.

The retrains are independent, so ``jobs`` of them can run at once in separate processes: on a
GPU several small models share the device (as trials of a search do), on CPUs each process gets
its share of the cores. Every run is seeded, so the figures do not depend on ``jobs``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import pandas as pd

from visiontune.analysis.load import RunRecord, TrialRecord
from visiontune.config import config_from_dict
from visiontune.data import load_splits
from visiontune.engine import Trainer
from visiontune.tasks import get_task
from visiontune.train import fit_keeping_best


def retrain(config: dict[str, Any], splits, epochs: int, device: str = "auto",
            threads: int | None = None) -> dict[str, float]:
    """Train one configuration, keep its best validation epoch, evaluate that once on test."""
    trainer = Trainer(config_from_dict({**config, "epochs": epochs}, "reseeded config"), splits, device=device,
                      threads=threads)
    outcome = fit_keeping_best(trainer, epochs)
    if outcome.best_state is None:
        return {"val": float("nan"), "test": float("nan"), "epoch": 0}
    trainer.model.load_state_dict(outcome.best_state)
    test = trainer.evaluate("test")[trainer.spec.test_metric]
    return {"val": outcome.best_value, "test": test, "epoch": outcome.best_epoch}


_WORKER_SPLITS: dict[str, Any] = {}


def _retrain_in_worker(split_options: dict[str, Any], config: dict[str, Any], epochs: int, device: str,
                       threads: int) -> dict[str, float]:
    """One retrain in a pool process; the data are loaded once per process."""
    if "splits" not in _WORKER_SPLITS:
        _WORKER_SPLITS["splits"] = load_splits(**split_options)
    return retrain(config, _WORKER_SPLITS["splits"], epochs, device, threads)


def _mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if v == v]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def _run_retrains(jobs_list: list[tuple[dict[str, Any], str]], split_options: dict[str, Any], epochs: int,
                  device: str, jobs: int, progress: Callable[[str], None]) -> list[dict[str, float]]:
    """Retrain each (config, label), ``jobs`` at a time; outcomes in the order given."""
    if jobs <= 1 or len(jobs_list) <= 1:
        splits = load_splits(**split_options)
        outcomes = []
        for config, label in jobs_list:
            progress(f"reseeding {label} ({epochs} epochs)")
            outcomes.append(retrain(config, splits, epochs, device))
        return outcomes
    jobs = min(jobs, len(jobs_list))
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)  # the cores shared out, as a search does per trial
    progress(f"reseeding {len(jobs_list)} runs of {epochs} epochs, {jobs} at a time ({threads} threads each)")
    # Spawned, not forked: a forked child of a process that has touched CUDA cannot use it.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_retrain_in_worker, split_options, config, epochs, device, threads)
                   for config, _ in jobs_list]
        outcomes = []
        for (_, label), future in zip(jobs_list, futures):
            outcomes.append(future.result())
            progress(f"reseeded {label}: best val {outcomes[-1]['val']:.4f} at epoch {outcomes[-1]['epoch']}")
        return outcomes


def reseed_top(run: RunRecord, ranked: list[TrialRecord], seeds: int, data_dir: str | None = None,
               device: str = "auto", jobs: int = 1, progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Retrain each ranked trial's configuration with ``seeds`` further seeds; one row per config.

    The search's own run of each configuration counts as one more seed when its test metric was
    recorded (the top-k). Rows are ranked by mean validation metric. ``jobs`` retrains run at
    once, each in its own process.
    """
    options = run.options
    split_options = dict(task=run.task, data_dir=data_dir or options.get("data_dir"),
                         synthetic=bool(options.get("synthetic")), val_size=options.get("val_size"),
                         split_seed=int(options.get("split_seed") or 0), train_limit=options.get("train_limit"),
                         download=False)
    spec = get_task(run.task)
    epochs = run.max_epochs or int(ranked[0].config.get("epochs", 10))
    plans = []  # per trial: its configuration, its new seeds, and the run it already has
    for trial in ranked:
        base = dict(trial.config)
        base["precision"] = trial.precision() or base.get("precision", "auto")
        first_seed = int(base.get("seed", 0))
        recorded = run.test.get(trial.trial_id)
        best_value = trial.best(run.metric)[0]
        searched = ([(f"{first_seed} (search)", {"val": best_value, "test": float(recorded[spec.test_metric])})]
                    if recorded and best_value is not None else [])
        plans.append((trial, base, range(first_seed + 1, first_seed + 1 + seeds), searched))
    outcomes = iter(_run_retrains([({**base, "seed": seed}, f"trial {trial.trial_id}: seed {seed}")
                                   for trial, base, new_seeds, _ in plans for seed in new_seeds],
                                  split_options, epochs, device, jobs, progress))
    rows = []
    for trial, _, new_seeds, searched in plans:
        runs_of_trial = searched + [(str(seed), next(outcomes)) for seed in new_seeds]
        vals = [outcome["val"] for _, outcome in runs_of_trial]
        tests = [outcome["test"] for _, outcome in runs_of_trial]
        val_mean, val_std = _mean_std(vals)
        test_mean, test_std = _mean_std(tests)
        rows.append({"trial": trial.trial_id, "seeds": ", ".join(label for label, _ in runs_of_trial),
                     "runs": len(vals),
                     f"{run.metric} mean": val_mean, f"{run.metric} std": val_std,
                     f"{spec.test_metric} mean": test_mean, f"{spec.test_metric} std": test_std,
                     f"{spec.test_metric} values": ", ".join(f"{t:.4f}" for t in tests)})
    frame = pd.DataFrame(rows).sort_values(f"{run.metric} mean", ascending=False, kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)
