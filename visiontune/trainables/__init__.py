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
                             deadline: float | None = None) -> None:
    """Train and report an MNIST classifier trial (``val/acc``)."""
    run_trial(config, data, max_epochs, deadline)


def segmentation_trainable(config: dict[str, Any], data: DataSplits, max_epochs: int,
                           deadline: float | None = None) -> None:
    """Train and report a WARWICK segmenter trial (``val/dice``)."""
    run_trial(config, data, max_epochs, deadline)


TRAINABLES: dict[str, Callable[..., None]] = {
    "classification": classification_trainable,
    "segmentation": segmentation_trainable,
}


def trainable_for(kind: str) -> Callable[..., None]:
    """The trainable of a task kind."""
    return TRAINABLES[kind]
