"""A user's own labelled images: every layout visiontune reads, found, checked and listed.

Classification::

    ROOT/<class>/<images>                      no split given: validation and test are carved
    ROOT/{train,test}/<class>/<images>         optionally ROOT/val/<class>/ too (used as given)

Segmentation::

    ROOT/images/ + ROOT/masks/                 no split given
    ROOT/{train,test}/{images,masks}/          optionally val/

nnU-Net v2 (``nnunet``): ``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``, ``labelsTs/``).

Pascal VOC (``voc``): ``JPEGImages/`` + ``SegmentationClass/`` + ``ImageSets/Segmentation/*.txt``.

Label tables (``label_tables``)::

    ROOT/labels.csv + the files it names       file,label[,split] or image,mask[,split]

A mask is matched to its image by file stem; its stem may add ``_mask``, ``_label``,
``_labels``, ``_gt`` or ``_seg``. ROOT may be a folder, a ``.zip`` holding one of these layouts
(at its top or in its one top folder) or a ``dataset.yaml`` beside them (``data/spec.py``).
Files an operating system leaves behind and non-image files are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from visiontune.data.nnunet import is_nnunet, read_nnunet
from visiontune.data.voc import is_voc, read_voc
from visiontune.data.label_tables import TABLE_FILES, find_table, read_table
from visiontune.data.spec import SPEC_FILE, DatasetSpec, parse_spec
from visiontune.errors import DataError
from visiontune.file_sources import FileSource, FolderSource, ZipSource
from visiontune import image_files
from visiontune.image_files import IGNORE_LABEL, IMAGE_SUFFIXES, MASK_SUFFIXES, skip_reason

SPLIT_NAMES = ("train", "val", "test")
MASK_STEM_SUFFIXES = ("_mask", "_label", "_labels", "_gt", "_seg")
IMAGES_DIR, MASKS_DIR = "images", "masks"


@dataclass
class Item:
    """One sample as listed: its image file, and its class index or mask file."""

    image: str
    target: int | str
    split: str  # "train", "val", "test", or "" where the layout gives no split


@dataclass
class Layout:
    """What a data folder holds, before any file is decoded."""

    source: FileSource
    root: str  # the layout's folder inside the source ("" for its top)
    name: str
    kind: str
    classes: list[str]
    items: list[Item]
    spec: DatasetSpec
    description: str  # the layout in words, e.g. "class folders with train/ and test/"
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # findings worth saying (a class absent from test)
    # The mask value of pixels left out (VOC's boundaries 255, nnU-Net's ignore label): stored as
    # image_files.IGNORE_LABEL. None: every value is a class.
    ignore: int | None = None
    channel_files: bool = False  # an image is one file per channel (nnU-Net's CASE_0000, CASE_0001, ...)

    @property
    def given_splits(self) -> list[str]:
        return sorted({item.split for item in self.items if item.split}, key=SPLIT_NAMES.index)

    def truth(self, target: int | str):
        """An item's label as predictions are scored against it: its class's name, or its mask
        (class indices at the image's own size)."""
        if self.kind == "classification":
            return self.classes[target]
        from visiontune.image_files import decode_mask

        return decode_mask(self.source.read(target), self.source.describe(target), None, self.ignore)


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def open_source(path: str | os.PathLike) -> tuple[FileSource, str, str]:
    """(file source, layout folder inside it, the data set's default name) for a folder, a
    ``.zip`` or a ``dataset.yaml``."""
    path = Path(path).expanduser()
    if path.name == SPEC_FILE and path.is_file():
        path = path.parent
    if not path.exists():
        raise DataError(f"{path}: no such folder, .zip or dataset.yaml")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise DataError(f"{path}: expected a folder of images, a .zip of one, or a {SPEC_FILE}")
        source = ZipSource(path)
        top = [n for n in source.list_dir("") if skip_reason(n) != "system or hidden files"]
        # An archive of a folder holds that folder: descend into a single top folder.
        if len(top) == 1 and source.is_dir(top[0]) and not _looks_like_layout(source, ""):
            return source, top[0], top[0]
        return source, "", path.stem
    return FolderSource(path), "", path.resolve().name


def _subdirs(source: FileSource, folder: str) -> list[str]:
    return [name for name, is_dir in source.entries(folder) if is_dir and not name.startswith((".", "__"))]


def _looks_like_layout(source: FileSource, folder: str) -> bool:
    names = set(_subdirs(source, folder))
    return (bool(names & set(SPLIT_NAMES)) or {IMAGES_DIR, MASKS_DIR} <= names
            or source.exists(_join(folder, SPEC_FILE))
            or any(source.exists(_join(folder, table)) for table in TABLE_FILES) or is_nnunet(source, folder)
            or is_voc(source, folder))


def _files(source: FileSource, folder: str, skipped: Counter, suffixes=IMAGE_SUFFIXES) -> list[str]:
    """The image files directly in ``folder``; everything else is counted in ``skipped``."""
    found = []
    prefix = f"{folder}/" if folder else ""
    for name, is_dir in source.entries(folder):
        if is_dir:
            if not name.startswith((".", "__")):
                skipped["folders inside image folders"] += 1
            continue
        reason = skip_reason(name)
        if reason is None and not name.lower().endswith(suffixes):
            reason = "non-image files"
        if reason:
            skipped[reason] += 1
        else:
            found.append(prefix + name)
    return found


def read_spec(source: FileSource, root: str) -> DatasetSpec:
    """The data set's ``dataset.yaml``, checked (an empty spec where there is none)."""
    import yaml

    path = _join(root, SPEC_FILE)
    if not source.exists(path):
        return DatasetSpec()
    where = source.describe(path)
    try:
        data = yaml.safe_load(source.read_bytes(path).decode("utf-8", errors="replace"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise DataError(f"{where}: not valid YAML{line}: {getattr(error, 'problem', error)}") from None
    return parse_spec(data, where)


def _class_items(source: FileSource, folder: str, skipped: Counter) -> dict[str, list[str]]:
    """``{class name: image files}`` of a folder of class folders."""
    classes = {}
    for name in sorted(_subdirs(source, folder)):
        files = _files(source, _join(folder, name), skipped)
        if not files:
            raise DataError(f"{source.describe(_join(folder, name))}: a class folder with no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        classes[name] = files
    for name, is_dir in source.entries(folder):
        if not is_dir and name != SPEC_FILE:
            skipped[skip_reason(name) or "files beside the class folders"] += 1
    return classes


def _mask_stem(stem: str) -> str:
    lower = stem.lower()
    for suffix in MASK_STEM_SUFFIXES:
        if lower.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _pairs(source: FileSource, folder: str, skipped: Counter) -> list[tuple[str, str]]:
    """(image, mask) files of a folder holding images/ and masks/, matched by stem."""
    images = _files(source, _join(folder, IMAGES_DIR), skipped)
    masks = _files(source, _join(folder, MASKS_DIR), skipped, MASK_SUFFIXES)
    by_stem: dict[str, str] = {}
    for mask in masks:
        stem = PurePosixPath(mask).stem
        for key in {stem, _mask_stem(stem)}:
            by_stem.setdefault(key, mask)
    pairs, used = [], set()
    for image in images:
        mask = by_stem.get(PurePosixPath(image).stem)
        if mask is None:
            raise DataError(f"{source.describe(image)}: no mask for this image in "
                            f"{source.describe(_join(folder, MASKS_DIR))} (same file name, optionally with "
                            f"{', '.join(MASK_STEM_SUFFIXES)})")
        pairs.append((image, mask))
        used.add(mask)
    for mask in masks:
        if mask not in used:
            raise DataError(f"{source.describe(mask)}: a mask with no image of the same name in "
                            f"{source.describe(_join(folder, IMAGES_DIR))}")
    if not pairs:
        raise DataError(f"{source.describe(_join(folder, IMAGES_DIR))}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


def _detect_kind(source: FileSource, folder: str, spec: DatasetSpec) -> str:
    names = set(_subdirs(source, folder))
    if spec.kind:
        return spec.kind
    if {IMAGES_DIR, MASKS_DIR} <= names:
        return "segmentation"
    if names:
        return "classification"
    raise DataError(f"{source.describe(folder)}: cannot tell the kind of data set from its layout (no class folders, "
                    f"no {IMAGES_DIR}/ + {MASKS_DIR}/); add kind: classification or segmentation to {SPEC_FILE}")


def _table_layout(source: FileSource, root: str, name: str, spec: DatasetSpec, table: str) -> Layout:
    """A data set listed by a label table (``label_tables``)."""
    kind, classes, rows, description = read_table(source, root, table, spec.columns, spec.kind, spec.classes)
    items = [Item(image, target, split) for image, target, split in rows]
    items.sort(key=lambda item: (SPLIT_NAMES.index(item.split) if item.split else -1, item.image))
    notes = []
    if kind == "classification" and any(item.split == "test" for item in items):
        missing = sorted(set(classes) - {classes[item.target] for item in items if item.split == "test"})
        if missing:
            notes.append(f"test has no images of {', '.join(missing)}")
    return Layout(source, root, spec.name or name, kind, classes, items, spec, description, Counter(), notes)


# Layouts of other tools that visiontune cannot read yet: recognised, so that such a folder is
# refused in one line instead of being read as class folders named after its sub-folders.
OTHER_LAYOUTS = (
    ("a Pascal VOC data set without SegmentationClass/ (JPEGImages/, ImageSets/)", (), ("JPEGImages", "ImageSets")),
)


def _refuse_other_layouts(source: FileSource, root: str) -> None:
    folders = set(_subdirs(source, root))
    for what, files, needed in OTHER_LAYOUTS:
        if set(needed) <= folders and all(source.exists(_join(root, f)) for f in files):
            raise DataError(f"{source.describe(root)}: looks like {what}, a layout visiontune does not read yet; "
                            "lay it out as images/ + masks/ (or class folders), or list it in a labels.csv")


def _nnunet_layout(source: FileSource, root: str, name: str, spec: DatasetSpec) -> Layout:
    """An nnU-Net v2 folder (``data.nnunet``); ``dataset.yaml`` may add what dataset.json does not say."""
    found, classes, rows, description, ignore = read_nnunet(source, root)
    # channel_names fixes the count; a dataset.yaml may still keep some of them (channels: [0, 2]).
    spec = dataclasses.replace(spec, name=spec.name or found.name, kind="segmentation", classes=classes,
                               channels=spec.channels or found.channels)
    items = sorted((Item(image, mask, split) for image, mask, split in rows),
                   key=lambda item: (SPLIT_NAMES.index(item.split), image_files.ref_files(item.image)[0]))
    notes = ([f"label value {ignore} (ignore in dataset.json) is left out of the loss, the metrics and the class "
              "count"] if ignore is not None else [])
    return Layout(source, root, spec.name or name, "segmentation", classes, items, spec, description, notes=notes,
                  ignore=ignore, channel_files=any(isinstance(item.image, tuple) for item in items))


def _voc_layout(source: FileSource, root: str, name: str, spec: DatasetSpec) -> Layout:
    """A Pascal VOC segmentation folder (``data.voc``): 255 is the ignore label."""
    classes, rows, description = read_voc(source, root, spec.classes)
    spec = dataclasses.replace(spec, kind="segmentation", classes=classes)
    items = sorted((Item(image, mask, split) for image, mask, split in rows),
                   key=lambda item: (SPLIT_NAMES.index(item.split), item.image))
    notes = [f"mask value {IGNORE_LABEL} (the objects' boundaries) is the ignore label: left out of the loss, the "
             "metrics and the class count"]
    return Layout(source, root, spec.name or name, "segmentation", classes, items, spec, description, notes=notes,
                  ignore=IGNORE_LABEL)


def find_layout(path: str | os.PathLike) -> Layout:
    """List a data set's samples and check its layout; nothing is decoded yet."""
    source, root, name = open_source(path)
    spec = read_spec(source, root)
    if is_nnunet(source, root):
        return _nnunet_layout(source, root, name, spec)
    if is_voc(source, root):
        return _voc_layout(source, root, name, spec)
    table = find_table(source, root, spec.table)
    if table is None:
        _refuse_other_layouts(source, root)
    if table is not None:
        return _table_layout(source, root, name, spec, table)
    skipped: Counter = Counter()
    notes: list[str] = []
    splits = [s for s in SPLIT_NAMES if source.is_dir(_join(root, s))]
    if splits and "train" not in splits:
        raise DataError(f"{source.describe(root)}: has {', '.join(s + '/' for s in splits)} but no train/")
    folders = {s: _join(root, s) for s in splits} if splits else {"": root}
    kind = _detect_kind(source, folders.get("train", root), spec)
    items: list[Item] = []
    if kind == "classification":
        per_split = {split: _class_items(source, folder, skipped) for split, folder in folders.items()}
        first = "train" if splits else ""
        classes = sorted(per_split[first])
        if spec.classes:
            if sorted(spec.classes) != classes:
                raise DataError(f"{source.describe(_join(root, SPEC_FILE))}: classes {spec.classes} do not match the "
                                f"class folders {classes}")
            classes = list(spec.classes)
        if len(classes) < 2:
            raise DataError(f"{source.describe(folders[first])}: found {len(classes)} class folder"
                            f"{'' if len(classes) == 1 else 's'} ({', '.join(classes) or 'none'}); classification "
                            "needs at least two")
        for split, found in per_split.items():
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataError(f"{source.describe(folders[split])}: class folder{'s' if len(extra) > 1 else ''} "
                                f"{', '.join(extra)} not in {source.describe(folders[first])}")
            missing = sorted(set(classes) - set(found))
            if missing:
                notes.append(f"{split}/ has no images of {', '.join(missing)}")
            for label, files in found.items():
                items.extend(Item(file, classes.index(label), split) for file in files)
        description = "class folders" + (f" in {', '.join(s + '/' for s in splits)}" if splits else "")
    else:
        classes = list(spec.classes) if spec.classes else []
        for split, folder in folders.items():
            if not {IMAGES_DIR, MASKS_DIR} <= set(_subdirs(source, folder)):
                raise DataError(f"{source.describe(folder)}: a segmentation split needs {IMAGES_DIR}/ and "
                                f"{MASKS_DIR}/ folders")
            items.extend(Item(image, mask, split) for image, mask in _pairs(source, folder, skipped))
        description = f"{IMAGES_DIR}/ + {MASKS_DIR}/" + (f" in {', '.join(s + '/' for s in splits)}" if splits else "")
    items.sort(key=lambda item: (SPLIT_NAMES.index(item.split) if item.split else -1, item.image))
    return Layout(source, root, spec.name or name, kind, classes, items, spec, description, skipped, notes)
