"""Where the trials of a machine keep a data set, and what that costs, decided before anything
starts (``plan``); making the data ready for it (``place``) and finding it in a trial
(``received``).

Three placements, chosen by size (``--placement auto``) or by name:

- ``device``: each trial gathers its splits once onto its GPU as uint8 (the fastest; a copy
  per trial, in the trial's share of the GPU's memory).
- ``host``: one copy per machine in shared memory: in-memory arrays travel through Ray's
  object store (one read-only copy per node, mapped zero-copy by every trial), cache-backed
  arrays are the cache's memory-mapped files (the kernel's page cache holds one copy). Batches
  are gathered by index and copied to the device ahead of use (``visiontune.batches``).
- ``disk``: the memory-mapped cache on the node's local disk, for data past ``--data-memory-gb``:
  pages come from disk as batches need them, and the kernel may drop them again.

Every node receives the data once, whatever its number of trials: the object store moves
in-memory arrays once per node; a node without the cache entry copies it once from the run's
storage (``received``, under a lock that its other trials wait on).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from visiontune.data import cache
from visiontune.errors import ConfigError, DataError

PLACEMENTS = ("device", "host", "disk")
MEMORY_FRACTION = 0.5  # of the available memory: the default --data-memory-gb
# A trial process's own memory besides the data: Python, torch, Ray's worker, a model, its
# optimiser and a few batches. Measured 0.6-0.75 GB on this project's 2-core machine
# (benchmarks/memory_scaling.py); rounded up.
TRIAL_PROCESS_BYTES = int(0.8e9)
DEVICE_DATA_SHARE = 0.5  # of a trial's share of GPU memory, what its data may take (the rest: model, activations)
DISK_MARGIN = 1.05  # the cache's disk must hold the arrays and a little more


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; free pages elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(data_memory_gb: float | None) -> int:
    """Bytes the decoded data may take in memory: ``--data-memory-gb``, else half the available memory."""
    if data_memory_gb is not None and not data_memory_gb > 0:
        raise ConfigError(f"--data-memory-gb must be positive, not {data_memory_gb}")
    return int(data_memory_gb * 1e9) if data_memory_gb else int(MEMORY_FRACTION * available_memory())


def _free_disk(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_disk(need: int, where: str) -> None:
    """Refuse, in one line, data whose arrays the cache's disk cannot hold (before decoding)."""
    free = _free_disk(cache.cache_dir())
    if need * DISK_MARGIN > free:
        raise DataError(f"{where}: the decoded images need {need / 1e9:.2f} GB in the cache at {cache.cache_dir()}, "
                        f"which has {free / 1e9:.2f} GB free; free some space, point XDG_CACHE_HOME at a larger "
                        "disk, or choose a smaller --image-size")


def stores(splits) -> list:
    """The distinct stored arrays behind a data set's splits (one ImageSet of each)."""
    seen: dict[int, Any] = {}
    for part in (splits.train, splits.val, splits.test):
        seen.setdefault(part.folder or id(part.stored_images), part)
    return list(seen.values())


def data_bytes(splits) -> int:
    """Bytes of the decoded arrays a data set's splits read (shared arrays counted once)."""
    return sum(part.nbytes for part in stores(splits))


