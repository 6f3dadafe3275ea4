"""The trial loop that every trainable shares: config -> Trainer -> one report per epoch.

Each epoch is one Tune iteration of the one epoch loop (``fit.fit_epochs``): train, evaluate on
validation, save a checkpoint holding the full resume state (weights, optimiser, schedule,
epoch, RNG, best-so-far) and report the metrics with it. A trial restarted by Tune (a retry
after an error, or ``--resume`` after the driver died) restores that state and continues
exactly where it stopped. A trial whose loss is not finite reports once more with ``diverged``
set and ends; the search goes on. The report's keys are named in ``record``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from visiontune import runs
from visiontune.config import config_from_dict
from visiontune.data.placement import received
from visiontune.data.splits import DataSplits
from visiontune.engine import Trainer
from visiontune.fit import BestSoFar, EpochEnd, fit_epochs
from visiontune.record import (BEST_EPOCH, BUDGET_END, CACHED_DATA_DIR, CHECKPOINT_REPORT, CV_FOLD, DIVERGED, EPOCH,
                               EPOCH_TIME, NODE_ID, PARAMS, PRECISION, STATE_FILE, Status, best_name,
                               checkpoint_reports_text, read_checkpoint_reports)


def _assigned_device_and_threads() -> tuple[str, int | None, str]:
    """(device, CPU threads, node id) from the resources Ray gave this trial."""
    import ray

    context = ray.get_runtime_context()
    resources = context.get_assigned_resources()
    threads = max(1, int(resources.get("CPU", 1)))
    device = "cuda" if resources.get("GPU", 0) > 0 else "cpu"
    return device, threads, context.get_node_id()


def checkpoint_reports(folder: Path) -> list[dict[str, Any]]:
    """The reports a checkpoint folder holds (every report of its trial up to it, oldest first);
    empty for a checkpoint written before checkpoints held them."""
    try:
        return read_checkpoint_reports((folder / CHECKPOINT_REPORT).read_text())[0]
    except (OSError, ValueError):
        return []


def _end_before_starting(data: DataSplits, metric: str | None) -> None:
    """The one report of a trial proposed before the time budget ran out but placed after it:
    epoch 0 and the worst metric, which keeps schedulers (they expect the metric) satisfied."""
    from ray import tune

    metric = metric or data.card.kind_spec.val_metric
    tune.report({metric: 0.0, best_name(metric): 0.0, EPOCH: 0, BEST_EPOCH: 0, DIVERGED: False})


def _trial_data(data: DataSplits, settings) -> DataSplits:
    """The splits a trial trains on: a fold trial of ``analyze --cv`` takes its fold's."""
    if data.folds is None:
        return data
    from visiontune.data.folds import fold_splits

    if settings.cv_fold is None:
        raise ValueError(f"a fold search's trial needs the {CV_FOLD} setting")
    return fold_splits(data, settings.cv_fold)


def _fetch_from(storage: tuple[str, str] | None) -> Callable[[str, Path], None] | None:
    """How a node copies a cached data set it lacks: from the run's storage (a search on a cluster)."""
    if storage is None:
        return None

    def fetch(key: str, folder: Path) -> None:
        from visiontune.storage import RunStore

        RunStore(*storage).download_folder(f"{CACHED_DATA_DIR}/{key}", folder)

    return fetch


