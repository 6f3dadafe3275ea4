"""Ray Tune function trainables, one per task kind, thin adapters over ``engine.Trainer``.

``trainable_for(kind)`` gives the function a search runs; both call :func:`loop.run_trial`,
so every trial runs the same engine code as ``visiontune train``. The data set arrives through
``tune.with_parameters`` (Ray's object store, once per search), never from files in a trial.
"""

from __future__ import annotations

from typing import Any, Callable

from visiontune.data.splits import DataSplits
from visiontune.trainables.loop import run_trial


def classification_trainable(config: dict[str, Any], data: DataSplits, max_epochs: int,
                             deadline: float | None = None, metric: str | None = None) -> None:
    """Train and report a classifier trial (``val/acc`` unless ``metric`` says otherwise)."""
    run_trial(config, data, max_epochs, deadline, metric)


def segmentation_trainable(config: dict[str, Any], data: DataSplits, max_epochs: int,
                           deadline: float | None = None, metric: str | None = None) -> None:
    """Train and report a segmenter trial (``val/dice`` unless ``metric`` says otherwise)."""
    run_trial(config, data, max_epochs, deadline, metric)


TRAINABLES: dict[str, Callable[..., None]] = {
    "classification": classification_trainable,
    "segmentation": segmentation_trainable,
}


def trainable_for(kind: str) -> Callable[..., None]:
    """The trainable of a task kind."""
    return TRAINABLES[kind]
