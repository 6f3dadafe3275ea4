"""Label tables: a flat folder of images and a CSV/TSV naming each file's label or mask (generated files)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_tree
from visiontune.cli import main
from visiontune.data import load_splits

RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "visiontune" / "datasets"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def table_files(rows: list[str], header: str = "file,label", name: str = "labels.csv", sep: str = ",",
                images: int = 12, folder: str = "images/") -> dict[str, bytes]:
    files = {f"{folder}{index}.png": png(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for index in range(images)}
    files[name] = ("\n".join([header.replace(",", sep)] + [row.replace(",", sep) for row in rows]) + "\n").encode()
    return files


def labelled(count: int = 12, split: bool = False) -> list[str]:
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    return [f"{i}.png,{'malignant' if i % 2 else 'benign'}" + (f",{splits[i]}" if split else "") for i in range(count)]


def test_a_classification_table_is_read_as_its_classes_and_splits(tmp_path):
    root = write_tree(tmp_path / "lesions", table_files(labelled(split=True), header="file,label,split"))
    splits = load_splits(str(root))
    card = splits.card
    assert card.kind == "classification" and card.classes == ["benign", "malignant"] and card.channels == 3
    assert splits.sizes() == {"train": 8, "val": 2, "test": 2}  # the split column, as given
    assert "label table labels.csv" in card.description
    assert card.counts["train"] == {"benign": 4, "malignant": 4}


def test_a_tsv_with_ids_without_extensions_and_named_columns(tmp_path):
    rows = [f"{i}\t{'b' if i % 3 else 'a'}" for i in range(12)]
    files = table_files([], header="image_id\tdiagnosis", name="meta.tsv", sep="\t", folder="")
    files["meta.tsv"] = ("image_id\tdiagnosis\n" + "\n".join(rows) + "\n").encode()
    files["dataset.yaml"] = b"table: meta.tsv\ncolumns: {file: image_id, label: diagnosis}\n"
    splits = load_splits(str(write_tree(tmp_path / "ids", files)))
    assert splits.card.classes == ["a", "b"] and sum(splits.sizes().values()) == 12


def test_a_segmentation_table_pairs_images_with_masks(tmp_path):
    files = {}
    rows = []
    for index in range(10):
        files[f"scans/{index}.png"] = png(RNG.integers(0, 256, (16, 16), dtype=np.uint8))
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[:8] = 1
        files[f"outlines/{index}.png"] = png(mask)
        rows.append(f"scans/{index}.png,outlines/{index}.png")
    files["labels.csv"] = ("image,mask\n" + "\n".join(rows) + "\n").encode()
    splits = load_splits(str(write_tree(tmp_path / "scans", files)))
    assert splits.card.kind == "segmentation" and splits.card.num_classes == 2 and splits.card.channels == 1
    assert int(splits.train.targets.max()) == 1


@pytest.mark.parametrize("rows, header, message", [
    (["0.png,benign", "99.png,malignant"], "file,label", "row 3: file '99.png' not found"),
    (["0.png,benign", "1.png,"], "file,label", "row 3: empty label for 1.png"),
    (["0.png,benign", "1.png,malignant"], "name,label", "no file column; expected one named file"),
    (["0.png,benign,train", "1.png,malignant,holdout"], "file,label,split", "row 3: split 'holdout'"),
    (["0.png,benign", "1.png,benign"], "file,label", "found 1 label (benign); classification needs at least two"),
    (["0.png,benign", "0.png,malignant"], "file,label", "images/0.png is listed 2 times"),
])
def test_broken_tables_are_one_line_errors_with_nothing_written(tmp_path, capsys, private_cache, rows, header,
                                                                message):
    root = write_tree(tmp_path / "broken", table_files(rows, header=header))
    code = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err and "labels.csv" in err, err
    assert not private_cache.exists()


def test_a_table_trains_and_predict_scores_new_files_of_the_same_table(tmp_path, capsys):
    root = write_tree(tmp_path / "lesions", table_files(labelled()))
    run = tmp_path / "run"
    assert main(["train", str(root), "--epochs", "1", "--out", str(run), "--quiet", "--precision", "fp32"]) == 0
    new = write_tree(tmp_path / "new", table_files(labelled(6), images=6))
    assert main(["predict", str(run), str(new / "images"), "--out", str(tmp_path / "pred")]) == 0
    predicted = (tmp_path / "pred").iterdir()
    assert any(path.suffix == ".csv" for path in predicted)


@pytest.mark.parametrize("files, message", [
    ({"dataset.json": b"{}", "imagesTr/a_0000.png": b"", "labelsTr/a.png": b"", "imagesTs/b_0000.png": b""},
     "looks like an nnU-Net v2 data set"),
    ({"JPEGImages/a.jpg": b"", "SegmentationClass/a.png": b"", "ImageSets/Segmentation/train.txt": b"a\n"},
     "looks like a Pascal VOC data set"),
])
def test_other_tools_layouts_are_refused_in_one_line_not_read_as_class_folders(tmp_path, capsys, files, message):
    root = write_tree(tmp_path / "other", files)
    code = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err and "does not read yet" in err, err
