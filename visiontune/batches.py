"""A split's batches on the training device: stored rows (8-bit, 16-bit or float) become the
model's float input one batch at a time, by the data set's normalisation
(``data.normalisation.Normalise``), wherever the rows are kept (``data.placement``).

``DeviceBatches`` holds the split on the device as stored and takes batches by index there;
``HostBatches`` gathers each batch's rows from the shared (or memory-mapped) arrays on the host
and copies them to the device; on CUDA a background thread gathers and pins the next batches and
a side stream copies them while the device works on the current one. Both give the same
numbers: the same rows, converted the same way, in the same order.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from visiontune.data.normalisation import Normalise, device_view, pixel_values
from visiontune.data.splits import ImageSet

Batch = tuple[torch.Tensor, torch.Tensor]
PREFETCH = 2  # batches gathered ahead on CUDA
UPLOAD_ROWS = 1024  # rows per piece when a split is copied to the device


class _Inputs:
    """Stored images to the model's input: pixel values, then the card's normalisation (on the
    device the images are on)."""

    def __init__(self, normalise: Normalise | None, device: torch.device) -> None:
        self.normalise = (normalise or Normalise()).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalise(pixel_values(images))


class DeviceBatches:
    """A split kept on the device as stored (the ``device`` placement: a copy per trial)."""

    def __init__(self, data: ImageSet, device: torch.device, normalise: Normalise | None = None) -> None:
        self.device = device
        self.as_input = _Inputs(normalise, device)
        stored = device_view(torch.from_numpy(data.stored_images[:0])).dtype
        self.images = torch.empty((len(data), *data.image_shape), dtype=stored, device=device)
        target_shape = data.stored_targets.shape[1:]
        self.targets = torch.empty((len(data), *target_shape), dtype=torch.int64 if not target_shape else torch.uint8,
                                   device=device)
        for start in range(0, len(data), UPLOAD_ROWS):  # piece by piece: no host copy of the whole split
            images, targets = data.gather(np.arange(start, min(start + UPLOAD_ROWS, len(data))))
            self.images[start:start + len(images)] = device_view(images).to(device)
            self.targets[start:start + len(images)] = targets.to(device, self.targets.dtype)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def shuffled(self, order: torch.Tensor, size: int) -> Iterator[Batch]:
        """Batches of ``size`` rows in ``order`` (a permutation on the device)."""
        for start in range(0, len(order), size):
            index = order[start:start + size]
            yield self.as_input(self.images[index]), self.targets[index].long()

    def in_order(self, size: int) -> Iterator[Batch]:
        """The split in order, ``size`` rows at a time."""
        for start in range(0, len(self), size):
            yield self.as_input(self.images[start:start + size]), self.targets[start:start + size].long()


class HostBatches:
    """A split kept on the host (the ``host`` and ``disk`` placements), batches gathered by index."""

    def __init__(self, data: ImageSet, device: torch.device, normalise: Normalise | None = None) -> None:
        self.data, self.device = data, device
        self.as_input = _Inputs(normalise, device)

    def __len__(self) -> int:
        return len(self.data)

    def shuffled(self, order: torch.Tensor, size: int) -> Iterator[Batch]:
        """Batches of ``size`` rows in ``order`` (a permutation, on any device)."""
        order = order.cpu().numpy()
        return self._uploaded(order[start:start + size] for start in range(0, len(order), size))

    def in_order(self, size: int) -> Iterator[Batch]:
        """The split in order, ``size`` rows at a time."""
        return self._uploaded(np.arange(start, min(start + size, len(self.data)))
                              for start in range(0, len(self.data), size))

    def _uploaded(self, indices: Iterator[np.ndarray]) -> Iterator[Batch]:
        if self.device.type != "cuda":
            for index in indices:
                images, targets = self.data.gather(index)
                yield self.as_input(images), targets.long()
            return
        yield from self._prefetched(indices)

    def _prefetched(self, indices: Iterator[np.ndarray]) -> Iterator[Batch]:
        """CUDA: a thread gathers and pins batches ahead; a side stream copies each to the device
        while the device still works on the one before."""
        ready: queue.Queue = queue.Queue(PREFETCH)
        stop = threading.Event()

        def gather() -> None:
            try:
                for index in indices:
                    if stop.is_set():
                        return
                    images, targets = self.data.gather(index)
                    ready.put((device_view(images).pin_memory(), targets.pin_memory()))
            except BaseException as error:  # handed to the consumer, raised there
                ready.put(error)
                return
            ready.put(None)

        worker = threading.Thread(target=gather, daemon=True)
        worker.start()
        stream = torch.cuda.Stream(self.device)
        consumer = torch.cuda.current_stream(self.device)
        try:
            pending = None
            while True:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                uploaded = None
                if item is not None:
                    with torch.cuda.stream(stream):
                        uploaded = (item[0].to(self.device, non_blocking=True),
                                    item[1].to(self.device, non_blocking=True))
                    event = torch.cuda.Event()
                    event.record(stream)
                    uploaded = (*uploaded, event)
                if pending is not None:
                    images, targets, event = pending
                    consumer.wait_event(event)
                    images.record_stream(consumer)
                    targets.record_stream(consumer)
                    yield self.as_input(images), targets.long()
                if uploaded is None:
                    return
                pending = uploaded
        finally:
            stop.set()
            while worker.is_alive():  # unblock a gatherer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(0.01)


def split_batches(data: ImageSet, device: torch.device, placement: str, normalise: Normalise | None = None
                  ) -> DeviceBatches | HostBatches:
    """The batch source of a split for a placement (``data.placement.PLACEMENTS``), its images
    normalised by ``normalise`` (the card's; None: pixel / 255)."""
    return (DeviceBatches(data, device, normalise) if placement == "device"
            else HostBatches(data, device, normalise))
