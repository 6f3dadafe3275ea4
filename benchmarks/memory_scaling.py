"""Memory and throughput at scale: one uint8 copy of a data set per machine, whatever the trials.

Peak used memory above idle (MemTotal - MemAvailable sampled every 0.5 s: page cache the kernel
can reclaim counts as available) of ``visiontune data check`` and of 1- and 2-trial searches on
generated folders of RGB 128x128 PNGs in two class folders (about 1.2 GB and 3 GB decoded; the
larger one searched with ``--data-memory-gb 1``, so that it is served from the memory-mapped cache
on disk); then the epoch throughput of each placement (device, host, disk) for the report's CNN
on MNIST (batch 32) and FCN2 on WARWICK (batch 16) on the CPU, placements taking turns epoch by
epoch, and random-index batch reads from the cold memory-mapped cache against sequential ones.

    python benchmarks/memory_scaling.py --quick   # 2,500 and 6,000 images; a few minutes
    python benchmarks/memory_scaling.py           # 25,000 and 61,000 images (1.23 and 3.0 GB)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import describe, git_revision, machine, save  # noqa: E402

SIDE = 128


def used_memory() -> int:
    """MemTotal - MemAvailable, in bytes."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0]) * 1024
    return values["MemTotal"] - values["MemAvailable"]


