"""The placements on a GPU: four trials per GPU on a data set larger than a quarter of its memory.

A quarter of the GPU is each trial's share at ``--gpus-per-trial 0.25``, so the on-device
placement (a uint8 copy per trial) cannot hold such a set four times over: ``--placement auto``
must serve it from one copy in shared host memory (here the cache's memory-mapped files, which
the kernel's page cache holds once), batches gathered by index, pinned and copied to the GPU on
a side stream ahead of use. This benchmark generates that set as a cache entry (synthetic
glands, WARWICK's stand-in: 2 x 128 x 128 images with masks; only the rows the trials read are
written, the rest left holes), hands it to ``run_search(data=...)``, and runs two searches of four identical trials each (seeds 0-3, FCN2, a few epochs over the same random
training rows), the GPU's utilisation and memory and the host's used memory sampled every 0.5 s:

1. ``auto`` on the large set (expected: host);
2. ``device`` on a copy of just the rows those trials read (which fits each trial's share):
   the on-device placement's throughput, the baseline of the streamed one.

It also records that ``--placement device`` on the large set is refused before anything starts.
Figures: each trial's training images per second (median over its epochs after the first) and
their sum, peak GPU memory and utilisation (median and mean of the samples while the trials
ran), peak host memory above idle (MemTotal - MemAvailable). On a CPU (a rehearsal) the same
runs without the GPU figures.

    python benchmarks/gpu_placement.py                      # on a GPU: 1.05 x a quarter of it
    python benchmarks/gpu_placement.py --gb 0.3 --rows 600  # a CPU rehearsal
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import describe, git_revision, machine  # noqa: E402
from gpu_summary import utilisation  # noqa: E402
from memory_scaling import Sampler  # noqa: E402
from visiontune.data import cache, load_splits  # noqa: E402
from visiontune.data.placement import gpu_memory, plan  # noqa: E402
from visiontune.data.splits import ImageSet  # noqa: E402
from visiontune.errors import DataError  # noqa: E402
from visiontune.runfolder import load_search  # noqa: E402
from visiontune.search import SearchOptions, run_search  # noqa: E402

TRIALS = 4
GPUS_PER_TRIAL = 1 / TRIALS
TEMPLATE_ROWS = 512  # distinct generated images, repeated to fill the large set
SPACE = {"task": "warwick", "params": {"model": "fcn2", "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
                                       "augment": "flip", "seed": [0, 1, 2, 3]}}


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB) every 0.5 s while running; nothing
    without nvidia-smi."""

    def __init__(self, csv_path: Path) -> None:
        self.csv_path = csv_path
        self.process = None

    def __enter__(self) -> "GpuSampler":
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=self.csv_path.open("w"), stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            self.process = None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    def figures(self) -> dict:
        """Peak memory and the median and mean utilisation of the samples."""
        if not self.csv_path.exists():
            return {"gpu_samples": 0}
        median, mean, count = utilisation(self.csv_path)  # the GPU check's reading of the same samples
        rows = [line.split(",") for line in self.csv_path.read_text().splitlines()]
        memory = [float(row[2]) for row in rows if len(row) == 3 and row[2].strip().isdigit()]
        if not count:
            return {"gpu_samples": 0}
        return {"gpu_samples": count, "gpu_util_median": median, "gpu_util_mean": mean,
                "gpu_memory_peak_gb": max(memory) * 2**20 / 1e9}


def large_entry(template: ImageSet, gigabytes: float, read: int) -> tuple[ImageSet, np.ndarray]:
    """A cache entry of ``gigabytes`` of images and masks, and ``read`` rows spread over all of
    it: the rows the trials read. Only those are written (the template's rows repeated); the
    rest of each file stays a hole that nothing reads, so the set costs a few seconds to make,
    not minutes, and the trials, the placement and the page cache meet a set of the full size.
    Written once; with --keep-data a rerun maps the existing entry."""
    images, masks = template.stored_images, template.stored_targets
    row_bytes = images[0].nbytes + masks[0].nbytes
    count = math.ceil(gigabytes * 1e9 / row_bytes)
    picked = np.random.default_rng(0).choice(count, size=read, replace=False)
    key = f"gpu-placement-{count}-{read}"
    if cache.load_entry(key) is None:
        started = time.perf_counter()
        with cache.EntryWriter(key) as writer:
            out_images = writer.array(cache.IMAGES, (count, *images.shape[1:]), np.uint8)
            out_masks = writer.array(cache.TARGETS, (count, *masks.shape[1:]), np.uint8)
            for index, row in enumerate(np.sort(picked)):
                out_images[row] = images[index % len(images)]
                out_masks[row] = masks[index % len(masks)]
            writer.commit({"generated": "benchmarks/gpu_placement.py", "rows": count, "written": read})
        print(f"a {count * row_bytes / 1e9:.1f} GB set of {count:,} rows, {read:,} of them written, "
              f"in {time.perf_counter() - started:.0f} s")
    stored_images, stored_targets = cache.map_entry(cache.entry_folder(key))
    return ImageSet(stored_images, stored_targets, None, str(cache.entry_folder(key))), picked


def splits_over(template_splits, stored: ImageSet, train_rows: np.ndarray, held_rows: np.ndarray):
    """The template's splits with train, val and test as rows of ``stored``."""
    half = len(held_rows) // 2
    part = lambda rows: stored.subset(rows)  # noqa: E731
    return dataclasses.replace(template_splits, train=part(train_rows), val=part(held_rows[:half]),
                               test=part(held_rows[half:]), source="generated (benchmarks/gpu_placement.py)")


