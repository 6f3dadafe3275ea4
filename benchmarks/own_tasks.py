"""Data sets of the searcher benchmark that the project does not ship, made from scikit-image's
own sample photographs (the texture images that come with the package, so nothing downloads).

- ``textures``: classification of 32 x 32 grey patches cut from four texture photographs
  (brick, grass, gravel, the moon's surface), each patch with its own brightness, contrast and
  noise, so that the mean grey level does not give the class away;
- ``texture-seg``: segmentation of 48 x 48 images in which blobs of one texture (gravel) lie on
  another (grass), both brought to the same mean and spread, so that only texture tells them
  apart.

Training and test images come from disjoint parts of each photograph (the top two thirds and the
bottom third): a test patch never overlaps a training one. Both are written in the own-data
layouts ``{train,test}/<class>/`` and ``{train,test}/{images,masks}/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTURES = ("brick", "grass", "gravel", "moon")
TRAIN_ROWS = (0, 336)  # rows of each 512 x 512 photograph that training images come from
TEST_ROWS = (352, 512)  # ... and test images: a gap of 16 rows, so no patch straddles both


def _photograph(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return (image if image.ndim == 2 else image.mean(axis=2)).astype(np.float32) / 255.0


def _crop(rng: np.random.Generator, image: np.ndarray, rows: tuple[int, int], size: int) -> np.ndarray:
    top = int(rng.integers(rows[0], rows[1] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    return image[top:top + size, left:left + size]


def _standardised(patch: np.ndarray) -> np.ndarray:
    return (patch - patch.mean()) / (patch.std() + 1e-6)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def _save(path: Path, image: np.ndarray) -> None:
    from skimage import io

    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(path, image, check_contrast=False)


def write_textures(root: Path, train_per_class: int = 300, test_per_class: int = 100, size: int = 32,
                   seed: int = 0) -> Path:
    """The ``textures`` classification set under ``root`` (``train/`` and ``test/`` class folders)."""
    rng = np.random.default_rng(seed)
    for name in TEXTURES:
        photograph = _photograph(name)
        for split, rows, count in (("train", TRAIN_ROWS, train_per_class), ("test", TEST_ROWS, test_per_class)):
            for index in range(count):
                patch = _standardised(_crop(rng, photograph, rows, size))
                mean, spread = rng.uniform(0.35, 0.65), rng.uniform(0.06, 0.16)
                noisy = mean + spread * patch + rng.normal(0.0, 0.06, patch.shape)
                _save(root / split / name / f"{name}_{index:04d}.png", _to_uint8(noisy))
    return root


def write_texture_seg(root: Path, train_count: int = 240, test_count: int = 80, size: int = 48,
                      seed: int = 0) -> Path:
    """The ``texture-seg`` segmentation set under ``root`` (``train/`` and ``test/`` with
    ``images/`` and 0/255 ``masks/``): gravel blobs on grass."""
    rng = np.random.default_rng(seed)
    background, foreground = _photograph("grass"), _photograph("gravel")
    rows, columns = np.mgrid[:size, :size]
    for split, band, count in (("train", TRAIN_ROWS, train_count), ("test", TEST_ROWS, test_count)):
        for index in range(count):
            mask = np.zeros((size, size), dtype=bool)
            for _ in range(int(rng.integers(1, 4))):
                y, x = rng.uniform(6, size - 6, 2)
                a, b = rng.uniform(5, 13, 2)
                angle = rng.uniform(0, np.pi)
                dy, dx = rows - y, columns - x
                u, v = dy * np.cos(angle) + dx * np.sin(angle), -dy * np.sin(angle) + dx * np.cos(angle)
                mask |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
            inside = _standardised(_crop(rng, foreground, band, size))
            outside = _standardised(_crop(rng, background, band, size))
            mean, spread = rng.uniform(0.4, 0.6), rng.uniform(0.08, 0.14)
            image = mean + spread * np.where(mask, inside, outside) + rng.normal(0.0, 0.04, mask.shape)
            _save(root / split / "images" / f"field_{index:04d}.png", _to_uint8(image))
            _save(root / split / "masks" / f"field_{index:04d}.png", (mask * 255).astype(np.uint8))
    (root / "dataset.yaml").write_text("name: texture-seg\nclasses: [grass, gravel]\n")
    return root


WRITERS = {"textures": write_textures, "texture-seg": write_texture_seg}


def write_task(name: str, folder: Path) -> Path:
    """Write the own task ``name`` into ``folder/name`` (once) and return its path."""
    root = folder / name
    if not (root / "train").is_dir():
        WRITERS[name](root)
        if name == "textures":
            (root / "dataset.yaml").write_text("name: textures\n")
    return root