class Sampler:
    """Used memory every 0.5 s in a thread, from ``start`` to ``stop``; the peak above idle."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(used_memory())
            self._stop.wait(0.5)

    def __enter__(self) -> "Sampler":
        self.idle = statistics.median(used_memory() for _ in range(7) if not time.sleep(0.5))
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_above_idle(self) -> int:
        return max(self.samples) - self.idle


def _write_chunk(args: tuple[str, int, int]) -> None:
    from PIL import Image

    folder, start, stop = args
    for index in range(start, stop):
        rng = np.random.default_rng(index)
        label = index % 2
        # A smooth class-dependent pattern (stripes one way or the other) under noise: learnable,
        # and PNGs that are not trivially small.
        ramp = np.linspace(0, 6 * np.pi, SIDE)
        pattern = np.sin(ramp)[None, :] if label else np.sin(ramp)[:, None]
        base = (127 + 60 * pattern + rng.normal(0, 40, (SIDE, SIDE))).clip(0, 255)
        pixels = np.stack([base, np.roll(base, index % 7, axis=0), base[::-1]], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(Path(folder) / ("ab"[label]) / f"{index:06d}.png", compress_level=1)


def write_folder(root: Path, count: int) -> Path:
    """``count`` RGB PNGs of SIDE x SIDE in class folders a/ and b/, written by a process per core."""
    if root.is_dir() and sum(1 for _ in root.rglob("*.png")) == count:
        return root
    shutil.rmtree(root, ignore_errors=True)
    for name in "ab":
        (root / name).mkdir(parents=True)
    step = 500
    with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        list(pool.map(_write_chunk, [(str(root), s, min(s + step, count)) for s in range(0, count, step)]))
    return root


def run_command(label: str, args: list[str], env: dict[str, str], timeout_s: float) -> dict:
    """Run ``visiontune ARGS`` with memory sampling; its peak, time, exit code and ``data:`` line."""
    command = [sys.executable, "-m", "visiontune", *args]
    with Sampler() as sampler:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    data_line = next((line for line in output.splitlines() if line.startswith("data:")), None)
    row = {"label": label, "command": "visiontune " + " ".join(args), "exit_code": done.returncode,
           "seconds": round(seconds, 1), "peak_above_idle_gb": round(sampler.peak_above_idle / 1e9, 3),
           "idle_gb": round(sampler.idle / 1e9, 3), "data_line": data_line}
    if done.returncode != 0:
        row["error"] = output[-2000:]
    print(f"  {label:42s} peak {row['peak_above_idle_gb']:6.2f} GB above idle, {seconds:6.0f} s, "
          f"exit {done.returncode}", flush=True)
    return row


# --------------------------------------------------------------------------------- throughput
CASES = {
    "mnist": dict(task="mnist", model="cnn", optimizer="sgd", lr=0.1, batch_size=32, precision="fp32"),
    "warwick": dict(task="warwick", model="fcn2", optimizer="adam", lr=1e-3, batch_size=16, precision="fp32"),
}


def placement_throughput(name: str, rounds: int, train_limit: int | None) -> dict:
    """Images per second of an epoch for each placement, taking turns; medians and ratios to device."""
    import torch

    from visiontune.config import TrainConfig
    from visiontune.data import load_splits
    from visiontune.data.placement import spill
    from visiontune.engine import Trainer

    splits = load_splits(name, train_limit=train_limit)
    if name == "warwick":  # 68 images is too short an epoch to time: each image 8 times
        splits = dataclasses.replace(splits, train=splits.train.subset(np.tile(np.arange(len(splits.train)), 8)))
    on_disk = spill(splits)
    trainers = {"device": Trainer(TrainConfig(**CASES[name], epochs=10 ** 6), splits, device="cpu", placement="device"),
                "host": Trainer(TrainConfig(**CASES[name], epochs=10 ** 6), splits, device="cpu", placement="host"),
                "disk": Trainer(TrainConfig(**CASES[name], epochs=10 ** 6), on_disk, device="cpu", placement="disk")}
    count = len(splits.train)
    rates: dict[str, list[float]] = {key: [] for key in trainers}
    for trainer in trainers.values():
        trainer.fit_epoch()  # warm-up
    for _ in range(rounds):
        for key, trainer in trainers.items():
            started = time.perf_counter()
            trainer.fit_epoch()
            rates[key].append(count / (time.perf_counter() - started))
    medians = {key: statistics.median(values) for key, values in rates.items()}
    row = {"task": name, **{k: v for k, v in CASES[name].items() if k != "task"}, "images": count,
           "threads": torch.get_num_threads(), "images_per_s": rates, "median_images_per_s": medians,
           "ratio_to_device": {key: medians[key] / medians["device"] for key in medians}}
    print(f"  {name:8s} " + "  ".join(f"{key} {value:8.0f}/s ({row['ratio_to_device'][key]:.2f}x)"
                                       for key, value in medians.items()), flush=True)
    return row


def _resident_fraction(paths: list[Path]) -> float | None:
    """Share of the files' bytes in the page cache (util-linux ``fincore``); None without it."""
    if not shutil.which("fincore"):
        return None
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *map(str, paths)],
                          capture_output=True, text=True)
    resident = total = 0
    for line in done.stdout.splitlines():
        res, size = line.split()
        resident, total = resident + int(res), total + int(size)
    return resident / total if total else None