def _gb(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


@dataclass
class Placement:
    """Where the data will be and what that costs on each machine."""

    where: str  # one of PLACEMENTS
    data_bytes: int
    budget_bytes: int
    trials_per_node: int
    memory_bytes: int  # the footprint on a machine: the shared copy (where in memory) and the trials
    disk_bytes: int  # the cache's files on a machine's disk
    device_bytes: int  # per trial on its GPU
    reason: str

    def line(self) -> str:
        """What a search, ``train`` and ``data check`` print."""
        names = {"device": "on each trial's device (uint8)", "host": "in shared host memory, one copy per machine",
                 "disk": "in the memory-mapped cache on disk, streamed"}
        need = f"memory {_gb(self.memory_bytes)} for {self.trials_per_node} trial{'s' * (self.trials_per_node > 1)}"
        if self.disk_bytes:
            need += f", disk {_gb(self.disk_bytes)} on each machine"
        if self.device_bytes:
            need += f", {_gb(self.device_bytes)} per trial on the GPU"
        return f"data: {_gb(self.data_bytes)} decoded, {names[self.where]} ({self.reason}); needs {need}"

    def to_dict(self) -> dict[str, Any]:
        """The placement as ``search.json`` records it."""
        return dataclasses.asdict(self)


def plan(splits, data_memory_gb: float | None = None, placement: str = "auto", trials_per_node: int = 1,
         gpus_per_trial: float = 0.0, gpu_memory: int | None = None, available: int | None = None) -> Placement:
    """Choose the placement of ``splits`` for ``trials_per_node`` trials per machine and check its
    footprint against the available memory (a ``DataError`` in one line where none fits).

    ``gpu_memory``: bytes of one GPU (None: no GPU here); a trial's share is ``gpus_per_trial`` of it.
    """
    if placement not in ("auto", *PLACEMENTS):
        raise ConfigError(f"--placement must be auto, {', '.join(PLACEMENTS)}, not {placement!r}")
    size = data_bytes(splits)
    budget = memory_budget(data_memory_gb)
    available = available_memory() if available is None else available
    on_disk = all(part.folder is not None for part in stores(splits))
    process = trials_per_node * TRIAL_PROCESS_BYTES
    share = int(gpus_per_trial * gpu_memory * DEVICE_DATA_SHARE) if gpus_per_trial > 0 and gpu_memory else 0
    costs = {"device": (size + process, 0, size), "host": (size + process, 0, 0),
             "disk": (process, size, 0)}

    def made(where: str, reason: str) -> Placement:
        memory, disk, device = costs[where]
        return Placement(where, size, budget, trials_per_node, memory, disk if where == "disk" else 0,
                         device, reason)

    if placement != "auto":
        chosen = made(placement, "as --placement asks")
    elif share and size <= share:
        chosen = made("device", f"fits {DEVICE_DATA_SHARE:.0%} of a trial's {gpus_per_trial:g} GPU")
    elif size <= budget:
        chosen = made("host", f"within the data memory budget of {_gb(budget)}")
    else:
        chosen = made("disk", f"over the data memory budget of {_gb(budget)} (--data-memory-gb)")
    if chosen.where == "device" and gpus_per_trial > 0 and gpu_memory and size > gpus_per_trial * gpu_memory:
        raise DataError(f"--placement device: each trial would hold the whole data set ({_gb(size)}) in its "
                        f"{gpus_per_trial:g} of a {_gb(gpu_memory)} GPU ({_gb(gpus_per_trial * gpu_memory)}); "
                        "use --placement host (one copy in shared memory) or auto")
    if chosen.memory_bytes > available:
        raise DataError(f"the data ({chosen.where} placement) and {trials_per_node} trial process"
                        f"{'es' * (trials_per_node > 1)} need {_gb(chosen.memory_bytes)} of memory, but "
                        f"{_gb(available)} is available; run fewer trials at once (--concurrency) or lower "
                        "--data-memory-gb to serve the data from disk")
    if chosen.where == "disk" and not on_disk:
        check_disk(size, "the data set")
    return chosen


def spill(splits):
    """The splits with every in-memory array written to a cache entry and mapped from there (the
    disk placement of a data set that was loaded into memory); keyed by the arrays' content."""
    mapped: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
    for part in stores(splits):
        if part.folder is not None:
            continue
        digest = hashlib.blake2b(digest_size=16)
        for array in (part.stored_images, part.stored_targets):
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
        key = f"spilled-{digest.hexdigest()}"
        if cache.load_entry(key) is None:
            with cache.EntryWriter(key) as writer:
                writer.put(cache.IMAGES, part.stored_images)
                writer.put(cache.TARGETS, part.stored_targets)
                writer.commit({"spilled": True})
        images, targets = cache.map_entry(cache.entry_folder(key))
        mapped[id(part.stored_images)] = (images, targets, str(cache.entry_folder(key)))

    def moved(part):
        if id(part.stored_images) not in mapped:
            return part
        images, targets, folder = mapped[id(part.stored_images)]
        return type(part)(images, targets, part.rows, folder)

    return dataclasses.replace(splits, train=moved(splits.train), val=moved(splits.val), test=moved(splits.test))


def in_memory(splits):
    """The splits with cache-backed arrays as plain arrays over the same mapping (no copy here):
    Ray's object store then takes one copy of them for every trial of a node."""
    def plain(part):
        if part.folder is None:
            return part
        return type(part)(np.asarray(part.stored_images), np.asarray(part.stored_targets), part.rows)

    return dataclasses.replace(splits, train=plain(splits.train), val=plain(splits.val), test=plain(splits.test))


def place(splits, chosen: Placement, local: bool):
    """The splits as the trials will receive them: disk spills in-memory arrays to the cache;
    host keeps cache-backed arrays mapped on one machine (``local``: the page cache is the shared
    copy) and hands them to the object store on a cluster."""
    if chosen.where == "disk":
        return spill(splits)
    if chosen.where == "host" and not local:
        return in_memory(splits)
    return splits


def by_key(splits):
    """The splits with each cache entry named by its key alone: on a cluster every node looks in
    its own cache (and copies the entry there once), never at the driver's path."""
    def keyed(part):
        if part.folder is None:
            return part
        return type(part)(part.stored_images, part.stored_targets, part.rows, Path(part.folder).name)

    return dataclasses.replace(splits, train=keyed(splits.train), val=keyed(splits.val), test=keyed(splits.test))


# ------------------------------------------------------------------------------ on a trial's node
def received(splits, fetch: Callable[[str, Path], None] | None = None):
    """The splits in a trial process, with every cache-backed array mapped on this node: an
    entry this node lacks is copied once (``fetch(key, folder)``, from the run's storage) while
    the node's other trials wait on a lock, then mapped by all of them."""
    for part in stores(splits):
        if part.folder is None or part.remap():
            continue
        if fetch is None:
            raise DataError(f"the cached data set {Path(part.folder).name} is not on this machine and there is no "
                            "run storage to copy it from")
        key = Path(part.folder).name
        cache.cache_dir().mkdir(parents=True, exist_ok=True)
        with open(cache.cache_dir() / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the node's other trials wait here for the one copy
            if cache.map_entry(part.folder) is None:
                started = time.time()
                fetch(key, cache.entry_folder(key))
                with open(cache.cache_dir() / cache.COPIES_LOG, "a") as log:
                    log.write(f"{key} {time.strftime('%Y-%m-%dT%H:%M:%S')} {time.time() - started:.1f}s "
                              f"{cache.entry_bytes(cache.entry_folder(key))} bytes\n")
        if not part.remap():
            raise DataError(f"the cached data set {key} could not be copied to this machine")
    for part in (splits.train, splits.val, splits.test):
        if part.folder is not None and part.stored_images is None:
            part.remap()
    return splits


def gpu_memory() -> int | None:
    """Bytes of memory of this machine's first GPU; None without one."""
    import torch

    return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None


def plan_for(splits, options, trials_per_node: int = 1, gpus_per_trial: float | None = None) -> Placement:
    """``plan`` with a run's data options (``--data-memory-gb``, ``--placement``); one trial on
    this machine's GPU where it has one, unless ``gpus_per_trial`` says otherwise."""
    memory = gpu_memory()
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if memory else 0.0
    return plan(splits, options.data_memory_gb, options.placement, trials_per_node, gpus_per_trial, memory)
