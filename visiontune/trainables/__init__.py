"""The Ray Tune trainable of every search: a thin adapter over ``engine.Trainer``.

:func:`loop.run_trial` is the function a search runs, for every kind of task (what differs by
kind is the card's ``kinds.Kind``), so every trial runs the same engine code as ``visiontune
train``. The data set arrives through ``tune.with_parameters`` (Ray's object store, once per
search), never from files in a trial.
"""

from __future__ import annotations

from visiontune.trainables.loop import run_trial

__all__ = ["run_trial"]
