"""Builders of small data-set files on disk, for loader and command-line tests."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from visiontune.data.mnist import IDX_FILES, IMAGE_MAGIC, LABEL_MAGIC


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_idx(folder: Path, train: int = 30, test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    """Four IDX files of random digits; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
    }
    for key, (stem, _) in IDX_FILES.items():
        data = idx_bytes(arrays[key], IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def mnist_png_files(per_digit: int = 3, seed: int = 0) -> dict[str, bytes]:
    """The course's MNIST/Train/<digit>/*.png and MNIST/Test/<digit>/*.png layout, as path -> bytes."""
    rng = np.random.default_rng(seed)
    files = {}
    for split in ("Train", "Test"):
        for digit in range(10):
            for index in range(per_digit):
                image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                files[f"MNIST/{split}/{digit}/{index}.png"] = png_bytes(image)
    return files


def warwick_files(train: int = 6, test: int = 3, size: int = 32, seed: int = 0) -> dict[str, bytes]:
    """The WARWICK/Train and WARWICK/Test layout of image_NN.png and label_NN.png, as path -> bytes."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, count in (("Train", train), ("Test", test)):
        for number in range(1, count + 1):
            image = np.zeros((size, size, 3), dtype=np.uint8)
            image[..., :2] = rng.integers(0, 256, (size, size, 2), dtype=np.uint8)
            label = np.where(rng.random((size, size)) > 0.5, 255, 0).astype(np.uint8)
            files[f"WARWICK/{split}/image_{number:02d}.png"] = png_bytes(image)
            files[f"WARWICK/{split}/label_{number:02d}.png"] = png_bytes(label)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


_CARDS: dict = {}


def builtin_card(task: str):
    """The card of a built-in task, from its synthetic stand-in (same kind, classes and shape)."""
    if task not in _CARDS:
        from visiontune.data import load_splits

        _CARDS[task] = load_splits(task, synthetic=True).card
    return _CARDS[task]


def write_shapes(root: Path, count: int = 24, size: tuple[int, int] = (24, 40), seed: int = 0) -> Path:
    """A three-class segmentation set (``images/`` + ``masks/``, ``dataset.yaml`` naming background,
    square, disc) of non-square colour images: red squares and green discs on noise."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    height, width = size
    rows, columns = np.mgrid[:height, :width]
    for index in range(count):
        image = rng.normal(0.3, 0.1, (height, width, 3))
        mask = np.zeros((height, width), dtype=np.uint8)
        for shape in range(2):
            y, x, r = rng.integers(5, height - 5), rng.integers(5, width - 5), rng.integers(3, 5)
            if (index + shape) % 2:
                inside, label, colour = (abs(rows - y) < r) & (abs(columns - x) < r), 1, (0.9, 0.2, 0.2)
            else:
                inside, label, colour = (rows - y) ** 2 + (columns - x) ** 2 < r * r, 2, (0.2, 0.9, 0.2)
            mask[inside], image[inside] = label, colour
        (root / "images" / f"s{index}.png").write_bytes(png_bytes((np.clip(image, 0, 1) * 255).astype(np.uint8)))
        (root / "masks" / f"s{index}_mask.png").write_bytes(png_bytes(mask))
    (root / "dataset.yaml").write_text("name: shapes\nclasses: [background, square, disc]\n")
    return root


def write_colour_classes(root: Path, names=("ant", "bee", "cat"), per_class: int = 12,
                         size: tuple[int, int] = (12, 12), seed: int = 0) -> Path:
    """A colour classification set in class folders: each class a different mean colour, so that
    a small model learns it in an epoch or two."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        tint = np.roll(np.array([0.8, 0.2, 0.2]), label)
        for index in range(per_class):
            image = np.clip(rng.normal(tint, 0.15, (*size, 3)), 0, 1)
            (root / name / f"{index}.png").write_bytes(png_bytes((image * 255).astype(np.uint8)))
    return root
