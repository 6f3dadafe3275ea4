"""Test-time augmentation: a model's class probabilities averaged over flipped and rotated views.

Each view is mapped back to the image's orientation before averaging; the logarithm of the
mean is returned as logits, so softmax and arg-max of it give the averaged probabilities and
their winner, and loss and Dice need no special case.
"""

from __future__ import annotations

from typing import Callable

import torch

from visiontune.errors import VisiontuneError


def tta_views(mode: str) -> list[tuple[int, bool]]:
    """The views of test-time augmentation ``mode`` as (quarter turns, horizontal flip) pairs."""
    if mode == "none":
        return [(0, False)]
    if mode == "flip":  # identity, horizontal, vertical (= half turn + horizontal), both (= half turn)
        return [(0, False), (0, True), (2, True), (2, False)]
    if mode == "d4":  # the eight symmetries of the square
        return [(turns, flip) for turns in range(4) for flip in (False, True)]
    raise VisiontuneError(f"unknown test-time augmentation {mode!r}")


def rotate(images: torch.Tensor, turns: int) -> torch.Tensor:
    """``torch.rot90(images, turns, dims=(-2, -1))`` as flips and transposes, which ONNX exports
    (it has no rot90): exactly the same values."""
    if turns % 4 == 2:
        return images.flip(-2, -1)
    for _ in range(turns % 4):
        images = images.flip(-1).transpose(-2, -1)
    return images


def view(images: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """The view ``(turns, flip)`` of a batch: flipped horizontally, then turned a quarter ``turns`` times."""
    images = images.flip(-1) if flip else images
    return rotate(images, turns) if turns else images


def unview(maps: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """Maps of a view back in the image's orientation (the inverse of :func:`view`)."""
    maps = rotate(maps, -turns) if turns else maps
    return maps.flip(-1) if flip else maps


def averaged_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str,
                    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda view: view) -> torch.Tensor:
    """fp32 logits of ``images`` averaged over the views of ``mode`` (``model`` runs each view,
    after ``prepare``, e.g. a memory-format change)."""
    views = tta_views(mode)
    if len(views) == 1:
        return model(images).float()
    probabilities = None
    for turns, flip in views:
        output = unview(model(prepare(view(images, turns, flip))).float().softmax(dim=1), turns, flip)
        probabilities = output if probabilities is None else probabilities + output
    return (probabilities / len(views)).clamp_min(torch.finfo(torch.float32).tiny).log()
