"""The decoded-array cache: a second run of the same folder starts at once, and every process
of a machine maps the same files.

An entry is a folder of uncompressed ``.npy`` files (the images, the targets, what else was
read) and ``meta.json``. Decoding writes into the entry's memory-mapped files chunk by chunk
(``EntryWriter``), so a data set larger than memory is decoded with a few chunks' memory, and
every reader maps the files (``map_entry``): the kernel's page cache holds one copy for all the
processes of a machine, and pages past the memory stream from disk (as nnU-Net's
preprocessed ``.npy`` cases). Its key is a hash of the file list (every file's name, size and
modification time, or a zip member's size and CRC) and of the reading settings, so a changed,
added or removed file, or another ``--image-size``, makes a new entry. Entries live in the
per-user cache folder (``$XDG_CACHE_HOME/visiontune/datasets``); an entry is written under a
temporary name and renamed when complete, so a reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from visiontune.file_sources import FileSource
from visiontune.data.paths import default_cache_dir

FORMAT = 3  # bump when what an entry holds changes (3: a folder of .npy files)
META_FILE = "meta.json"
IMAGES, TARGETS = "images", "targets"  # the two arrays every entry holds
COPIES_LOG = "copies.log"  # in a node's cache folder: a line per entry this node copied from a run's storage


def cache_dir() -> Path:
    """Where cached data sets live."""
    return default_cache_dir() / "datasets"


def cache_key(source: FileSource, files: list[str], settings: dict[str, Any]) -> str:
    """The key of a data set's entry: its files' stamps and the reading settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "where": source.describe(""), **settings}, sort_keys=True).encode())
    digest.update(repr(source.stamps(files)).encode())
    return digest.hexdigest()[:32]


def entry_folder(key: str) -> Path:
    """The folder of the entry ``key`` on this machine."""
    return cache_dir() / key


def _local(folder: str | os.PathLike) -> Path | None:
    """An entry's folder on this machine: as named where that is a path (the machine that
    decoded it), else by its key in this machine's cache (a node of a cluster); None where it is
    in neither."""
    candidates = [Path(folder)] if Path(folder).is_absolute() else []
    for candidate in candidates + [entry_folder(Path(folder).name)]:
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def map_entry(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """The (images, targets) of an entry, memory-mapped read-only; None where it is not here."""
    local = _local(folder)
    if local is None:
        return None
    try:
        return (np.load(local / f"{IMAGES}.npy", mmap_mode="r"), np.load(local / f"{TARGETS}.npy", mmap_mode="r"))
    except (OSError, ValueError):  # unreadable: treated as absent (a node copies it again)
        return None


def load_entry(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any], Path] | None:
    """(arrays, metadata, folder) of a cached entry, its arrays memory-mapped; None where there
    is none (or it is unreadable)."""
    folder = entry_folder(key)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        return arrays, meta, folder
    except (OSError, ValueError, KeyError):
        return None


def entry_bytes(folder: str | os.PathLike) -> int:
    """Bytes of an entry's files."""
    return sum(path.stat().st_size for path in Path(folder).iterdir() if path.is_file())


class EntryWriter:
    """Writes one entry: ``array(name, shape, dtype)`` gives a memory-mapped ``.npy`` file to fill,
    ``commit(meta)`` makes the entry visible. Used as a context manager, an entry not committed
    (an error, Ctrl-C) is removed: nothing half-written stays.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._folder: Path | None = None  # made with the first array: a refusal before it leaves no trace
        self.arrays: dict[str, np.ndarray] = {}

    @property
    def folder(self) -> Path:
        """The entry's folder while it is written (a temporary name until ``commit``)."""
        if self._folder is None:
            cache_dir().mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=f".{self.key}."))
        return self._folder

    def __enter__(self) -> "EntryWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.arrays.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)  # gone already where committed
            try:
                cache_dir().rmdir()  # a failed first decoding leaves no empty cache behind
            except OSError:
                pass

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A new array of the entry, mapped from its file (zeros until written)."""
        self.arrays[name] = np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype,
                                                      shape=tuple(int(side) for side in shape))
        return self.arrays[name]

    def put(self, name: str, values: np.ndarray) -> None:
        """A small array of the entry, written at once."""
        self.array(name, values.shape, values.dtype)[...] = values

    def commit(self, meta: dict[str, Any]) -> Path:
        """Flush the arrays and make the entry visible under its key; returns its folder."""
        for array in self.arrays.values():
            array.flush()
        (self.folder / META_FILE).write_text(json.dumps({**meta, "arrays": sorted(self.arrays)}))
        final = entry_folder(self.key)
        try:
            os.rename(self.folder, final)
        except OSError:  # another process committed the same entry first: keep theirs
            if _local(final) is None:
                raise
        return final
