"""The model registry: builders recorded by name, looked up by :func:`build_model`.

Like timm's ``register_model``: a builder is a function taking plain keyword arguments and
returning an ``nn.Module``; a new architecture or variant is one small decorated function.
Each builder declares which task kind it serves, so a classifier cannot be asked to segment.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from visiontune.errors import ConfigError
from visiontune.kinds import KINDS


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder and what it is for."""

    name: str
    kind: str  # "classification" or "segmentation"
    builder: Callable[..., nn.Module]
    description: str

    def parameters(self) -> list[str]:
        """Names of the keyword arguments the builder accepts."""
        return list(inspect.signature(self.builder).parameters)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, kind: str, description: str) -> Callable:
    """Decorator recording ``builder`` under ``name`` for task kind ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, kind, builder, description)
        return builder

    return decorate


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one task kind."""
    return sorted(name for name, entry in _REGISTRY.items() if kind is None or entry.kind == kind)


def model_entry(name: str, kind: str | None = None) -> ModelEntry:
    """The registry entry of ``name``; a :class:`ConfigError` listing valid names if unknown."""
    entry = _REGISTRY.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        valid = ", ".join(list_models(kind))
        what = f"{kind} model" if kind else "model"
        raise ConfigError(f"unknown {what} {name!r}; valid names: {valid}")
    return entry


def build_model(name: str, kind: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` from plain keyword arguments.

    Unknown names and arguments the builder does not take raise :class:`ConfigError` with the
    valid choices; builders raise ``ValueError`` for out-of-range values, reported the same way.
    """
    entry = model_entry(name, kind)
    accepted = entry.parameters()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    try:
        return entry.builder(**kwargs)
    except ValueError as error:
        raise ConfigError(f"model {name!r}: {error}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of learnable weights (parameters with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
