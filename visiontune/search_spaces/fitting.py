"""Fitting a search space to a data set: its fingerprint bounds what a space may propose.

Named spaces are written once per kind (the MNIST spaces serve every classification set).
:class:`FittedSpace` runs such a space through a stand-in for the Optuna trial that narrows each
suggestion to what the data set allows, so that no trial is proposed that could not run:

- CNN ``blocks`` at most what the image size leaves a pixel for (``models.classifiers.max_blocks``);
- segmenter ``depth`` at most log2 of the shorter side (deeper poolings see less than a pixel);
- ``batch_size`` choices not above the training set;
- ``augment`` choices only of augmentations the card permits (a dataset.yaml can narrow them).

A data set the space was written for is not narrowed at all: its suggestions are the space's own.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from visiontune.models.classifiers import max_blocks

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard

MAX_DEPTH = 5  # the segmenters' own limit (models/segmenters.py)


def limits_for(card: "DatasetCard") -> dict[str, Any]:
    """What ``card``'s data set allows: the largest blocks and depth, batch size, augmentations."""
    height, width = card.image_size
    return {"blocks": max_blocks((height, width)),
            "depth": max(1, min(MAX_DEPTH, int(math.log2(max(1, min(height, width)))))),
            "batch_size": max(1, int(card.split.get("sizes", {}).get("train", 1))),
            "augmentations": list(card.augmentations)}


def _augment_fits(choice: str, permitted: list[str]) -> bool:
    names = [name.strip() for name in str(choice).replace("+", ",").split(",") if name.strip()]
    return choice in ("none", "") or all(name in permitted for name in names)


class _FittedTrial:
    """An Optuna trial whose suggestions are narrowed to the limits; everything else passes through."""

    def __init__(self, trial, limits: dict[str, Any]) -> None:
        self._trial, self._limits = trial, limits

    def __getattr__(self, name: str):
        return getattr(self._trial, name)

    def suggest_int(self, name: str, low: int, high: int, **kwargs):
        if name in ("blocks", "depth"):
            high = min(high, self._limits[name])
            low = min(low, high)
        return self._trial.suggest_int(name, low, high, **kwargs)

    def suggest_categorical(self, name: str, choices):
        choices = list(choices)
        if name == "batch_size":
            kept = [c for c in choices if c <= self._limits["batch_size"]]
            choices = kept or [self._limits["batch_size"]]
        elif name == "augment":
            choices = [c for c in choices if _augment_fits(c, self._limits["augmentations"])] or ["none"]
        elif name in ("blocks", "depth"):
            choices = [c for c in choices if c <= self._limits[name]] or [self._limits[name]]
        return self._trial.suggest_categorical(name, choices)


class FittedSpace:
    """A define-by-run space narrowed to a data set (picklable: Ray saves it with the searcher)."""

    def __init__(self, space: Callable[[Any], dict[str, Any] | None], limits: dict[str, Any]) -> None:
        self.space, self.limits = space, dict(limits)

    def __call__(self, trial) -> dict[str, Any] | None:
        return self.space(_FittedTrial(trial, self.limits))