def cache_reads(folder: Path, batches: int) -> dict:
    """Images per second of 32-image batches read from the memory-mapped cache, random rows against
    consecutive ones, each from a cold cache and from a warm one.

    Cold: no mapping of the entry is open while its pages are dropped (``POSIX_FADV_DONTNEED``
    leaves mapped pages in memory), then a fresh mapping is read; ``fincore`` checks what was
    resident when the reading started.
    """
    import gc

    from visiontune.data import cache, load_splits
    from visiontune.data.splits import ImageSet

    train = load_splits(str(folder)).train  # decodes or maps, and reads everything for the card
    entry, rows = train.folder, train.stored_rows()
    del train
    gc.collect()
    files = sorted(Path(entry).glob("*.npy"))
    rates, resident = {}, {}
    for temperature in ("cold", "warm"):
        for how in ("sequential", "random"):
            if temperature == "cold":
                for path in files:
                    with open(path, "rb") as stream:
                        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            resident[f"{temperature}_{how}"] = _resident_fraction(files)
            images, targets = cache.map_entry(entry)
            data = ImageSet(images, targets, rows, entry)
            order = (np.arange(len(data)) if how == "sequential"
                     else np.random.default_rng(0).permutation(len(data)))[:batches * 32]
            started = time.perf_counter()
            for start in range(0, len(order), 32):
                data.gather(order[start:start + 32])
            rates[f"{temperature}_{how}"] = len(order) / (time.perf_counter() - started)
            del data, images, targets
            gc.collect()
    print("  cache reads, batches of 32: " + ", ".join(f"{key} {value:,.0f}/s" for key, value in rates.items())
          + f" (resident when starting: {resident})", flush=True)
    return {"batch": 32, "images": batches * 32, "images_per_s": rates, "resident_fraction_at_start": resident}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,500 and 6,000 images, 3 rounds")
    parser.add_argument("--work", default=None, help="folder for the generated images and caches (default: a temp)")
    parser.add_argument("--reads-only", action="store_true",
                        help="only the cache reads, on the smaller folder (saved as memory_scaling-reads.json)")
    args = parser.parse_args()
    small, large = (2_500, 6_000) if args.quick else (25_000, 61_000)
    rounds = 3 if args.quick else 5
    work = Path(args.work or tempfile.mkdtemp(prefix="vt-memory-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
    info = machine()
    print(f"memory scaling on {describe(info)}; work folder {work}", flush=True)
    decoded = {count: count * 3 * SIDE * SIDE for count in (small, large)}
    if args.reads_only:
        folder = write_folder(work / f"pngs-{small}", small)
        reads = cache_reads(folder, batches=300 if args.quick else 2000)
        save("memory_scaling-reads" + ("-quick" if args.quick else ""),
             {"machine": info, "revision": git_revision(), "images": small, "cache_reads": reads})
        shutil.rmtree(work / "cache", ignore_errors=True)
        return 0
    folders = {count: write_folder(work / f"pngs-{count}", count) for count in (small, large)}
    shutil.rmtree(work / "cache", ignore_errors=True)
    search = ["--space", "mnist-cnn", "--max-epochs", "1", "--cpus-per-trial", "1", "--searcher", "random",
              "--no-report", "--storage", str(work / "runs")]
    commands = []
    for label, count, args_ in [
        ("data check (decodes)", small, ["data", "check", str(folders[small])]),
        ("data check (cached)", small, ["data", "check", str(folders[small])]),
        ("search, 1 trial", small, ["search", str(folders[small]), *search, "--trials", "1", "--name", "one"]),
        ("search, 2 trials", small, ["search", str(folders[small]), *search, "--trials", "2", "--name", "two"]),
        ("data check (decodes), --data-memory-gb 1", large,
         ["data", "check", str(folders[large]), "--data-memory-gb", "1"]),
        ("search, 2 trials, --data-memory-gb 1", large,
         ["search", str(folders[large]), *search, "--trials", "2", "--name", "big", "--data-memory-gb", "1"]),
    ]:
        row = run_command(label, args_, env, timeout_s=3600)
        row.update(images=count, decoded_gb=round(decoded[count] / 1e9, 3),
                   peak_over_data=round(row["peak_above_idle_gb"] * 1e9 / decoded[count], 2))
        commands.append(row)
    reads = cache_reads(folders[small], batches=300 if args.quick else 2000)
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    throughput = [placement_throughput(name, rounds, 20_000 if name == "mnist" else None) for name in CASES]
    result = {"machine": info, "revision": git_revision(), "quick": args.quick, "commands": commands,
              "cache_reads": reads, "throughput": throughput}
    path = save("memory_scaling" + ("-quick" if args.quick else ""), result)
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "runs", ignore_errors=True)
    print(f"-> {path}")
    for row in commands:
        print(f"  {row['label']:42s} {row['decoded_gb']:5.2f} GB data: peak {row['peak_above_idle_gb']:5.2f} GB "
              f"({row['peak_over_data']:.2f}x), {row['seconds']:.0f} s, exit {row['exit_code']}; {row['data_line']}")
    return 0 if all(row["exit_code"] == 0 for row in commands) else 1


if __name__ == "__main__":
    sys.exit(main())
