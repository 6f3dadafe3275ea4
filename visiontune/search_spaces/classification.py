"""Define-by-run search spaces for MNIST classification.

Each function only calls ``trial.suggest_*`` and returns plain constants (here none). Parameters
are conditional where they only mean something in one branch: hidden units only for the FNN,
depth, width, pooling order and batchnorm only for the CNN, the penalty weight only with a
penalty, momentum only with SGD, rotation and shift sizes only with augmentation.
"""

from __future__ import annotations

from typing import Any

ACTIVATIONS = ["relu", "tanh", "sigmoid"]


def _optimizer(trial, sgd_lr: tuple[float, float], adam_lr: tuple[float, float]) -> None:
    """Optimiser with its own learning-rate range; momentum only for SGD."""
    if trial.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd":
        trial.suggest_float("lr", *sgd_lr, log=True)
        trial.suggest_float("momentum", 0.0, 0.95)
    else:
        trial.suggest_float("lr", *adam_lr, log=True)


def _regularizer(trial) -> None:
    # The report used lambda = 1e-3; above that an L1 penalty on every weight swamps the loss.
    if trial.suggest_categorical("regularizer", ["none", "l1", "l2"]) != "none":
        trial.suggest_float("reg_weight", 1e-6, 1e-3, log=True)


def mnist_full(trial) -> dict[str, Any]:
    """The report's classification dimensions (exercises 1.1-1.5), searched together."""
    model = trial.suggest_categorical("model", ["cnn", "fnn"])
    trial.suggest_categorical("activation", ACTIVATIONS)
    if model == "fnn":
        trial.suggest_categorical("hidden", [128, 256, 512, 800, 1024])
    else:
        trial.suggest_int("blocks", 1, 4)
        trial.suggest_categorical("width", [8, 16, 32, 64])
        trial.suggest_categorical("pool_first", [False, True])
        trial.suggest_categorical("batchnorm", [False, True])
    trial.suggest_float("dropout", 0.0, 0.6)
    _regularizer(trial)
    # The report's SGD rates were 0.1 (CNN) and 1 (FNN); Adam's default is 1e-3.
    _optimizer(trial, sgd_lr=(1e-2, 1.0), adam_lr=(3e-4, 1e-2))
    trial.suggest_categorical("lr_schedule", ["constant", "cosine"])
    trial.suggest_categorical("batch_size", [32, 64, 128])
    if trial.suggest_categorical("augment", ["none", "rotate,shift"]) != "none":
        trial.suggest_float("rotate_degrees", 0.0, 20.0)
        trial.suggest_float("shift_pixels", 0.0, 3.0)
    return {}


def mnist_cnn(trial) -> dict[str, Any]:
    """CNNs only, sizes that train in seconds per epoch on a CPU core: quick searches, the demo."""
    trial.suggest_int("blocks", 2, 3)
    trial.suggest_categorical("width", [8, 16, 32])
    trial.suggest_categorical("batchnorm", [False, True])
    trial.suggest_float("dropout", 0.0, 0.3)
    trial.suggest_float("lr", 3e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return {"model": "cnn", "optimizer": "adam"}


def mnist_gpu(trial) -> dict[str, Any]:
    """Wider CNNs with batchnorm, augmentation and schedules: the space for GPU searches (RESULTS.md)."""
    # Widths 32 and 64 cost several times the report's 8 on a CPU core but little on a GPU,
    # where a small CNN's step is bound by kernel launches, not arithmetic.
    trial.suggest_int("blocks", 2, 3)
    trial.suggest_categorical("width", [32, 64])
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_float("lr", 3e-4, 5e-3, log=True)
    trial.suggest_categorical("lr_schedule", ["constant", "cosine"])
    trial.suggest_categorical("batch_size", [64, 128, 256])
    if trial.suggest_categorical("augment", ["none", "rotate,shift"]) != "none":
        trial.suggest_float("rotate_degrees", 0.0, 15.0)
        trial.suggest_float("shift_pixels", 0.0, 3.0)
    return {"model": "cnn", "optimizer": "adam", "batchnorm": True}


def colour_resnet(trial) -> dict[str, Any]:
    """Small ResNets for colour photographs (CIFAR-10's default): stages, blocks, width, Adam, shifts."""
    trial.suggest_int("stages", 2, 3)
    trial.suggest_int("blocks", 1, 2)
    trial.suggest_categorical("width", [16, 32])
    trial.suggest_float("dropout", 0.0, 0.3)
    trial.suggest_float("lr", 3e-4, 3e-3, log=True)
    trial.suggest_categorical("lr_schedule", ["constant", "cosine"])
    trial.suggest_categorical("batch_size", [64, 128])
    if trial.suggest_categorical("augment", ["none", "shift"]) != "none":
        trial.suggest_float("shift_pixels", 1.0, 4.0)
    return {"model": "resnet", "optimizer": "adam"}
