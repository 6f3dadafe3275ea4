"""The built-in tasks written as a user's folders train to the same test figures, in one run.

- MNIST as PNG class folders (``train/<digit>/``, ``test/<digit>/``): the same configuration and
  seed as ``visiontune train mnist``, with the same number of validation images (5,000). The
  folder's images come in another order (class by class) and its validation set is carved
  stratified, so the runs are not step for step the same; target: test accuracy within 0.003.
- WARWICK as ``train/``, ``val/`` and ``test/`` folders of ``images/`` + ``masks/`` (0/255 masks,
  the built-in's own validation split, names that keep its order) with a ``dataset.yaml`` keeping
  the two stain channels: the same arrays in the same order; target: test Dice within 0.005.

    python benchmarks/own_data_equivalence.py            # MNIST 3 epochs, WARWICK 40
    python benchmarks/own_data_equivalence.py --quick    # MNIST 1 epoch, WARWICK 10
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, git_revision, machine, save  # noqa: E402
from data_loading import write_png_folders  # noqa: E402


def png(array) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_warwick_folders(root: Path, data_dir: str | None) -> None:
    """WARWICK's built-in split as train/val/test folders of images/ + masks/ (0/255 masks)."""
    import numpy as np

    from visiontune.data import load_splits

    splits = load_splits("warwick", data_dir=data_dir)
    for part in ("train", "val", "test"):
        images, masks = getattr(splits, part).images.numpy(), getattr(splits, part).targets.numpy()
        (root / part / "images").mkdir(parents=True)
        (root / part / "masks").mkdir(parents=True)
        for index in range(len(images)):
            rgb = np.zeros((*images.shape[2:], 3), dtype=np.uint8)
            rgb[..., :2] = images[index].transpose(1, 2, 0)  # the stains in R and G, B zero, as the course's PNGs
            (root / part / "images" / f"gland_{index:03d}.png").write_bytes(png(rgb))
            (root / part / "masks" / f"gland_{index:03d}.png").write_bytes(png((masks[index] * 255).astype(np.uint8)))
    (root / "dataset.yaml").write_text("name: warwick-folders\nkind: segmentation\nclasses: [background, gland]\n"
                                       "channels: [0, 1]\n")


def train(task: str, settings: dict, out: Path, data_dir: str | None, **data) -> dict:
    from visiontune.config import config_from_dict
    from visiontune.data import load_splits
    from visiontune.train import train_one

    splits = load_splits(task, data_dir=data_dir, **data)
    config = config_from_dict({"task": task, **settings}, "benchmark", splits.card)
    return train_one(config, splits, out, progress=lambda line: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--data-dir", help="folder holding mnist/ and WARWICK/ (default $VISIONTUNE_DATA)")
    args = parser.parse_args(argv)
    info = machine()
    mnist = {"model": "cnn", "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 1 if args.quick else 3,
             "seed": 0, "precision": "fp32"}
    warwick = {"model": "fcn2", "optimizer": "adam", "epochs": 10 if args.quick else 40, "seed": 0,
               "precision": "fp32"}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="vt-equivalence-") as folder:
        root = Path(folder)
        write_png_folders(root / "mnist-png", args.data_dir, None)
        write_warwick_folders(root / "warwick-folders", args.data_dir)
        for name, task, settings, data, metric, target in (
                ("MNIST", "mnist", mnist, {}, "test/acc", 0.003),
                ("WARWICK", "warwick", warwick, {}, "test/dice", 0.005)):
            built_in = train(task, settings, root / f"{name}-built-in", args.data_dir, **data)
            folder_task = str(root / ("mnist-png" if name == "MNIST" else "warwick-folders"))
            own = train(folder_task, settings, root / f"{name}-folder", args.data_dir,
                        **({"val_size": 5000} if name == "MNIST" else {}))
            difference = abs(built_in[metric] - own[metric])
            rows[name] = {"metric": metric, "built_in": built_in[metric], "folder": own[metric],
                          "difference": difference, "target": target, "met": difference <= target,
                          "settings": settings, "sizes": {"built_in": built_in["data"]["sizes"],
                                                          "folder": own["data"]["sizes"]}}
            print(f"{name}: {metric} built-in {built_in[metric]:.4f}, folder {own[metric]:.4f}, "
                  f"difference {difference:.4f} (target {target}: {'met' if difference <= target else 'NOT met'})",
                  flush=True)
    path = save(f"own_data_equivalence{'-quick' if args.quick else ''}",
                {"machine": info, "revision": git_revision(), "rows": rows})
    print(f"SUMMARY own-data equivalence on {describe(info)}: "
          + "; ".join(f"{n} {r['metric']} {r['built_in']:.4f} vs {r['folder']:.4f}" for n, r in rows.items())
          + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
