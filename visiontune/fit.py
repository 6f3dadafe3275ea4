"""The one epoch loop: train, validate, track the best epoch by the validation metric.

``visiontune train`` (``train.train_one``) and every Ray Tune trial (``trainables.loop``: a
search's trials, the retrains of ``analyze --reseed``) run their epochs through
:func:`fit_epochs`; what each does with an epoch (log it, checkpoint it, report it to Tune, stop
at a deadline) is its ``on_epoch`` callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from visiontune.engine import Trainer, TrainingDiverged
from visiontune.record import Status


@dataclass
class BestSoFar:
    """The best validation value seen and the epoch it came at (0: none yet)."""

    value: float = float("-inf")
    epoch: int = 0


@dataclass
class EpochEnd:
    """What one epoch produced, as ``on_epoch`` sees it."""

    epoch: int
    train_metrics: dict[str, Any]
    val_metrics: dict[str, float]
    seconds: float  # training and validation
    improved: bool  # this epoch is the new best by the validation metric


def fit_epochs(trainer: Trainer, max_epochs: int, best: BestSoFar,
               on_epoch: Callable[[EpochEnd], bool | None] | None = None,
               on_diverged: Callable[[TrainingDiverged], None] | None = None, metric: str | None = None) -> str:
    """Train from ``trainer.epoch`` up to ``max_epochs``, updating ``best`` after each epoch.

    ``on_epoch`` is called after every epoch's validation; returning True ends training there.
    A loss that is no longer finite ends training and calls ``on_diverged``. Returns how training
    ended: ``Status.FINISHED``, ``Status.STOPPED`` (by ``on_epoch``) or ``Status.DIVERGED``.
    ``metric`` is what "best" means (default: the kind's validation metric).
    """
    metric = metric or trainer.kind.val_metric
    while trainer.epoch < max_epochs:
        started = time.perf_counter()
        try:
            train_metrics = trainer.fit_epoch()
        except TrainingDiverged as error:
            if on_diverged is not None:
                on_diverged(error)
            return Status.DIVERGED
        val_metrics = trainer.evaluate("val")
        improved = val_metrics[metric] > best.value
        if improved:
            best.value, best.epoch = val_metrics[metric], trainer.epoch
        end = EpochEnd(trainer.epoch, train_metrics, val_metrics, time.perf_counter() - started, improved)
        if on_epoch is not None and on_epoch(end):
            return Status.STOPPED
    return Status.FINISHED
