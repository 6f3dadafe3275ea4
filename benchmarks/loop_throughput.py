"""Loop throughput: images per second of visiontune's engine against a textbook PyTorch loop.

The baseline is the report's loop: a ``DataLoader`` over a ``TensorDataset`` of float images on
the host, each batch moved to the device, ``loss.item()`` every step. Both loops train the same
model (the report's CNN 8-16-32 on MNIST with SGD; FCN2 on WARWICK with Adam) on the same data
with the same batch size; the loops take turns epoch by epoch after a warm-up epoch, and the median
of several epochs is quoted. visiontune runs as a search trial would: precision ``auto`` (bf16 autocast
only where a probe shows it pays), and also forced fp32 to separate the loop from the numerics.

    python benchmarks/loop_throughput.py --quick          # a few minutes on 2 CPU cores
    python benchmarks/loop_throughput.py --device cuda    # on a GPU (adds bf16 and CUDA graphs)
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
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from common import describe, git_revision, machine, save  # noqa: E402
from visiontune.config import TrainConfig  # noqa: E402
from visiontune.data import load_splits  # noqa: E402
from visiontune.data.placement import spill  # noqa: E402
from visiontune.engine import Trainer  # noqa: E402
from visiontune.models import build_model  # noqa: E402

# The report's settings: 1.2 (CNN 8-16-32, SGD lr 0.1, batch 32) and 2.2 (FCN2, Adam, batch 16).
CASES = {
    "mnist": dict(task="mnist", model="cnn", optimizer="sgd", lr=0.1, batch_size=32),
    "warwick": dict(task="warwick", model="fcn2", optimizer="adam", lr=1e-3, batch_size=16),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TextbookLoop:
    """The report's loop: DataLoader over a TensorDataset on the host, batches moved per step."""

    def __init__(self, config: TrainConfig, splits, device: torch.device) -> None:
        kind = "classification" if config.task == "mnist" else "segmentation"
        torch.manual_seed(0)
        self.device = device
        self.model = build_model(config.model, kind).to(device)
        self.optimizer = (torch.optim.SGD(self.model.parameters(), lr=config.lr) if config.optimizer == "sgd"
                          else torch.optim.Adam(self.model.parameters(), lr=config.lr))
        self.criterion = nn.CrossEntropyLoss()
        dataset = TensorDataset(splits.train.images.float().div(255.0), splits.train.targets.long())
        self.loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True)

    def epoch_seconds(self) -> float:
        self.model.train()
        _sync(self.device)
        start = time.perf_counter()
        running = 0.0
        for inputs, targets in self.loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(inputs), targets)
            loss.backward()
            self.optimizer.step()
            running += loss.item()
        _sync(self.device)
        return time.perf_counter() - start


# The engine's variants timed on each device: precision, and on CUDA also CUDA graphs.
ENGINES = {"cpu": ["fp32", "auto"], "cuda": ["fp32", "bf16", "fp32+graphs", "bf16+graphs"]}
ENGINE_SETTINGS = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}, "auto": {"precision": "auto"},
                   "fp32+graphs": {"precision": "fp32", "cuda_graphs": True},
                   "bf16+graphs": {"precision": "bf16", "cuda_graphs": True}}


def engine_epoch_seconds(trainer: Trainer) -> float:
    _sync(trainer.device)
    start = time.perf_counter()
    trainer.fit_epoch()
    _sync(trainer.device)
    return time.perf_counter() - start


