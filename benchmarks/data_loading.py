"""Data loading: a folder of 70,000 PNG files into uint8 tensors, three ways, in one run.

MNIST's 70,000 images are written as a class-folder layout (``train/<digit>/`` and
``test/<digit>/``, one PNG per image) in a temporary folder, then read into uint8 tensors:

- visiontune's first load (``load_splits(FOLDER)``, an empty cache): list, read the headers,
  decode in one forked process per core (Pillow), split, describe; the arrays are cached;
- visiontune's cached load of the same folder (the file list checked, the arrays read back);
- ``torchvision.datasets.ImageFolder`` with ``PILToTensor`` read through a ``DataLoader`` with
  2 worker processes into one uint8 tensor per split: what a user would otherwise write. Its
  default loader converts every image to RGB; a second variant passes a grey loader, doing the
  same work as visiontune (which finds the images grey), for the fairer comparison.

Each is repeated ``--repeats`` times, interleaved; medians are reported. Targets: first load at
least 1.5x faster than the ImageFolder path, cached load under 2 seconds.

    python benchmarks/data_loading.py --quick     # 10,000 images
    python benchmarks/data_loading.py             # all 70,000
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, git_revision, machine, save  # noqa: E402


def write_png_folders(root: Path, data_dir: str | None, limit: int | None) -> int:
    """MNIST as train/<digit>/N.png and test/<digit>/N.png; returns the number of files written."""
    from PIL import Image

    from visiontune.data import load_splits

    splits = load_splits("mnist", data_dir=data_dir, download=False, val_size=1)
    parts = {"train": (torch_cat(splits.train, splits.val)), "test": (splits.test.images, splits.test.targets)}
    jobs = []
    for split, (images, labels) in parts.items():
        count = len(images) if limit is None else min(len(images), limit * (6 if split == "train" else 1) // 7)
        for digit in range(10):
            (root / split / str(digit)).mkdir(parents=True, exist_ok=True)
        jobs.extend((root / split / str(int(labels[i])) / f"{i}.png", images[i, 0].numpy()) for i in range(count))

    def write(job) -> None:
        path, array = job
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, jobs))
    return len(jobs)


def torch_cat(train, val):
    import torch

    return torch.cat([train.images, val.images]), torch.cat([train.targets, val.targets])


def grey_loader(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("L")


def load_image_folder(root: Path, grey: bool = False) -> dict:
    """ImageFolder + DataLoader(num_workers=2) into one uint8 tensor per split."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    shapes = {}
    for split in ("train", "test"):
        extra = {"loader": grey_loader} if grey else {}
        dataset = ImageFolder(str(root / split), transform=PILToTensor(), **extra)
        images, labels = [], []
        for batch, target in DataLoader(dataset, batch_size=256, num_workers=2):
            images.append(batch)
            labels.append(target)
        shapes[split] = tuple(torch.cat(images).shape)
    return shapes


def load_visiontune(root: Path) -> dict:
    from visiontune.data import load_splits

    splits = load_splits(str(root))
    return {name: tuple(part.images.shape) for name, part in (("train", splits.train), ("test", splits.test))}


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 images instead of 70,000")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each way [3]")
    parser.add_argument("--data-dir", help="folder holding mnist/ (default $VISIONTUNE_DATA)")
    args = parser.parse_args(argv)
    info = machine()
    limit = 10_000 if args.quick else None
    with tempfile.TemporaryDirectory(prefix="vt-loading-") as folder:
        root = Path(folder) / "mnist-png"
        started = time.perf_counter()
        files = write_png_folders(root, args.data_dir, limit)
        print(f"data loading on {describe(info)}: {files:,} PNG files written in {time.perf_counter() - started:.0f} s",
              flush=True)
        baseline, grey = "ImageFolder + DataLoader(2 workers)", "ImageFolder (grey loader) + DataLoader(2 workers)"
        rows: dict[str, list[float]] = {"visiontune, first load": [], "visiontune, cached load": [], baseline: [],
                                        grey: []}
        for repeat in range(args.repeats):
            os.environ["XDG_CACHE_HOME"] = str(Path(folder) / f"cache-{repeat}")  # an empty cache each time
            rows[baseline].append(timed(lambda: load_image_folder(root)))
            rows[grey].append(timed(lambda: load_image_folder(root, grey=True)))
            rows["visiontune, first load"].append(timed(lambda: load_visiontune(root)))
            rows["visiontune, cached load"].append(timed(lambda: load_visiontune(root)))
            print(f"  repeat {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in rows.items()),
                  flush=True)
    medians = {name: statistics.median(values) for name, values in rows.items()}
    speedup = medians[baseline] / medians["visiontune, first load"]
    grey_speedup = medians[grey] / medians["visiontune, first load"]
    cached = medians["visiontune, cached load"]
    path = save(f"data_loading{'-quick' if args.quick else ''}",
                {"machine": info, "revision": git_revision(), "files": files, "repeats": args.repeats,
                 "seconds": rows, "medians": medians, "first_load_speedup": speedup,
                 "first_load_speedup_over_grey_loader": grey_speedup})
    print(f"SUMMARY data loading of {files:,} PNG files (medians of {args.repeats}): visiontune first load "
          f"{medians['visiontune, first load']:.2f} s, cached {cached:.2f} s, ImageFolder + DataLoader "
          f"{medians[baseline]:.2f} s (grey loader {medians[grey]:.2f} s): first load {speedup:.2f}x faster "
          f"(target 1.5x: {'met' if speedup >= 1.5 else 'NOT met'}; {grey_speedup:.2f}x against the grey loader), "
          f"cached {'under' if cached < 2 else 'over'} 2 s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
