"""The model layer: a trained model as one object, and the one path from images to predictions.

A :class:`TrainedModel` is a data-set card (what the model's input is, how a file becomes it,
what its classes are), one or more members (each a configuration, its weights, its test-time
augmentation and the precision it trained in) and the device it runs on; an ensemble is a list
of members of the card (nnU-Net's ``initialize_from_trained_model_folder(folder, use_folds)``).
It is built from a ``train`` run, a search's best trial or top K, the cross-validation's fold
ensemble (``runfolder.model_members``), an exported folder (``model_formats``: TorchScript,
ONNX, pt2), or from weights in memory (the top-k's test evaluation, cross-validation).

Its batch inference (``inference``) is the only inference code: the top-k's test figures
(``search.finish``), cross-validation's out-of-fold and fold-ensemble figures, reseeding (whose
figures are its grid search's), ``predict``, ``export`` and :func:`load_model` all run it, so a
figure a run records is what its model gives when used. Members are loaded with batchnorm folded
into their convolutions (those that run in fp32) and run channels-last: the figures are measured
on the network that predict runs and export writes.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from visiontune import image_files, inference, record, runfolder, runs
from visiontune.config import TrainConfig, config_from_dict
from visiontune.data.card import DatasetCard
from visiontune.data.normalisation import Normalise, pixel_values
from visiontune.data.splits import ImageSet
from visiontune.engine import resolve_device
from visiontune.errors import VisiontuneError
from visiontune.file_sources import FolderSource
from visiontune.model_formats import FORMATS
from visiontune.models import build_model
from visiontune.models.layers import fold_batchnorm

# What predict takes: an array (H, W) or (H, W, C), a file's path, its bytes, or (one file per
# channel, where the card says so) a tuple of paths
ImageInput = np.ndarray | str | os.PathLike | bytes | tuple


@dataclass
class TestEvaluation:
    """One evaluation of a model on labelled images: its figures and what the analysis draws."""

    metrics: dict[str, float]
    artefacts: dict[str, np.ndarray] = field(default_factory=dict)


class TrainedModel:
    """A trained model: card, members (configurations, weights, TTA, precision), device."""

    def __init__(self, card: DatasetCard, configs: list[TrainConfig], forward: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, source: str, figures: dict[str, Any] | None = None,
                 network: inference.Ensemble | None = None, precisions: list[str] | None = None) -> None:
        self.card = card
        self.kind = card.kind_spec
        self.configs = configs
        self.device = device
        self.source = source
        self.figures = figures or {}
        self.network = network  # the members in this process (None for an exported graph)
        self.precisions = precisions or ["fp32"] * len(configs)
        self._forward = forward

    # ------------------------------------------------------------------------------- building
    @classmethod
    def from_weights(cls, card: DatasetCard, members: Sequence[tuple[TrainConfig | dict[str, Any], dict, bool]],
                     device: str | torch.device = "auto", source: str = "", figures: dict[str, Any] | None = None
                     ) -> "TrainedModel":
        """A model of ``members``, each (configuration, model weights, trained in bf16)."""
        configs, models, bf16 = [], [], []
        for config, weights, member_bf16 in members:
            if not isinstance(config, TrainConfig):
                config = config_from_dict(dict(config), f"{source or 'member'} configuration", card)
            model = build_model(config.model_name(card.kind), card.kind, **config.model_kwargs(card)).eval()
            model.load_state_dict(weights)
            # Batchnorm folded into the convolutions (1.3x faster FCN2 inference on a CPU) where the
            # member runs in fp32, where folding changes the figures by rounding alone (1e-6); in
            # bf16 the folded weights round differently (WARWICK's FCN2: test Dice 0.7693 against
            # 0.7702), so a bf16 member keeps the layers it was validated with.
            models.append(model if member_bf16 else fold_batchnorm(model))
            configs.append(config)
            bf16.append(bool(member_bf16))
        target = resolve_device(device)
        convolutional = any(isinstance(module, nn.Conv2d) for model in models for module in model.modules())
        network = inference.Ensemble(models, [c.tta for c in configs], bf16, convolutional,
                                     Normalise.from_card(card)).eval()
        network.to(target)
        if convolutional:  # channels-last, as the Trainer runs: oneDNN and cuDNN run convolutions faster so
            network.to(memory_format=torch.channels_last)
        return cls(card, configs, network, target, source, figures, network,
                   ["bf16" if flag else "fp32" for flag in bf16])

    @classmethod
    def from_checkpoints(cls, card: DatasetCard, members: Sequence[tuple[dict[str, Any], Path]],
                         device: str | torch.device = "auto", source: str = "", figures: dict[str, Any] | None = None
                         ) -> "TrainedModel":
        """A model of ``members``, each (configuration as it trained, checkpoint file): a trial's
        full state, whose precision it records, or a train run's weights, whose configuration
        holds the precision it trained in."""
        loaded = []
        for config, checkpoint in members:
            weights, bf16 = runs.weights_of(runs.load_checkpoint(checkpoint))
            loaded.append((config, weights, config.get(record.PRECISION) == "bf16" if bf16 is None else bf16))
        return cls.from_weights(card, loaded, device, source, figures)

    @classmethod
    def from_run(cls, path: str | os.PathLike, device: str | torch.device = "auto", ensemble: int | str = 1
                 ) -> "TrainedModel":
        """The model of a train run, a search's ``ensemble`` best trials, or its cross-validation's
        fold ensemble (``ensemble="cv"``), each member at its checkpoint."""
        held = runfolder.model_members(path, ensemble)
        return cls.from_checkpoints(held.card, [(member.config, member.checkpoint) for member in held.members], device,
                                    str(held.source), held.figures)

    @classmethod
    def from_exported(cls, folder: str | os.PathLike, device: str | torch.device = "auto") -> "TrainedModel":
        """A folder ``visiontune export`` wrote: its graph and its model card."""
        folder = Path(folder)
        where = folder / record.MODEL_CARD
        try:
            card_data = runfolder.read_json(where, "the model card")
            fmt, card = card_data["format"], DatasetCard.from_dict(card_data["data"])
            configs = [config_from_dict(dict(c), f"{where}: configs[{i}]", card)
                       for i, c in enumerate(card_data["configs"])]
        except VisiontuneError as error:
            raise VisiontuneError(f"{where}: not a readable model card ({error})") from None
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise VisiontuneError(f"{where}: not a readable model card ({type(error).__name__}: {error})") from None
        path = folder / (FORMATS[fmt].file if fmt in FORMATS else "?")
        if fmt not in FORMATS or not path.is_file():
            raise VisiontuneError(f"{folder}: the model card names format {fmt!r}, but {path.name} is not there")
        target = resolve_device(device)
        graph = FORMATS[fmt].load(path, target)
        if int(card_data.get("visiontune_model", 0)) < record.PIXEL_VALUE_INPUT:  # such a graph takes pixel / 255
            scaled = graph

            def graph(images: torch.Tensor) -> torch.Tensor:
                return scaled(images / 255.0)
        return cls(card, configs, graph, target, str(folder), card_data.get("figures"),
                   precisions=["fp32"] * len(configs))

    # ------------------------------------------------------------------------------ inference
    @property
    def config(self) -> TrainConfig:
        """The (first member's) training configuration."""
        return self.configs[0]

    @property
    def members(self) -> int:
        """How many models are averaged."""
        return len(self.configs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of pixel values (float, as stored: 0-255 for 8-bit images) on the
        model's device; the data set's normalisation is the model's first step."""
        return self._forward(images)

    def outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each member's outputs on each test-time augmentation view (``inference.Ensemble``); an
        exported graph gives only its probabilities, as their logarithm."""
        if self.network is not None:
            return self.network.outputs(images)
        return [self._forward(images).float().clamp_min(torch.finfo(torch.float32).tiny).log()]

    def _on_device(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A stored batch ``(N, C, H, W)`` as float pixel values on the model's device."""
        tensor = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        return pixel_values(tensor.to(self.device))

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch ``(N, C, H, W)`` as the card stores images (per pixel for
        segmentation), on the CPU."""
        return self.forward(self._on_device(batch)).float().cpu()

    def _batches(self, data: ImageSet):
        for images, targets in data.batches(self.kind.eval_rows(self.card)):
            yield self._on_device(images), targets.to(self.device).long()

    def add_to(self, evaluation: inference.Evaluation, data: ImageSet) -> inference.Evaluation:
        """Add the model's predictions of labelled uint8 ``data`` to a running evaluation (the
        out-of-fold figures: each fold model adds its own held-out images)."""
        return inference.evaluate_batches(self.outputs, self._batches(data), evaluation)

    def evaluation(self, keep_predicted: bool = False) -> inference.Evaluation:
        """A fresh evaluation with the model's loss and every class's figure."""
        return inference.Evaluation(self.card, self.kind.loss(self.config.loss), per_class=True,
                                    keep_predicted=keep_predicted)

    def evaluate(self, data: ImageSet, split: str = "test", artefacts: bool = False) -> TestEvaluation:
        """Loss and metrics of labelled uint8 ``data`` (``split/...``), in one pass; with
        ``artefacts``, also what the analysis draws (``kind.test_artefacts``)."""
        evaluation = self.add_to(self.evaluation(keep_predicted=artefacts), data)
        drawn = (self.kind.test_artefacts(evaluation.predictions(), data, evaluation.per_image())
                 if artefacts else {})
        return TestEvaluation(evaluation.metrics(split), drawn)

    # ------------------------------------------------------------------------------- predict
    def preprocess(self, image: ImageInput, where: str = "image") -> np.ndarray:
        """One image (a file's path or bytes, its channel files' paths, or an array ``(H, W)`` /
        ``(H, W, C)``) as the model's stored input ``(C, H, W)``, exactly as training read its
        files (the card)."""
        card = self.card
        size, channels, pixel_type = tuple(card.image_size), card.decode_channels, card.pixel_type
        if isinstance(image, np.ndarray):  # through the loader's conversions and resizing, as files are
            pixels = image_files.array_image(image, channels, size, pixel_type, where)
        elif isinstance(image, tuple):  # one file per channel, in order
            paths = [os.path.abspath(part) for part in image]
            root = os.path.commonpath([os.path.dirname(path) for path in paths])
            pixels = image_files.decode_ref(FolderSource(root), tuple(os.path.relpath(p, root) for p in paths),
                                            channels, size, pixel_type)
        else:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            pixels = image_files.decode_image(data, where if isinstance(image, bytes) else str(image), channels, size,
                                              pixel_type)
        return pixels[card.keep_channels] if card.keep_channels else pixels

    def results(self, probabilities: torch.Tensor, sizes: list[tuple[int, int] | None]) -> list[dict[str, Any]]:
        """Per image: the class and probabilities, or the mask (resized back to ``sizes``) and areas."""
        return self.kind.results(probabilities, self.card.classes, sizes)

    def predict(self, images: Sequence[ImageInput], batch_size: int = 256) -> list[dict[str, Any]]:
        """Predictions of images (paths, bytes or arrays): per image, ``class`` and ``probabilities``
        (classification) or ``mask`` at the image's own size and its class ``areas`` (segmentation)."""
        out = []
        for start in range(0, len(images), batch_size):
            # Each file read once: its bytes serve both its header (own size) and its pixels.
            given = images[start:start + batch_size]
            chunk = [image if isinstance(image, (np.ndarray, bytes, tuple)) else Path(image).read_bytes()
                     for image in given]
            names = ["image" if isinstance(name, (np.ndarray, bytes)) else str(name) for name in given]
            sizes = [_size_of(image, name) for image, name in zip(chunk, names)]
            batch = np.stack([self.preprocess(image, name) for image, name in zip(chunk, names)])
            out.extend(self.results(self.probabilities(batch), sizes))
        return out

    def export_graph(self) -> inference.Ensemble:
        """The members as one fp32 graph on the CPU in the standard memory format (a copy): what
        ``export`` traces."""
        if self.network is None:
            raise VisiontuneError(f"{self.source}: an exported model cannot be exported again; export its run")
        members = [copy.deepcopy(member).to("cpu").to(memory_format=torch.contiguous_format)
                   for member in self.network.members]
        return inference.Ensemble(members, self.network.tta_modes, normalise=Normalise.from_card(self.card)).eval()


def _size_of(image: np.ndarray | bytes | tuple, where: str) -> tuple[int, int]:
    """An image's own (height, width), to give its mask back at that size."""
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    if isinstance(image, tuple):
        image, where = Path(image[0]).read_bytes(), str(image[0])
    height, width, _, _ = image_files.image_header(image, where)
    return height, width


def load_model(path: str | os.PathLike, device: str = "auto", ensemble: int | str = 1) -> TrainedModel:
    """The model of a ``train`` run folder, of a search's best trial by validation (``ensemble``:
    the mean of its best K; ``"cv"``: the fold models of its cross-validation's winner), or of a
    folder ``visiontune export`` wrote."""
    if (Path(path) / record.MODEL_CARD).is_file():
        if ensemble != 1:
            raise VisiontuneError(f"{path}: an exported model is one graph already; --ensemble applies to run folders")
        return TrainedModel.from_exported(path, device)
    return TrainedModel.from_run(path, device, ensemble)


__all__ = ["TestEvaluation", "TrainedModel", "load_model"]
