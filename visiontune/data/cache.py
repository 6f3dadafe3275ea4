"""The decoded-array cache: a second run of the same folder starts at once.

An entry holds a data set's decoded, resized uint8 arrays and what was found while reading
them. Its key is a hash of the file list (every file's name, size and modification time, or a
zip member's size and CRC) and of the reading settings, so a changed, added or removed file,
or another ``--image-size``, makes a new entry. Entries live in the per-user cache folder
(``$XDG_CACHE_HOME/visiontune/datasets``) and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from visiontune.file_sources import FileSource
from visiontune.data.paths import default_cache_dir

FORMAT = 2  # bump when what an entry holds changes


def cache_dir() -> Path:
    """Where cached data sets live."""
    return default_cache_dir() / "datasets"


def cache_key(source: FileSource, files: list[str], settings: dict[str, Any]) -> str:
    """The key of a data set's entry: its files' stamps and the reading settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "where": source.describe(""), **settings}, sort_keys=True).encode())
    digest.update(repr(source.stamps(files)).encode())
    return digest.hexdigest()[:32]


def load_entry(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """(arrays, metadata) of a cached entry, or None where there is none (or it is unreadable)."""
    path = cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name != "meta"}
            meta = json.loads(str(data["meta"]))
        return arrays, meta
    except (OSError, ValueError, KeyError):
        return None


def save_entry(key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write an entry atomically; a cache that cannot be written is only a slower next run."""
    folder = cache_dir()
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".npz")
        with os.fdopen(descriptor, "wb") as stream:
            np.savez(stream, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(temporary, folder / f"{key}.npz")
    except OSError:  # a full disk or a read-only cache: the next run decodes again
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