def search(name: str, splits, placement: str, epochs: int, storage: Path, space_file: Path, cpus: float) -> dict:
    """One four-trial search; its placement, per-trial throughput and the samples' figures."""
    gpus = GPUS_PER_TRIAL if torch.cuda.is_available() else 0.0
    options = SearchOptions(task="warwick", space=str(space_file), searcher="grid", scheduler="none",
                            max_epochs=epochs, placement=placement, gpus_per_trial=gpus, cpus_per_trial=cpus,
                            storage=str(storage), name=name, report=False, top_k=1)
    with Sampler() as sampler, GpuSampler(storage / f"{name}-gpu.csv") as gpu:
        started = time.perf_counter()
        summary = run_search(options, data=splits, status_interval_s=60.0)
        seconds = time.perf_counter() - started
    run = load_search(storage / name)
    rates = []
    for trial in run.trials:
        per_epoch = trial.epochs["time_this_iter_s"].tolist()[1:] or trial.epochs["time_this_iter_s"].tolist()
        rates.append(len(splits.train) / statistics.median(per_epoch))
    recorded = json.loads((storage / name / "search.json").read_text())["placement"]
    return {"placement": recorded["where"], "reason": recorded["reason"], "data_gb": recorded["data_bytes"] / 1e9,
            "trials": summary["trials"], "train_rows": len(splits.train), "epochs": epochs, "seconds": seconds,
            "images_per_s_per_trial": [round(rate) for rate in rates], "images_per_s_total": round(sum(rates)),
            "host_memory_peak_above_idle_gb": sampler.peak_above_idle / 1e9, **gpu.figures()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, help="size of the large set (default: 1.05 x a quarter of the GPU)")
    parser.add_argument("--rows", type=int, default=20_000, help="training rows each epoch reads [20000]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each trial [3]")
    parser.add_argument("--cpus-per-trial", type=float, default=3.0, help="CPUs per trial [3]")
    parser.add_argument("--out", default="benchmarks/results/gpu_placement.json", help="the figures' JSON file")
    parser.add_argument("--work", help="folder for the searches' run folders (default: a temporary one)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the generated set in the cache for a rerun (default: delete it at the end)")
    args = parser.parse_args(argv)
    memory = gpu_memory()
    if args.gb is None and memory is None:
        parser.error("no GPU here: give the large set's size with --gb")
    gigabytes = args.gb or 1.05 * memory / TRIALS / 1e9
    info = machine()
    print(f"placements on {describe(info)}: a {gigabytes:.1f} GB set, {TRIALS} trials per GPU")
    template_splits = load_splits("warwick", synthetic=True)
    template = ImageSet(*template_splits.train.gather(np.arange(min(TEMPLATE_ROWS, len(template_splits.train)))))
    stored, picked = large_entry(template, gigabytes, args.rows + 512)
    train_rows, held_rows = np.sort(picked[:args.rows]), picked[args.rows:]
    large = splits_over(template_splits, stored, train_rows, held_rows)
    small_store = ImageSet(np.ascontiguousarray(stored.stored_images[picked]),
                           np.ascontiguousarray(stored.stored_targets[picked]))
    small = splits_over(template_splits, small_store, np.arange(args.rows), np.arange(args.rows, len(picked)))

    result = {"machine": info, "revision": git_revision(), "large_set_gb": stored.nbytes / 1e9,
              "gpu_memory_gb": memory / 1e9 if memory else None, "trials": TRIALS, "space": SPACE}
    if memory:  # asked for, the on-device placement of the large set is refused before anything starts
        try:
            plan(large, placement="device", trials_per_node=TRIALS, gpus_per_trial=GPUS_PER_TRIAL, gpu_memory=memory)
            result["device_on_large_set"] = "accepted (unexpected)"
        except DataError as refusal:
            result["device_on_large_set"] = f"refused: {refusal}"
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        storage = Path(work)
        space_file = storage / "space.json"
        # bf16 on a GPU (as the loop benchmark found fastest there); fp32 on a CPU, where it is faster.
        precision = "bf16" if torch.cuda.is_available() else "fp32"
        space_file.write_text(json.dumps({**SPACE, "params": {**SPACE["params"], "precision": precision}}))
        result["streamed"] = search("large-auto", large, "auto", args.epochs, storage, space_file, args.cpus_per_trial)
        result["on_device"] = search("small-device", small, "device", args.epochs, storage, space_file,
                                     args.cpus_per_trial)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        for name in ("large-auto-gpu.csv", "small-device-gpu.csv"):  # the samples, beside the figures
            if (storage / name).exists() and (storage / name).stat().st_size:
                Path(args.out).with_name(Path(args.out).stem + f"-{name}").write_text((storage / name).read_text())
    if not args.keep_data:
        shutil.rmtree(stored.folder, ignore_errors=True)
    streamed, on_device = result["streamed"], result["on_device"]
    result["streamed_over_device"] = streamed["images_per_s_total"] / on_device["images_per_s_total"]
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    gpu = (f"; GPU peak {streamed.get('gpu_memory_peak_gb', 0):.1f} GB, utilisation median "
           f"{streamed.get('gpu_util_median', 0):.0f}%" if streamed.get("gpu_samples") else "")
    print(f"SUMMARY placements: {result['large_set_gb']:.1f} GB set, {TRIALS} trials: {streamed['placement']} "
          f"{streamed['images_per_s_total']:,} images/s against {on_device['placement']} "
          f"{on_device['images_per_s_total']:,} ({result['streamed_over_device']:.2f}x); host peak "
          f"{streamed['host_memory_peak_above_idle_gb']:.1f} GB above idle{gpu} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
