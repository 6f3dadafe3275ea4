"""``dataset.yaml``: what a user may say about their data set, checked key by key.

Optional, at the data set's root, read with YAML's safe loader::

    name: glands                      # default: the folder's name
    kind: segmentation                # classification or segmentation; default: from the layout
    classes: [background, gland]      # names in index order (segmentation: index 0 is background)
    image_size: [128, 128]            # resize every image to this [height, width] (or one number)
    channels: 3                       # 1 (grey) or 3 (RGB): convert every image; another count: every
                                      # image has it; a list such as [2, 0]: keep these channels, in order
    normalise: zscore                 # scale (pixel / 255, 8-bit's default) or zscore (per channel: clip to
                                      # the 0.5th-99.5th percentile, subtract the mean, divide by the std)
    val_fraction: 0.1                 # of the training images, where no val/ split is given
    test_fraction: 0.2                # of all images, where no test/ split is given
    augmentations: [flip, rot90, rotate]   # which augmentations make sense for these images
    table: labels.csv                 # a label table listing the files (found by name where not given)
    columns: {file: image_id, label: diagnosis, split: fold}   # its columns, where not found by name

An unknown key or a malformed value is a one-line error naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from visiontune.data.augment import AUGMENTATIONS
from visiontune.errors import DataError

SPEC_FILE = "dataset.yaml"
KINDS = ("classification", "segmentation")
NORMALISATIONS = ("scale", "zscore")
MAX_CHANNELS = 16  # image_files.MAX_CHANNELS (not imported: this module is read before any decoding)
DERIVED = ("keep_channels",)  # set from another key (channels), not a key of its own


@dataclass
class DatasetSpec:
    """The settings of a ``dataset.yaml`` (every one optional)."""

    name: str | None = None
    kind: str | None = None
    classes: list[str] | None = None
    image_size: list[int] | None = None  # [height, width]
    channels: int | None = None  # 1 (grey) or 3 (RGB) to convert to; another count: what every image has
    keep_channels: list[int] | None = None  # of the decoded channels, the ones kept, in order (channels: [0, 1])
    normalise: str | None = None  # NORMALISATIONS; None: scale for 8-bit images, zscore beyond
    val_fraction: float | None = None
    test_fraction: float | None = None
    augmentations: list[str] | None = None
    table: str | None = None  # a label table (data.label_tables), relative to the data set's root
    columns: dict[str, str] | None = None  # the table's file, label, mask and split columns


def parse_image_size(value: Any, where: str) -> list[int]:
    """``128``, ``[128, 96]``, ``"128x96"`` -> [height, width]; a :class:`DataError` otherwise."""
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise DataError(f"{where}: expected a size such as 128 or 128x96, not {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list) or len(value) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 4096 for v in value)):
        raise DataError(f"{where}: expected a height and width of 4 to 4096 pixels, such as 128 or [128, 96], "
                        f"not {value!r}")
    return [value[0], value[-1]]


def parse_spec(data: Any, where: str) -> DatasetSpec:
    """Check the contents of a ``dataset.yaml``; ``where`` names the file in errors."""
    if data is None:
        return DatasetSpec()
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a mapping of settings (name, kind, classes, ...)")
    known = [f.name for f in fields(DatasetSpec) if f.name not in DERIVED]
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise DataError(f"{where}: unknown key {', '.join(map(repr, unknown))}; valid keys: {', '.join(known)}")
    spec = DatasetSpec()
    if data.get("name") is not None:
        if not isinstance(data["name"], str) or not data["name"].strip():
            raise DataError(f"{where}: name: expected a non-empty text")
        spec.name = data["name"].strip()
    if data.get("kind") is not None:
        if data["kind"] not in KINDS:
            raise DataError(f"{where}: kind: expected classification or segmentation, not {data['kind']!r}")
        spec.kind = data["kind"]
    if data.get("classes") is not None:
        classes = data["classes"]
        if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, (str, int)) for c in classes)
                or len({str(c) for c in classes}) != len(classes)):
            raise DataError(f"{where}: classes: expected a list of at least two distinct names")
        spec.classes = [str(c) for c in classes]
    if data.get("image_size") is not None:
        spec.image_size = parse_image_size(data["image_size"], f"{where}: image_size")
    if data.get("channels") is not None:
        value = data["channels"]
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if isinstance(value, list):  # some channels, in order: e.g. the two stains of an unmixed H&E image
            if (not value or len(set(value)) != len(value) or len(value) > MAX_CHANNELS
                    or not all(whole(v) and 0 <= v < MAX_CHANNELS for v in value)):
                raise DataError(f"{where}: channels: expected a list of distinct channel indices (0 to "
                                f"{MAX_CHANNELS - 1}) to keep, in order, such as [0, 1], not {value!r}")
            spec.keep_channels = list(value)
        elif not whole(value) or not 1 <= value <= MAX_CHANNELS:
            raise DataError(f"{where}: channels: expected 1 (grey), 3 (RGB), another count up to {MAX_CHANNELS}, or "
                            f"a list of channels to keep such as [0, 1], not {value!r}")
        else:
            spec.channels = int(value)
    if data.get("normalise") is not None:
        if data["normalise"] not in NORMALISATIONS:
            raise DataError(f"{where}: normalise: expected {' or '.join(NORMALISATIONS)}, not {data['normalise']!r}")
        spec.normalise = data["normalise"]
    for key in ("val_fraction", "test_fraction"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.9:
            raise DataError(f"{where}: {key}: expected a fraction between 0 and 0.9, not {value!r}")
        setattr(spec, key, float(value))
    if data.get("augmentations") is not None:
        allowed = sorted(AUGMENTATIONS)
        values = data["augmentations"]
        if not isinstance(values, list) or not all(isinstance(v, str) and v in allowed for v in values):
            raise DataError(f"{where}: augmentations: expected a list of {', '.join(allowed)}, not {values!r}")
        spec.augmentations = list(values)
    if data.get("table") is not None:
        if not isinstance(data["table"], str) or not data["table"].strip() or data["table"].startswith("/"):
            raise DataError(f"{where}: table: expected a file name relative to the data set, such as labels.csv")
        spec.table = data["table"].strip()
    if data.get("columns") is not None:
        value = data["columns"]
        roles = ("file", "label", "mask", "split")
        if (not isinstance(value, dict) or not value or not set(value) <= set(roles)
                or not all(isinstance(v, str) and v for v in value.values())):
            raise DataError(f"{where}: columns: expected a mapping of {', '.join(roles)} to column names, "
                            f"not {value!r}")
        spec.columns = dict(value)
    return spec
