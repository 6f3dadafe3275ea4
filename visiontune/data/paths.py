"""Where data sets live: ``--data-dir``, else ``$VISIONTUNE_DATA``, else a per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VISIONTUNE_DATA"


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/visiontune`` or ``~/.cache/visiontune``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "visiontune"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root to read from, by precedence: argument, environment variable, cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return default_cache_dir()
