"""nnU-Net v2's raw layout, for 2D images whose channels lie in one file per case::

    ROOT/dataset.json      channel_names, labels (name -> value, background 0), file_ending
    ROOT/imagesTr/CASE_0000.png    ROOT/labelsTr/CASE.png      training cases
    ROOT/imagesTs/CASE_0000.png    ROOT/labelsTs/CASE.png      test cases (where labelled)

A 2D natural-image data set keeps a case's channels in its one ``_0000`` file (grey: one channel
name; RGB: three). Cases with further channel files (``_0001``, ...), ``regions`` and the
``ignore`` label are refused in one line: visiontune does not read them yet.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from visiontune.data.spec import DatasetSpec
from visiontune.errors import DataError
from visiontune.file_sources import FileSource

DATASET_JSON = "dataset.json"
IMAGES_TRAIN, LABELS_TRAIN, IMAGES_TEST, LABELS_TEST = "imagesTr", "labelsTr", "imagesTs", "labelsTs"


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def is_nnunet(source: FileSource, root: str) -> bool:
    """Whether ``root`` holds nnU-Net's ``dataset.json`` and ``imagesTr/``."""
    return source.exists(_join(root, DATASET_JSON)) and source.is_dir(_join(root, IMAGES_TRAIN))


def _classes(labels, where: str) -> list[str]:
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{where}: labels: expected a mapping of class names to values, such as "
                        "{\"background\": 0, \"gland\": 1}")
    if "ignore" in labels:
        raise DataError(f"{where}: labels: an 'ignore' label is not read by visiontune yet")
    if any(isinstance(value, list) for value in labels.values()):
        raise DataError(f"{where}: labels: regions (lists of values) are not supported; give one value per class")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in labels.values()):
        raise DataError(f"{where}: labels: every value must be a whole number")
    by_value = {value: str(name) for name, value in labels.items()}
    if sorted(by_value) != list(range(len(by_value))) or len(by_value) < 2:
        raise DataError(f"{where}: labels: values must be 0, 1, ... without gaps (0 the background), "
                        f"not {sorted(by_value)}")
    return [by_value[value] for value in range(len(by_value))]


def read_nnunet(source: FileSource, root: str) -> tuple[DatasetSpec, list[str], list[tuple[str, str, str]], str]:
    """(settings, classes, (image, mask, split) rows, description) of an nnU-Net v2 folder."""
    where = source.describe(_join(root, DATASET_JSON))
    try:
        meta = json.loads(source.read_bytes(_join(root, DATASET_JSON)))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{where}: expected a JSON object with channel_names and labels")
    for key in ("channel_names", "labels"):
        if key not in meta:
            raise DataError(f"{where}: no '{key}' (nnU-Net v2's dataset.json names the channels and the labels)")
    classes = _classes(meta["labels"], where)
    channels = meta["channel_names"]
    if not isinstance(channels, dict) or len(channels) not in (1, 3):
        raise DataError(f"{where}: channel_names: {len(channels) if isinstance(channels, dict) else channels} "
                        "channels; visiontune reads 1 (grey) or 3 (RGB in one file) for now")
    ending = str(meta.get("file_ending", ".png"))
    rows = []
    for images, labels, split in ((IMAGES_TRAIN, LABELS_TRAIN, "train"), (IMAGES_TEST, LABELS_TEST, "test")):
        if not source.is_dir(_join(root, labels)):
            if split == "train":
                raise DataError(f"{source.describe(root)}: an nnU-Net data set needs {LABELS_TRAIN}/ beside "
                                f"{IMAGES_TRAIN}/")
            continue
        for name, is_dir in sorted(source.entries(_join(root, labels))):
            if is_dir or not name.endswith(ending) or name.startswith("."):
                continue
            case = name[: -len(ending)]
            image = _join(root, images, f"{case}_0000{ending}")
            if not source.exists(image):
                raise DataError(f"{source.describe(_join(root, labels, name))}: no image {case}_0000{ending} in "
                                f"{images}/")
            if source.exists(_join(root, images, f"{case}_0001{ending}")):
                raise DataError(f"{source.describe(image)}: the case has one file per channel (_0001, ...), which "
                                "visiontune does not read yet")
            rows.append((image, _join(root, labels, name), split))
    if not any(split == "train" for _, _, split in rows):
        raise DataError(f"{source.describe(_join(root, LABELS_TRAIN))}: no label files ending in {ending}")
    spec = DatasetSpec(name=meta.get("name") if isinstance(meta.get("name"), str) else None, kind="segmentation",
                       classes=classes, channels=len(channels))
    return spec, classes, rows, f"nnU-Net v2 ({DATASET_JSON}, {IMAGES_TRAIN}/, {LABELS_TRAIN}/)"
