"""Label tables: a flat folder of images and a CSV or TSV that names each file's label (as Kaggle,
fastai's ``from_csv`` and AutoGluon's path tables have it)::

    ROOT/labels.csv (or train.csv, labels.tsv, or table: FILE in dataset.yaml)
        file,label[,split]             classification: a class name per image
        image,mask[,split]             segmentation: an image and its mask file
    ROOT/<the files>                   relative to ROOT, or to ROOT/images/; a name without an
                                       extension is looked for with each image extension

The columns are found by name (``file``/``filename``/``image``/``path``/``id``; ``label``/
``class``/``category``/``target``; ``mask``; ``split``/``set``/``fold`` holding train, val or
test), or named in ``dataset.yaml`` (``columns: {file: ..., label: ..., split: ...}``). Every
problem (a missing column, a row naming a missing file, an empty label, an unknown split) is
one line naming the table and the row.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import PurePosixPath

from visiontune.errors import DataError
from visiontune.file_sources import FileSource
from visiontune.image_files import IMAGE_SUFFIXES, MASK_SUFFIXES

TABLE_FILES = ("labels.csv", "train.csv", "labels.tsv", "train.tsv")
FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_path", "path", "id", "image_id")
LABEL_COLUMNS = ("label", "class", "category", "target", "labels")
MASK_COLUMNS = ("mask", "mask_path", "mask_file", "segmentation")
SPLIT_COLUMNS = ("split", "set", "subset", "fold")
SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def find_table(source: FileSource, root: str, named: str | None) -> str | None:
    """The label table of a data folder: the one ``dataset.yaml`` names, else one of
    ``TABLE_FILES`` at its top; None where there is none."""
    if named:
        path = _join(root, named)
        if not source.exists(path):
            raise DataError(f"{source.describe(path)}: the label table named in dataset.yaml does not exist")
        return path
    return next((_join(root, name) for name in TABLE_FILES if source.exists(_join(root, name))), None)


def _column(columns: list[str], named: str | None, candidates: tuple[str, ...], where: str, what: str,
            required: bool = True) -> str | None:
    if named:
        if named not in columns:
            raise DataError(f"{where}: no column {named!r} (the {what} column named in dataset.yaml); it has "
                            f"{', '.join(columns)}")
        return named
    lower = {column.lower().strip(): column for column in columns}
    found = next((lower[name] for name in candidates if name in lower), None)
    if found is None and required:
        raise DataError(f"{where}: no {what} column; expected one named {', '.join(candidates)} (or name it with "
                        f"columns: in dataset.yaml); it has {', '.join(columns)}")
    return found


def _resolve(source: FileSource, root: str, name: str, suffixes: tuple[str, ...]) -> str | None:
    """A table's file name as a path of the source: as given, or in images/, or with an extension."""
    for folder in (root, _join(root, "images")):
        path = _join(folder, name)
        if source.exists(path) and not source.is_dir(path):
            return path
        if not PurePosixPath(name).suffix:
            for suffix in suffixes:
                if source.exists(path + suffix):
                    return path + suffix
    return None


def read_table(source: FileSource, root: str, table: str, columns: dict[str, str] | None, kind: str | None,
               classes: list[str] | None) -> tuple[str, list[str], list[tuple[str, int | str, str]], str]:
    """(kind, classes, rows of (image, class index or mask, split), description) of a label table."""
    import pandas as pd

    where = source.describe(table)
    columns = columns or {}
    separator = "\t" if table.lower().endswith(".tsv") else ","
    try:
        frame = pd.read_csv(io.BytesIO(source.read_bytes(table)), sep=separator, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{where}: not a readable {'TSV' if separator == chr(9) else 'CSV'} table ({error})") from None
    names = [str(c) for c in frame.columns]
    file_column = _column(names, columns.get("file"), FILE_COLUMNS, where, "file")
    mask_column = _column(names, columns.get("mask"), MASK_COLUMNS, where, "mask", required=kind == "segmentation")
    kind = kind or ("segmentation" if mask_column else "classification")
    label_column = (_column(names, columns.get("label"), LABEL_COLUMNS, where, "label")
                    if kind == "classification" else None)
    split_column = _column(names, columns.get("split"), SPLIT_COLUMNS, where, "split", required=False)
    if frame.empty:
        raise DataError(f"{where}: the table has no rows")
    rows: list[tuple[str, str, str]] = []
    for number, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        name = record[file_column].strip()
        if not name:
            raise DataError(f"{where}: row {number}: empty {file_column}")
        image = _resolve(source, root, name, IMAGE_SUFFIXES)
        if image is None:
            raise DataError(f"{where}: row {number}: file {name!r} not found in {source.describe(root)} or its "
                            "images/ folder")
        if kind == "classification":
            target = record[label_column].strip()
            if not target:
                raise DataError(f"{where}: row {number}: empty {label_column} for {name}")
        else:
            mask_name = record[mask_column].strip()
            target = _resolve(source, root, mask_name, MASK_SUFFIXES) if mask_name else None
            if target is None:
                raise DataError(f"{where}: row {number}: mask {mask_name!r} of {name} not found")
        split = ""
        if split_column:
            value = record[split_column].strip().lower()
            if value not in SPLIT_VALUES:
                raise DataError(f"{where}: row {number}: split {record[split_column]!r}; expected train, val or test")
            split = SPLIT_VALUES[value]
        rows.append((image, target, split))
    duplicates = [path for path, count in Counter(row[0] for row in rows).items() if count > 1]
    if duplicates:
        raise DataError(f"{where}: {duplicates[0]} is listed {Counter(r[0] for r in rows)[duplicates[0]]} times")
    splits = {row[2] for row in rows}
    if splits != {""} and "" in splits:
        raise DataError(f"{where}: some rows have a {split_column} and some do not")
    if splits != {""} and "train" not in splits:
        raise DataError(f"{where}: no row of the train split ({split_column} = train)")
    description = f"label table {PurePosixPath(table).name}"
    if kind == "segmentation":
        return kind, list(classes or []), [(image, mask, split) for image, mask, split in rows], description
    found = sorted({row[1] for row in rows})
    if classes:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{where}: label {unknown[0]!r} is not one of the classes of dataset.yaml "
                            f"({', '.join(classes)})")
        found = list(classes)
    if len(found) < 2:
        raise DataError(f"{where}: found {len(found)} label ({', '.join(found)}); classification needs at least two")
    return kind, found, [(image, found.index(label), split) for image, label, split in rows], description
