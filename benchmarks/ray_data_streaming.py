"""Ray Data against the memory-mapped cache: images per second of 32-image training batches.

Why visiontune serves data past memory from its memory-mapped cache rather than through Ray Data
(DESIGN.md, Clusters). Both read the same generated folder of RGB 128x128 PNGs: Ray Data as a
trial would consume it (``ray.data.read_images`` -> ``random_shuffle`` -> ``iter_torch_batches``,
decoding in the pipeline), and as already-decoded numpy (``from_numpy`` -> ``iter_torch_batches``);
visiontune as random-index batches gathered from its cache entry (``ImageSet.gather``). The
three take turns; medians of the rounds.

    python benchmarks/ray_data_streaming.py --quick     # 1,000 images, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from common import describe, git_revision, machine, save  # noqa: E402

BATCH = 32


def write_folder(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png", compress_level=1)
    return root


def ray_data_files(root: Path) -> float:
    import ray.data

    started = time.perf_counter()
    seen = 0
    dataset = ray.data.read_images(str(root), mode="RGB").random_shuffle()
    for batch in dataset.iter_torch_batches(batch_size=BATCH):
        seen += len(batch["image"])
    return seen / (time.perf_counter() - started)


def ray_data_arrays(images: np.ndarray) -> float:
    import ray.data

    started = time.perf_counter()
    seen = 0
    dataset = ray.data.from_numpy(images).random_shuffle()
    for batch in dataset.iter_torch_batches(batch_size=BATCH):
        seen += len(batch["data"])
    return seen / (time.perf_counter() - started)


def mapped_cache(train) -> float:
    started = time.perf_counter()
    order = np.random.default_rng(1).permutation(len(train))
    for start in range(0, len(order), BATCH):
        train.gather(order[start:start + BATCH])
    return len(order) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, rounds = (1000, 3) if args.quick else (4000, 5)
    import ray

    from visiontune.data import load_splits

    with tempfile.TemporaryDirectory() as work:
        os.environ["XDG_CACHE_HOME"] = str(Path(work) / "cache")
        root = write_folder(Path(work) / "pngs", count)
        splits = load_splits(str(root))
        train = splits.train
        arrays = np.ascontiguousarray(train.stored_images)
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, logging_level="ERROR")
        try:
            ray_data_arrays(arrays[:64])  # warm-up: Ray Data's executor starts
            rates: dict[str, list[float]] = {"ray_data_png": [], "ray_data_numpy": [], "visiontune_mapped": []}
            for _ in range(rounds):
                rates["ray_data_png"].append(ray_data_files(root))
                rates["ray_data_numpy"].append(ray_data_arrays(arrays))
                rates["visiontune_mapped"].append(mapped_cache(train))
        finally:
            ray.shutdown()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    info = machine()
    result = {"machine": info, "revision": git_revision(), "images": count, "batch": BATCH, "rounds": rounds,
              "images_per_s": rates, "median_images_per_s": medians,
              "ratio_mapped_to_ray_data_png": medians["visiontune_mapped"] / medians["ray_data_png"],
              "ratio_mapped_to_ray_data_numpy": medians["visiontune_mapped"] / medians["ray_data_numpy"]}
    save("ray_data_streaming" + ("-quick" if args.quick else ""), result)
    print(f"{describe(info)}; {count} RGB 128x128 images, batches of {BATCH}, medians of {rounds} rounds")
    for name, value in medians.items():
        print(f"  {name:20s} {value:>10,.0f} images/s")


if __name__ == "__main__":
    main()
