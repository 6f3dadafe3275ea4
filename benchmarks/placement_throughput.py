"""Epoch throughput of the placements against the float path they replaced, in one process.

Until issue 23 every trial turned its splits into float32 channels-last tensors on the device
once and took batches from them; now they stay uint8 and each batch becomes float when taken. This
runs both for the report's CNN on MNIST (batch 32) and FCN2 on WARWICK (batch 16) on the CPU: the
old path (emulated here: the same Trainer with its batch source swapped for a whole-split float
one), the ``device`` placement (uint8 tensor) and the ``host`` placement (shared arrays, batches
gathered by index), taking turns epoch by epoch; medians and ratios to the old path.

    python benchmarks/placement_throughput.py --quick    # 3 rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import describe, git_revision, machine, save  # noqa: E402
from visiontune.config import TrainConfig  # noqa: E402
from visiontune.data import load_splits  # noqa: E402
from visiontune.engine import Trainer  # noqa: E402

CASES = {
    "mnist": dict(task="mnist", model="cnn", optimizer="sgd", lr=0.1, batch_size=32, precision="fp32"),
    "warwick": dict(task="warwick", model="fcn2", optimizer="adam", lr=1e-3, batch_size=16, precision="fp32"),
}
OLD = "float (before)"


class FloatOnDevice:
    """The path before: the whole split as float channels-last on the device, batches by index."""

    def __init__(self, data, device: torch.device) -> None:
        images, targets = data.gather()
        self.images = images.to(device).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        self.targets = targets.to(device).long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def shuffled(self, order, size):
        for start in range(0, len(order), size):
            index = order[start:start + size]
            yield self.images[index], self.targets[index]

    def in_order(self, size):
        for start in range(0, len(self), size):
            yield self.images[start:start + size], self.targets[start:start + size]


def measure(name: str, rounds: int) -> dict:
    splits = load_splits(name, train_limit=20_000 if name == "mnist" else None)
    if name == "warwick":  # 68 images is too short an epoch to time: each image 8 times
        splits = dataclasses.replace(splits, train=splits.train.subset(np.tile(np.arange(len(splits.train)), 8)))
    old = Trainer(TrainConfig(**CASES[name], epochs=10 ** 6), splits, device="cpu", placement="device")
    old.splits = {part: FloatOnDevice(getattr(splits, part), old.device) for part in ("train", "val")}
    trainers = {OLD: old}
    for where in ("device", "host"):
        trainers[where] = Trainer(TrainConfig(**CASES[name], epochs=10 ** 6), splits, device="cpu", placement=where)
    for trainer in trainers.values():
        trainer.fit_epoch()  # warm-up
    rates: dict[str, list[float]] = {key: [] for key in trainers}
    for _ in range(rounds):
        for key, trainer in trainers.items():
            started = time.perf_counter()
            trainer.fit_epoch()
            rates[key].append(len(splits.train) / (time.perf_counter() - started))
    medians = {key: statistics.median(values) for key, values in rates.items()}
    ratios = {key: value / medians[OLD] for key, value in medians.items()}
    print(f"  {name:8s} " + "  ".join(f"{key} {value:8.0f}/s ({ratios[key]:.2f}x)" for key, value in medians.items()),
          flush=True)
    return {"task": name, **CASES[name], "images": len(splits.train), "images_per_s": rates,
            "median_images_per_s": medians, "ratio_to_before": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    args = parser.parse_args()
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    info = machine()
    print(f"placement throughput on {describe(info)}, {torch.get_num_threads()} threads", flush=True)
    rows = [measure(name, 3 if args.quick else 7) for name in CASES]
    path = save("placement_throughput" + ("-quick" if args.quick else ""),
                {"machine": info, "revision": git_revision(), "rows": rows})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
