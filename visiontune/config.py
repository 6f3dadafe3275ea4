"""The training configuration: one flat, JSON-serialisable dict drives everything.

The same dict drives ``visiontune train``, a search trial, the retraining of a best trial and a
row of the ranked table. :class:`TrainConfig` declares every knob with its default and a comment
(the command-line options are generated from these fields). Model-shape fields default to None,
meaning "the model's own default", and are passed to the model builder only when set, so a
search space can leave out what does not apply (no ``blocks`` for the FNN).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.data.augment import parse_augment
from visiontune.errors import ConfigError
from visiontune.kinds import KINDS, get_kind
from visiontune.models import model_entry

if typing.TYPE_CHECKING:
    from visiontune.data.card import DatasetCard

OPTIMIZERS = ("sgd", "adam", "adamw")
REGULARIZERS = ("none", "l1", "l2")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")


def _knob(default: Any, help: str, model: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "model": model})


@dataclass
class TrainConfig:
    """Every setting of one training run, with the report's choices as defaults."""

    task: str = _knob("mnist", "the data set: a built-in task (mnist, warwick, ...) or the path of your own")
    # --- model: passed to models.build_model; None means the model's own default -------------
    model: str | None = _knob(None, "model family (classification: cnn, fnn, resnet; segmentation: fcn, fcn2, "
                                    "unet); default cnn / fcn2")
    hidden: int | None = _knob(None, "FNN hidden units (default 800)", model=True)
    blocks: int | None = _knob(None, "CNN convolution blocks, 1-4 (default 3); ResNet blocks per stage (default 2)",
                               model=True)
    stages: int | None = _knob(None, "ResNet stages, 1-4, width doubling per stage (default 3)", model=True)
    depth: int | None = _knob(None, "segmenter pooling levels (default 2; U-Net 3)", model=True)
    width: int | None = _knob(None, "feature maps of the first block, doubling per block (default 8; U-Net 16)", model=True)
    activation: str | None = _knob(None, "activation: relu, sigmoid, tanh, gelu (default relu)", model=True)
    pool_first: bool | None = _knob(None, "CNN: max-pool before the activation (report 1.3)", model=True)
    batchnorm: bool | None = _knob(None, "batch normalisation after each convolution", model=True)
    dropout: float | None = _knob(None, "dropout probability (Dropout2d after pooling; default 0)", model=True)
    # --- optimisation ----------------------------------------------------------------------
    optimizer: str = _knob("adam", "optimizer: sgd, adam, adamw")
    lr: float = _knob(1e-3, "learning rate (Adam's default 1e-3; the report's SGD used 0.1)")
    momentum: float = _knob(0.0, "SGD momentum (plain SGD in the report)")
    beta1: float = _knob(0.9, "Adam beta1 (gradient decay)")
    beta2: float = _knob(0.999, "Adam beta2 (squared-gradient decay)")
    regularizer: str = _knob("none", "weight penalty: none, l1 (added to the loss), l2 (weight decay)")
    reg_weight: float = _knob(1e-3, "lambda of the L1/L2 penalty (report: 0.001)")
    lr_schedule: str = _knob("constant", "learning-rate schedule over the epochs: constant, cosine")
    loss: str = _knob("ce", "loss: ce; segmentation also dice, ce+dice")
    batch_size: int = _knob(32, "mini-batch size")
    epochs: int = _knob(10, "training epochs (a search's --max-epochs overrides it)")
    # --- augmentation (training batches only, after the split) ------------------------------
    augment: str = _knob("none", "comma-separated: rotate, shift, noise; segmentation also flip, rot90, stain")
    rotate_degrees: float = _knob(15.0, "largest random rotation in degrees (augment=rotate)")
    shift_pixels: float = _knob(2.0, "largest random shift in pixels (augment=shift)")
    noise_std: float = _knob(0.05, "standard deviation of additive noise on [0, 1] images (augment=noise)")
    stain_jitter: float = _knob(0.1, "relative stain-intensity jitter (augment=stain)")
    tta: str = _knob("none", "test-time augmentation when evaluating (val and test alike): none; segmentation "
                             "also flip (4 flipped views) or d4 (all 8 flips and right-angle rotations)")
    # --- reproducibility and numerics --------------------------------------------------------
    seed: int = _knob(0, "seed of weights, batch order and augmentation")
    precision: str = _knob("auto", "fp32, bf16 (autocast), or auto: bf16 where a quick probe finds it faster "
                                   "(CUDA GPUs, CPUs with bf16 units)")
    cuda_graphs: bool = _knob(False, "on CUDA, capture the training step as a CUDA graph and replay it for each "
                                     "full batch (small models are launch-bound); no effect on a CPU")
    # --- set by analyze --cv for its fold trials (data.folds), not by hand: which fold validates --------
    cv_fold: int | None = _knob(None, "cross-validation: the fold this trial validates on (K: the refit on all)")

    def model_name(self, kind: str) -> str:
        """The model family, the default of the task's ``kind`` when unset."""
        return self.model or get_kind(kind).default_model

    def model_kwargs(self, card: "DatasetCard") -> dict[str, Any]:
        """Keyword arguments for ``build_model``: the set model fields plus the data's shape (its card)."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.metadata.get("model") and getattr(self, f.name) is not None}
        name = self.model_name(card.kind)
        accepted = model_entry(name, card.kind).parameters()
        stray = sorted(set(kwargs) - set(accepted))
        if stray:
            settable = [parameter for parameter in accepted if parameter in MODEL_FIELDS]
            raise ConfigError(f"{', '.join(stray)} does not apply to model {name!r} "
                              f"(it takes {', '.join(settable)})")
        kwargs["in_channels"] = card.channels
        kwargs["num_classes"] = card.num_classes
        if "image_size" in accepted:
            kwargs["image_size"] = tuple(card.image_size)
        return kwargs

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        """The plain dict; ``compact`` drops unset (None) model fields."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (compact and v is None)}

    def validate(self, card: "DatasetCard | None" = None) -> "TrainConfig":
        """Check every value; a :class:`ConfigError` naming the first bad one.

        Without a ``card``, the checks that hold for any data set; with it, also those that
        depend on the data: its kind's models, losses and test-time augmentations, the
        augmentations its card permits, and the model's shape arguments.
        """
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("regularizer", self.regularizer, REGULARIZERS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("loss", self.loss, tuple(dict.fromkeys(loss for kind in KINDS.values() for loss in kind.losses)))
        _choice("tta", self.tta, tuple(dict.fromkeys(mode for kind in KINDS.values() for mode in kind.tta_modes)))
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size)
        _positive("epochs", self.epochs)
        for name in ("momentum", "beta1", "beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), not {value}")
        for name in ("reg_weight", "rotate_degrees", "shift_pixels", "noise_std", "stain_jitter"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a non-negative number, not {getattr(self, name)}")
        if card is not None:
            self.validate_kind(card.kind_spec, card.augmentations, f"{card.name} ({card.kind})")
            self.model_kwargs(card)
        return self

    def validate_kind(self, kind, augmentations=None, what: str | None = None) -> "TrainConfig":
        """The checks that depend on the kind of task (a ``kinds.Kind``): its models, losses,
        test-time augmentations, and the ``augmentations`` permitted (default: the kind's)."""
        model_entry(self.model_name(kind.name), kind.name)
        _choice("loss", self.loss, kind.losses, f" for {kind.name}")
        _choice("tta", self.tta, kind.tta_modes, f" for {kind.name}")
        parse_augment(self.augment, kind.augmentations if augmentations is None else augmentations,
                      what or kind.name)
        return self


MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("model"))
FIELD_TYPES = typing.get_type_hints(TrainConfig)


def _choice(name: str, value: Any, choices: tuple[str, ...], where: str = "") -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}{where}, not {value!r}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, not {value}")


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check a JSON value against the field's declared type (ints allowed for floats)."""
    hint = FIELD_TYPES[name]
    allowed = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    if value is None and type(None) in typing.get_args(hint):
        return None
    base = allowed[0]
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{where}: {name} must be {base.__name__}, not {value!r}")
    return value


def config_from_dict(data: dict[str, Any], where: str = "config", card: "DatasetCard | None" = None) -> TrainConfig:
    """A validated :class:`TrainConfig` from a plain dict; unknown keys are errors. With the data
    set's ``card``, also the checks that depend on the data (``TrainConfig.validate``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(known))}")
    values = {name: _coerce(name, value, where) for name, value in data.items()}
    try:
        return TrainConfig(**values).validate(card)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON config file into a dict; one-line errors for missing or malformed files."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror or error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings")
    return data
