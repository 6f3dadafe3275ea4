"""nnU-Net v2's raw layout, for 2D images::

    ROOT/dataset.json      channel_names, labels (name -> value, background 0), file_ending
    ROOT/imagesTr/CASE_0000.png    ROOT/labelsTr/CASE.png      training cases
    ROOT/imagesTs/CASE_0000.png    ROOT/labelsTs/CASE.png      test cases (where labelled)

A case is one file per channel named in ``channel_names`` (``CASE_0000``, ``CASE_0001``, ...,
stacked in that order), or, as nnU-Net's natural 2D images, all its channels in its one
``_0000`` file (an RGB PNG for three channel names). The ``ignore`` label (the highest value) is
left out of the loss, the metrics and the class count. ``regions`` are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from visiontune.data.spec import DatasetSpec
from visiontune.errors import DataError
from visiontune.file_sources import FileSource
from visiontune.image_files import MAX_CHANNELS

DATASET_JSON = "dataset.json"
IMAGES_TRAIN, LABELS_TRAIN, IMAGES_TEST, LABELS_TEST = "imagesTr", "labelsTr", "imagesTs", "labelsTs"


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def is_nnunet(source: FileSource, root: str) -> bool:
    """Whether ``root`` holds nnU-Net's ``dataset.json`` and ``imagesTr/``."""
    return source.exists(_join(root, DATASET_JSON)) and source.is_dir(_join(root, IMAGES_TRAIN))


def _classes(labels, where: str) -> tuple[list[str], int | None]:
    """(class names in value order, the ignore label's value or None) of ``labels``."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{where}: labels: expected a mapping of class names to values, such as "
                        "{\"background\": 0, \"gland\": 1}")
    labels = dict(labels)
    ignore = labels.pop("ignore", None)
    if any(isinstance(value, list) for value in labels.values()):
        raise DataError(f"{where}: labels: regions (lists of values) are not supported; give one value per class")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in labels.values()):
        raise DataError(f"{where}: labels: every value must be a whole number")
    by_value = {value: str(name) for name, value in labels.items()}
    if sorted(by_value) != list(range(len(by_value))) or len(by_value) < 2:
        raise DataError(f"{where}: labels: values must be 0, 1, ... without gaps (0 the background), "
                        f"not {sorted(by_value)}")
    if ignore is not None and (not isinstance(ignore, int) or isinstance(ignore, bool) or ignore != len(by_value)):
        raise DataError(f"{where}: labels: ignore must be the highest value, {len(by_value)} here (as nnU-Net "
                        f"requires), not {ignore!r}")
    return [by_value[value] for value in range(len(by_value))], ignore


def _case_image(source: FileSource, root: str, images: str, case: str, ending: str, channels: list[str],
                label_file: str) -> str | tuple[str, ...]:
    """A case's image: its one file, or its channel files in order (each of ``channels`` named)."""
    first = _join(root, images, f"{case}_0000{ending}")
    if not source.exists(first):
        raise DataError(f"{source.describe(label_file)}: no image {case}_0000{ending} in {images}/")
    extra = _join(root, images, f"{case}_{len(channels):04d}{ending}")
    if source.exists(extra):
        raise DataError(f"{source.describe(extra)}: a channel file beyond the {len(channels)} channel_names of "
                        f"{DATASET_JSON}")
    if len(channels) == 1 or not source.exists(_join(root, images, f"{case}_0001{ending}")):
        return first  # every channel in one file (checked against channel_names when decoded)
    files = [_join(root, images, f"{case}_{index:04d}{ending}") for index in range(len(channels))]
    for index, file in enumerate(files):
        if not source.exists(file):
            raise DataError(f"{source.describe(_join(root, images))}: no {case}_{index:04d}{ending} for channel "
                            f"{index} ({channels[index]}) of case {case}")
    return tuple(files)


def read_nnunet(source: FileSource, root: str
                ) -> tuple[DatasetSpec, list[str], list[tuple[str | tuple[str, ...], str, str]], str, int | None]:
    """(settings, classes, (image, mask, split) rows, description, the ignore label's value) of an
    nnU-Net v2 folder; an image is a file or a tuple of channel files."""
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
    if "regions_class_order" in meta:
        raise DataError(f"{where}: regions_class_order: region-based training (overlapping labels) is not supported; "
                        "give one value per class")
    classes, ignore = _classes(meta["labels"], where)
    channel_names = meta["channel_names"]
    if (not isinstance(channel_names, dict) or not 1 <= len(channel_names) <= MAX_CHANNELS
            or sorted(str(key) for key in channel_names) != sorted(str(i) for i in range(len(channel_names)))):
        raise DataError(f"{where}: channel_names: expected a mapping of \"0\", \"1\", ... to channel names, 1 to "
                        f"{MAX_CHANNELS} of them, not {channel_names!r}")
    channels = [str(channel_names[key]) for key in sorted(channel_names, key=int)]
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
            label_file = _join(root, labels, name)
            image = _case_image(source, root, images, name[: -len(ending)], ending, channels, label_file)
            rows.append((image, label_file, split))
    if not any(split == "train" for _, _, split in rows):
        raise DataError(f"{source.describe(_join(root, LABELS_TRAIN))}: no label files ending in {ending}")
    per_channel = [isinstance(image, tuple) for image, _, _ in rows]
    if any(per_channel) and not all(per_channel):
        single = next(image for image, _, _ in rows if isinstance(image, str))
        raise DataError(f"{source.describe(single)}: this case has no _0001{ending} file, but other cases have one "
                        f"file per channel (_0000 to _{len(channels) - 1:04d}); every case must be laid out alike")
    spec = DatasetSpec(name=meta.get("name") if isinstance(meta.get("name"), str) else None, kind="segmentation",
                       classes=classes, channels=len(channels))
    how = "one file per channel" if all(per_channel) else "channels in one file"
    return spec, classes, rows, f"nnU-Net v2 ({DATASET_JSON}, {IMAGES_TRAIN}/, {LABELS_TRAIN}/; {how})", ignore
