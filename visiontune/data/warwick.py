"""WARWICK gland segmentation: ``Train/`` and ``Test/`` folders of ``image_NN.png`` + ``label_NN.png``.

Looked for under the data root, first match wins: ``ROOT/WARWICK/{Train,Test}``,
``ROOT/{Train,Test}``, ``ROOT/WARWICK.zip`` holding ``WARWICK/Train`` and ``WARWICK/Test``, or
ROOT given as that zip itself. Images keep their two stain channels (the third is always zero);
labels 0/255 (or 0/1) become 0/1 masks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from visiontune.file_sources import FileSource, FolderSource, ZipSource
from visiontune.image_files import decode_png
from visiontune.data.splits import ImageSet
from visiontune.errors import DataError

STAIN_CHANNELS = 2
_NAME = re.compile(r"^(image|label)_(\d+)\.png$", re.IGNORECASE)


def _pairs(source: FileSource, folder: str) -> list[tuple[str, str]]:
    """(image, label) paths matched by number; errors for strays and missing partners."""
    if not source.is_dir(folder):
        raise DataError(f"{source.describe(folder)}: missing folder (expected image_NN.png and label_NN.png files)")
    found: dict[str, dict[int, str]] = {"image": {}, "label": {}}
    for path in source.files_in(folder, (".png",)):
        match = _NAME.match(path.rsplit("/", 1)[-1])
        if match:
            found[match.group(1).lower()][int(match.group(2))] = path
    images, labels = found["image"], found["label"]
    if not images and not labels:
        raise DataError(f"{source.describe(folder)}: no image_NN.png / label_NN.png files in this folder")
    for number in sorted(set(images) ^ set(labels)):
        have, missing = ("image", "label") if number in images else ("label", "image")
        present = (images if have == "image" else labels)[number]
        raise DataError(f"{source.describe(present)}: has no matching {missing}_{number:02d}.png")
    return [(images[n], labels[n]) for n in sorted(images)]


def _read_image(source: FileSource, path: str) -> np.ndarray:
    pixels = decode_png(source.read_bytes(path), source.describe(path))
    if pixels.ndim != 3 or pixels.shape[2] < STAIN_CHANNELS:
        raise DataError(f"{source.describe(path)}: expected an RGB image holding two stain channels, "
                        f"got shape {pixels.shape}")
    return np.ascontiguousarray(pixels[..., :STAIN_CHANNELS].transpose(2, 0, 1)).astype(np.uint8)


def _read_label(source: FileSource, path: str) -> np.ndarray:
    pixels = decode_png(source.read_bytes(path), source.describe(path))
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    values = np.unique(pixels)
    if set(values.tolist()) <= {0, 255}:
        return (pixels == 255).astype(np.uint8)
    if set(values.tolist()) <= {0, 1}:
        return pixels.astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise DataError(f"{source.describe(path)}: label values must be 0/255 (or 0/1), found {shown}")


def load_split(source: FileSource, folder: str) -> ImageSet:
    """All image/label pairs of one folder, checked for readability, sizes and values."""
    images, masks, shape = [], [], None
    for image_path, label_path in _pairs(source, folder):
        image, mask = _read_image(source, image_path), _read_label(source, label_path)
        if image.shape[1:] != mask.shape:
            raise DataError(f"{source.describe(label_path)}: is {mask.shape[1]}x{mask.shape[0]} but its image is "
                            f"{image.shape[2]}x{image.shape[1]}")
        if shape is None:
            shape = mask.shape
        elif mask.shape != shape:
            raise DataError(f"{source.describe(image_path)}: is {mask.shape[1]}x{mask.shape[0]}, expected "
                            f"{shape[1]}x{shape[0]} like the others")
        images.append(image)
        masks.append(mask)
    return ImageSet(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)))


def _zip_layout(source: ZipSource) -> tuple[FileSource, str]:
    """The folder inside the archive that holds Train/ and Test/: WARWICK/ or the top level."""
    for prefix, marker in (("WARWICK", "WARWICK/Train"), ("", "Train")):
        if source.is_dir(marker):
            return source, prefix
    raise DataError(f"{source.describe('')}: expected the archive to hold WARWICK/Train and WARWICK/Test")


def _locate(root: Path) -> tuple[FileSource, str]:
    if root.is_file() and root.suffix.lower() == ".zip":
        return _zip_layout(ZipSource(root))
    for prefix in ("WARWICK", ""):
        folder = root / prefix if prefix else root
        if (folder / "Train").is_dir() or (folder / "Test").is_dir():
            return FolderSource(root), prefix
    if (root / "WARWICK.zip").is_file():
        return _zip_layout(ZipSource(root / "WARWICK.zip"))
    raise DataError(f"WARWICK not found: looked for {root}/WARWICK/{{Train,Test}}, {root}/{{Train,Test}} and "
                    f"{root}/WARWICK.zip; set --data-dir or $VISIONTUNE_DATA")


def load_warwick(root: Path) -> tuple[ImageSet, ImageSet, str]:
    """(train, test, description of the source) of the WARWICK set under ``root``."""
    source, prefix = _locate(root)
    join = (lambda name: f"{prefix}/{name}") if prefix else (lambda name: name)
    train, test = load_split(source, join("Train")), load_split(source, join("Test"))
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{source.describe(join('Test'))}: images are {tuple(test.images.shape[2:])}, but Train's are "
                        f"{tuple(train.images.shape[2:])}")
    return train, test, source.describe(prefix)