@dataclass
class TrialState:
    """What a trial carries from epoch to epoch besides the Trainer: the best so far, the
    measurement-only figures of the best model, and every report (kept with each checkpoint)."""

    best: BestSoFar = field(default_factory=BestSoFar)
    monitored: dict[str, float] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def restored(cls, trainer: Trainer) -> "TrialState":
        """The state of Tune's checkpoint (a retried or resumed trial), loaded into ``trainer`` too;
        a fresh state where the trial starts anew."""
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return cls()
        with checkpoint.as_directory() as folder:
            saved = runs.load_checkpoint(Path(folder) / STATE_FILE, trainer.device)
            reports = checkpoint_reports(Path(folder))
        trainer.load_state_dict(saved[runs.TRAINER_STATE])
        return cls(BestSoFar(saved["best_value"], saved[BEST_EPOCH]), saved.get("monitored", {}), reports)

    def report_with_checkpoint(self, trainer: Trainer, report: dict[str, Any]) -> None:
        """Save the full resume state as a checkpoint that describes itself, and report with it."""
        from ray import tune

        with tempfile.TemporaryDirectory(prefix="visiontune-ckpt-") as folder:
            state = Path(folder) / STATE_FILE
            runs.save_checkpoint(state, {runs.TRAINER_STATE: trainer.state_dict(), "best_value": self.best.value,
                                         BEST_EPOCH: self.best.epoch, "monitored": self.monitored})
            # The checkpoint describes itself: a resume whose saved state lags the trial folder
            # continues from it and restores the reports storage had not yet (search.recovery).
            self.reports.append(report)
            (Path(folder) / CHECKPOINT_REPORT).write_text(checkpoint_reports_text(self.reports, state.stat().st_size))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(config: dict[str, Any], data: DataSplits, max_epochs: int, deadline: float | None = None,
              metric: str | None = None, on_new_best: Callable[[Trainer], dict[str, float]] | None = None) -> None:
    """Train ``config`` for up to ``max_epochs`` epochs, reporting to Ray Tune after each;
    ``metric`` (default the kind's validation metric) decides the best epoch, as it does the search.

    With a ``deadline`` (a time budget, as ``time.time()``), a trial does not start after it,
    and a running trial ends cleanly at its first report after it.

    ``on_new_best`` is for measurement only (benchmarks/search_efficiency.py): called with the
    trainer whenever validation improves, its metrics describe the trial's best-so-far model and
    go into every report until the next improvement. Searchers and schedulers read only the
    validation metric, so nothing it returns can steer the search.
    """
    from ray import tune

    if deadline is not None and time.time() >= deadline and tune.get_checkpoint() is None:
        _end_before_starting(data, metric)
        return
    settings = config_from_dict(dict(config), "trial config")
    device, threads, node_id = _assigned_device_and_threads()
    data = received(data, _fetch_from(data.storage))
    trainer = Trainer(settings, _trial_data(data, settings), device=device, threads=threads, placement=data.placement)
    metric = metric or trainer.kind.val_metric
    trial = TrialState.restored(trainer)

    def report_epoch(end: EpochEnd) -> bool:
        if end.improved and on_new_best is not None:
            trial.monitored = on_new_best(trainer)
        # Decided before the report so that the report can say so: Ray's own "timestamp" is
        # whole seconds, too coarse to tell afterwards whether the report came after the deadline.
        out_of_time = deadline is not None and time.time() >= deadline
        trial.report_with_checkpoint(trainer, {
            **end.train_metrics, **end.val_metrics, BUDGET_END: out_of_time,
            best_name(metric): trial.best.value, BEST_EPOCH: trial.best.epoch, EPOCH: end.epoch,
            DIVERGED: False, PARAMS: trainer.num_parameters, NODE_ID: node_id,
            EPOCH_TIME: end.seconds, PRECISION: trainer.precision, **trial.monitored,
        })
        return out_of_time

    if fit_epochs(trainer, max_epochs, trial.best, report_epoch, metric=metric) == Status.DIVERGED:
        # Report once more so the trial's record shows the divergence; the metric keeps the
        # best value seen (0 if none) so that schedulers and searchers rank it as weak.
        fallback = trial.best.value if trial.best.epoch else 0.0
        tune.report({metric: fallback, best_name(metric): fallback, BEST_EPOCH: trial.best.epoch,
                     EPOCH: trainer.epoch, DIVERGED: True, PARAMS: trainer.num_parameters, NODE_ID: node_id})
