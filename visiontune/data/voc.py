"""Pascal VOC's segmentation layout::

    ROOT/JPEGImages/NAME.jpg              the images
    ROOT/SegmentationClass/NAME.png       palette masks: the palette index is the class, 255 the
                                          objects' boundaries (the ignore label)
    ROOT/ImageSets/Segmentation/train.txt, val.txt   the names of each split, a line each

The lists are the splits (train, and val where listed); the test split is carved as for any
folder. The classes are ``dataset.yaml``'s, else VOC's own 21 (a mask value past them is then an
error naming the file). A list naming a missing image or mask is one line naming the list and the
line.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from visiontune.errors import DataError
from visiontune.file_sources import FileSource

IMAGES, MASKS, LISTS = "JPEGImages", "SegmentationClass", "ImageSets/Segmentation"
SPLIT_LISTS = (("train", "train.txt"), ("val", "val.txt"))
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
IMAGE_ENDINGS = (".jpg", ".jpeg", ".png")


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def is_voc(source: FileSource, root: str) -> bool:
    """Whether ``root`` holds VOC's ``JPEGImages/`` and ``SegmentationClass/``."""
    return source.is_dir(_join(root, IMAGES)) and source.is_dir(_join(root, MASKS))


def read_voc(source: FileSource, root: str, classes: list[str] | None
             ) -> tuple[list[str], list[tuple[str, str, str]], str]:
    """(classes, (image, mask, split) rows, description) of a VOC folder."""
    lists = [(split, _join(root, LISTS, name)) for split, name in SPLIT_LISTS
             if source.exists(_join(root, LISTS, name))]
    if not any(split == "train" for split, _ in lists):
        raise DataError(f"{source.describe(root)}: a Pascal VOC folder needs {LISTS}/train.txt listing its training "
                        "images")
    rows, seen = [], set()
    for split, path in lists:
        where = source.describe(path)
        for number, line in enumerate(source.read_bytes(path).decode("utf-8", errors="replace").splitlines(), 1):
            name = line.strip().split()[0] if line.strip() else ""
            if not name:
                continue
            image = next((_join(root, IMAGES, name + ending) for ending in IMAGE_ENDINGS
                          if source.exists(_join(root, IMAGES, name + ending))), None)
            if image is None:
                raise DataError(f"{where}: line {number} names {name}, but {IMAGES}/{name}.jpg does not exist")
            mask = _join(root, MASKS, f"{name}.png")
            if not source.exists(mask):
                raise DataError(f"{where}: line {number} names {name}, but {MASKS}/{name}.png does not exist")
            if name in seen:
                raise DataError(f"{where}: line {number}: {name} is listed in more than one split")
            seen.add(name)
            rows.append((image, mask, split))
    if not rows:
        raise DataError(f"{source.describe(_join(root, LISTS, 'train.txt'))}: lists no images")
    return list(classes or VOC_CLASSES), rows, f"Pascal VOC ({IMAGES}/, {MASKS}/, {LISTS}/*.txt)"