def measure_case(name: str, splits, device: torch.device, repeats: int, placement: str | None = None) -> dict:
    """Images per second of both loops (and each precision of the engine) for one task.

    The loops take turns, epoch by epoch, so that a slow spell of the machine hits all alike;
    each is warmed up by one untimed epoch.
    """
    settings = CASES[name]
    images = len(splits.train)
    textbook = TextbookLoop(TrainConfig(**settings, precision="fp32"), splits, device)
    precisions = ENGINES[device.type]
    trainers = {p: Trainer(TrainConfig(**settings, epochs=10 ** 6, **ENGINE_SETTINGS[p]), splits, device=device,
                           placement=placement) for p in precisions}
    runners = {"textbook": textbook.epoch_seconds}
    runners.update({p: (lambda t=trainer: engine_epoch_seconds(t)) for p, trainer in trainers.items()})
    for run in runners.values():
        run()  # warm-up: allocator, oneDNN/cuDNN kernel choice
    seconds = {key: [] for key in runners}
    for _ in range(repeats):
        for key, run in runners.items():
            seconds[key].append(run())
    base = statistics.median(seconds["textbook"])
    row = {"task": name, "model": settings["model"], "batch_size": settings["batch_size"], "images": images,
           "textbook_images_per_s": images / base, "textbook_epoch_s": seconds["textbook"]}
    for precision in precisions:
        median = statistics.median(seconds[precision])
        row[f"engine_{precision}_images_per_s"] = images / median
        row[f"engine_{precision}_epoch_s"] = seconds[precision]
        row[f"engine_{precision}_speedup"] = base / median
    if "auto" in trainers:
        row["auto_chose"] = trainers["auto"].precision
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 MNIST images and 3 timed epochs per loop")
    parser.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    parser.add_argument("--repeats", type=int, help="timed epochs per loop (default 5; quick 3)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--data-dir", help="data folder (default $VISIONTUNE_DATA)")
    parser.add_argument("--placement", choices=("device", "host", "disk"),
                        help="where the engine keeps the data (default: as a trial on this device would)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    info = machine()
    print(f"loop throughput on {describe(info)}, {torch.get_num_threads()} threads, device {device}")
    rows = []
    for name in CASES:
        splits = load_splits(name, data_dir=args.data_dir, train_limit=20_000 if args.quick and name == "mnist" else None)
        if name == "warwick":  # 68 images is too short an epoch to time: each image 8 times
            splits = dataclasses.replace(splits, train=splits.train.subset(np.tile(np.arange(len(splits.train)), 8)))
        if args.placement == "disk":
            splits = spill(splits)
        row = measure_case(name, splits, device, repeats, args.placement)
        row["placement"] = args.placement or "default"
        rows.append(row)
        engines = "  ".join(f"engine {p} {row[f'engine_{p}_images_per_s']:8.0f}/s ({row[f'engine_{p}_speedup']:.2f}x)"
                            for p in ENGINES[device.type])
        chose = f" [auto chose {row['auto_chose']}]" if "auto_chose" in row else ""
        print(f"  {name:8s} {row['model']:5s} batch {row['batch_size']:3d}: textbook "
              f"{row['textbook_images_per_s']:8.0f}/s  {engines}{chose}")
    target = 1.3 if device.type == "cpu" else 5.0
    placed = f"-{args.placement}" if args.placement else ""
    quick = "-quick" if args.quick else ""
    path = save(f"loop_throughput-{device.type}-{torch.get_num_threads()}threads{placed}{quick}",
                {"machine": info, "revision": git_revision(), "device": device.type, "repeats": repeats,
                 "threads": torch.get_num_threads(), "rows": rows})
    # The figure quoted: on a CPU what a trial runs (auto); on CUDA the fastest variant, named.
    def best(row: dict) -> str:
        return "auto" if device.type == "cpu" else max(ENGINES["cuda"], key=lambda p: row[f"engine_{p}_speedup"])

    ratios = ", ".join(f"{row['task']} {row[f'engine_{best(row)}_speedup']:.2f}x"
                       + (f" ({best(row)})" if device.type == "cuda" else "") for row in rows)
    met = all(row[f"engine_{best(row)}_speedup"] >= target for row in rows)
    print(f"SUMMARY loop throughput ({device.type}): visiontune vs DataLoader loop {ratios} "
          f"(median of {repeats} epochs; target {target}x: {'met' if met else 'NOT met'}) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
