"""Batch inference: the one code that turns images into class probabilities and metrics.

Everything that scores a model goes through here: the Trainer's validation of every epoch
(``engine``), and through the model layer (``trained.TrainedModel``) the top-k's test figures,
cross-validation's out-of-fold and fold-ensemble figures, ``predict``, ``export`` and
``load_model``. A model's outputs on each test-time augmentation view are mapped back to the
image's orientation (``tta``); class probabilities are the mean of their softmax over views and
members (an ensemble); the loss is taken on the raw logits where there is one output, else on
the logarithm of the mean probabilities, so that loss and Dice need no special case.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import nn

from visiontune import tta

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard


def view_outputs(model: nn.Module, images: torch.Tensor, mode: str, bf16: bool = False,
                 channels_last: bool = False) -> list[torch.Tensor]:
    """fp32 outputs of ``model`` on each view of test-time augmentation ``mode``, each mapped back
    to the images' orientation. ``bf16``: under bf16 autocast (as the model trained);
    ``channels_last``: each view in that memory format (faster convolutions on oneDNN and cuDNN)."""
    outputs = []
    for turns, flip in tta.tta_views(mode):
        view = tta.view(images, turns, flip)
        if channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            output = model(view)
        outputs.append(tta.unview(output.float(), turns, flip))
    return outputs


def mean_probabilities(outputs: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the outputs' softmax over the class axis."""
    total = outputs[0].softmax(dim=1)
    for output in outputs[1:]:
        total = total + output.softmax(dim=1)
    return total / len(outputs) if len(outputs) > 1 else total


def loss_input(outputs: list[torch.Tensor], probabilities: torch.Tensor) -> torch.Tensor:
    """What the loss is taken on: the logits of a single output, else the logarithm of the mean
    probabilities (softmax and arg-max of it give them back)."""
    if len(outputs) == 1:
        return outputs[0]
    return probabilities.clamp_min(torch.finfo(torch.float32).tiny).log()


class Ensemble(nn.Module):
    """Mean class probabilities of member models, each over its own test-time augmentation views:
    what the model layer runs and ``export`` writes as one graph. Input: pixel values as float
    ``(N, C, H, W)`` at the training size (0-255 for 8-bit images), normalised first by the data
    set's ``normalise`` (``data.normalisation``); output: probabilities ``(N, K)`` or
    ``(N, K, H, W)``.

    ``bf16`` (per member): run it under bf16 autocast, as it trained; an exported graph runs in
    fp32. ``channels_last``: give convolutional members each view channels-last.
    """

    def __init__(self, members: list[nn.Module], tta_modes: list[str], bf16: list[bool] | None = None,
                 channels_last: bool = False, normalise: nn.Module | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.tta_modes = list(tta_modes)
        self.bf16 = list(bf16) if bf16 is not None else [False] * len(members)
        self.channels_last = channels_last
        self.normalise = normalise if normalise is not None else nn.Identity()

    def outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every member's outputs on every view of pixel values ``images``, in their orientation."""
        images = self.normalise(images)
        return [output for member, mode, bf16 in zip(self.members, self.tta_modes, self.bf16)
                for output in view_outputs(member, images, mode, bf16, self.channels_last)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return mean_probabilities(self.outputs(images))


class Evaluation:
    """Running figures of one evaluation pass: loss, the kind's metric accumulator and, where
    asked, each image's predicted class (or class map), over batches added in turn.

    Metrics do not depend on the order the batches come in, so a pass may be split (the
    out-of-fold predictions of K fold models, one fold at a time).
    """

    def __init__(self, card: "DatasetCard", loss_fn: Callable | None = None, per_class: bool = False,
                 keep_predicted: bool = False) -> None:
        self.kind = card.kind_spec
        self.loss_fn = loss_fn
        self.accumulator = self.kind.accumulator(card, per_class=per_class)
        self.loss_sum: torch.Tensor | None = None
        self.count = 0
        self.predicted: list[torch.Tensor] | None = [] if keep_predicted else None

    def add(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """One batch's outputs (``view_outputs`` / ``Ensemble.outputs``) and targets; returns its
        class probabilities."""
        probabilities = mean_probabilities(outputs)
        if self.loss_fn is not None:
            loss = self.loss_fn(loss_input(outputs, probabilities), targets) * targets.shape[0]
            self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss  # summed on the device
        self.accumulator.update(probabilities, targets)
        if self.predicted is not None:
            self.predicted.append(self.kind.predicted(probabilities).cpu())
        self.count += int(targets.shape[0])
        return probabilities

    def metrics(self, prefix: str) -> dict[str, float]:
        """``prefix/loss`` (where a loss was given) and the accumulator's figures, as floats."""
        result = {f"{prefix}/loss": float(self.loss_sum) / self.count} if self.loss_sum is not None else {}
        result.update({f"{prefix}/{name}": value for name, value in self.accumulator.aggregate().items()})
        return result

    def predictions(self) -> torch.Tensor:
        """Every image's predicted class (or class map), uint8, in the order added."""
        return torch.cat(self.predicted) if self.predicted else torch.empty(0, dtype=torch.uint8)

    def per_image(self) -> torch.Tensor | None:
        """Each image's own score where the kind has one (segmentation: per-image Dice)."""
        per_image = getattr(self.accumulator, "per_image", None)
        return per_image() if per_image is not None else None


def evaluate_batches(outputs: Callable[[torch.Tensor], list[torch.Tensor]],
                     batches: Iterable[tuple[torch.Tensor, torch.Tensor]], evaluation: Evaluation) -> Evaluation:
    """Add every ``(images, targets)`` batch's ``outputs`` to ``evaluation``, without gradients."""
    with torch.inference_mode():
        for images, targets in batches:
            evaluation.add(outputs(images), targets)
    return evaluation
