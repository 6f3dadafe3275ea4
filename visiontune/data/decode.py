"""Decoding a data set's files, in parallel processes for large folders, with a progress bar.

The decoding itself is ``visiontune.image_files``' (Pillow). Pillow holds the GIL for most of the
work on small images, so threads do not help; a large folder (``PARALLEL_FROM`` files or more)
is cut into chunks that a pool of processes, one per core, decodes (forked on Linux; spawned
where forking is not available, and ``image_files`` imports no torch so that they start quickly).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from visiontune import image_files
from visiontune.file_sources import FileSource

PARALLEL_FROM = 2000  # files: fewer decode in about a second in this process
CHUNK = 500  # files per task of the pool


class ProgressBar:
    """A one-line progress bar on standard error, for jobs of ``PARALLEL_FROM`` files or more."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.shown = total >= PARALLEL_FROM
        self.started = self.last = time.perf_counter()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if self.shown and (now - self.last > 0.2 or self.done == self.total):
            self.last = now
            filled = int(30 * self.done / max(self.total, 1))
            rate = self.done / max(now - self.started, 1e-9)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} "
                              f"({rate:,.0f}/s)")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


class Decoder:
    """Runs ``image_files`` chunk functions over a source's files, in this process or in a pool.

    Use as a context manager: the pool (if any) is started once for every pass over the files
    (headers, images, masks) and stopped at the end, also when a file turns out to be broken.
    ``source`` may be None where the caller submits its own work (files of several sources) to
    ``pool``.
    """

    def __init__(self, source: FileSource | None, count: int) -> None:
        self.source = source
        cores = len(os.sched_getaffinity(0))
        # Forked where the system can (as torch's DataLoader does): no re-import of the caller's
        # script, and a start in milliseconds. The children run only image_files (numpy and Pillow),
        # never torch or Ray, so the threads those keep in this process do not matter to them.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.pool: Executor | None = (ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context(method))
                                      if count >= PARALLEL_FROM and cores > 1 else None)
        self.workers = cores if self.pool is not None else 1

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _chunks(self, function: Callable, arguments: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """(index, result) of ``function(*args)`` for each of ``arguments``, in this process or in
        the pool with at most two chunks per process in flight: results are written out as they
        come, so decoding a folder larger than memory holds a few chunks at a time."""
        if self.pool is None:
            for index, args in enumerate(arguments):
                yield index, function(*args)
            return
        pending: dict[Future, int] = {}
        upcoming = iter(enumerate(arguments))
        window = 2 * self.workers
        while True:
            for index, args in itertools.islice(upcoming, window - len(pending)):
                pending[self.pool.submit(function, *args)] = index
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()  # a broken file's DataError is raised here

    def run_uniform(self, names: Sequence[str], channels: int, size: tuple[int, int], grey_only: bool,
                    out: np.ndarray, keep: Sequence[int] | None = None) -> np.ndarray | None:
        """Images into ``out`` and their headers in one pass (``image_files.uniform_images_chunk``);
        None where a file has another size (or is colour where all were taken for grey).
        ``keep``: the decoded channels kept, in order (``out`` has that many)."""
        headers = np.zeros((len(names), 4), dtype=np.int64)
        bar = ProgressBar(len(names), "decoding images")
        starts = range(0, len(names), CHUNK)
        arguments = [(self.source, list(names[start:start + CHUNK]), channels, size, grey_only) for start in starts]
        for index, (part, part_headers, uniform) in self._chunks(image_files.uniform_images_chunk, arguments):
            if not uniform:
                return None
            start = starts[index]
            out[start:start + len(part)] = part if keep is None else part[:, list(keep)]
            headers[start:start + len(part)] = part_headers
            bar.advance(len(part))
        return headers

    def run(self, function: Callable, columns: Sequence[Sequence[Any]], constants: tuple, out: np.ndarray,
            label: str, keep: Sequence[int] | None = None) -> np.ndarray:
        """``out[i:j] = function(source, *(column[i:j] for column in columns), *constants)`` over
        chunks (``keep``: the channels kept of each chunk's images)."""
        total = len(columns[0])
        bar = ProgressBar(total, label)
        starts = range(0, total, CHUNK)
        arguments = [(self.source, *(list(c[start:start + CHUNK]) for c in columns), *constants) for start in starts]
        for index, part in self._chunks(function, arguments):
            start = starts[index]
            out[start:start + len(part)] = part if keep is None else part[:, list(keep)]
            bar.advance(len(part))
        return out
