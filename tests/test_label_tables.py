"""Layouts of other tools (generated files): label tables (a flat folder of images and a CSV/TSV
naming each file's label or mask) and nnU-Net v2's raw layout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_tree
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.predict import SCORES_FILE

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
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "pred")]) == 0  # scored by its table
    scores = json.loads((tmp_path / "pred" / SCORES_FILE).read_text())
    assert scores["images"] == 6 and 0.0 <= scores["acc"] <= 1.0


@pytest.mark.parametrize("files, message", [
    ({"JPEGImages/a.jpg": b"", "ImageSets/Main/train.txt": b"a\n"}, "looks like a Pascal VOC data set without"),
])
def test_other_tools_layouts_are_refused_in_one_line_not_read_as_class_folders(tmp_path, capsys, files, message):
    root = write_tree(tmp_path / "other", files)
    code = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err and "does not read yet" in err, err
    assert not (tmp_path / "other" / ".." / "cache").exists()


def nnunet_files(cases: int = 10, tests: int = 4, labels=None, ending: str = ".png") -> dict[str, bytes]:
    """nnU-Net v2's layout of grey 2D cases with 3 classes: a bright square (1) and a dark bar (2)."""
    files = {}
    for split, count in (("Tr", cases), ("Ts", tests)):
        for index in range(count):
            mask = np.zeros((16, 16), dtype=np.uint8)
            mask[2:7, 2:7], mask[10:13] = 1, 2
            image = (RNG.integers(60, 120, (16, 16)) + 100 * (mask == 1) - 50 * (mask == 2)).astype(np.uint8)
            files[f"images{split}/case{split}{index:03d}_0000{ending}"] = png(image)
            files[f"labels{split}/case{split}{index:03d}{ending}"] = png(mask)
    meta = {"channel_names": {"0": "grey"}, "labels": labels or {"background": 0, "square": 1, "bar": 2},
            "numTraining": cases, "file_ending": ending, "name": "Dataset901_Shapes"}
    files["dataset.json"] = json.dumps(meta).encode()
    return files


def test_an_nnunet_folder_is_read_as_its_classes_channels_and_test_split(tmp_path, capsys):
    root = write_tree(tmp_path / "Dataset901_Shapes", nnunet_files())
    splits = load_splits(str(root))
    card = splits.card
    assert card.kind == "segmentation" and card.classes == ["background", "square", "bar"] and card.channels == 1
    assert card.name == "Dataset901_Shapes" and splits.sizes()["test"] == 4  # imagesTs + labelsTs, as given
    assert sum(splits.sizes().values()) == 14 and int(splits.train.targets.max()) == 2
    run = tmp_path / "run"
    assert main(["train", str(root), "--epochs", "1", "--out", str(run), "--quiet", "--precision", "fp32"]) == 0
    new = write_tree(tmp_path / "new", nnunet_files(cases=3, tests=0))
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "pred")]) == 0  # scored by its labels
    assert json.loads((tmp_path / "pred" / SCORES_FILE).read_text())["images"] == 3


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update({"dataset.json": b'{"channel_names": {"0": "grey"}}'}), "dataset.json: no 'labels'"),
    (lambda f: f.update({"dataset.json": json.dumps({"channel_names": {"0": "g"}, "labels": {
        "background": 0, "square": [1, 2]}}).encode()}), "regions (lists of values) are not supported"),
    (lambda f: f.pop("imagesTr/caseTr001_0000.png"), "caseTr001.png: no image caseTr001_0000.png in imagesTr/"),
    (lambda f: f.update({"imagesTr/caseTr002_0001.png": f["imagesTr/caseTr002_0000.png"]}),
     "caseTr002_0001.png: a channel file beyond the 1 channel_names of dataset.json"),
    (lambda f: f.update({"dataset.json": json.dumps({"channel_names": {"0": "g"}, "labels": {
        "background": 0, "square": 1, "bar": 2, "ignore": 5}}).encode()}), "ignore must be the highest value, 3 here"),
    (lambda f: f.update({"dataset.json": json.dumps({"channel_names": {"0": "g"}, "labels": {
        "background": 0, "square": 2}}).encode()}), "values must be 0, 1, ... without gaps"),
])
def test_broken_nnunet_folders_are_one_line_errors(tmp_path, capsys, private_cache, change, message):
    files = nnunet_files(cases=4, tests=0)
    change(files)
    code = main(["data", "check", str(write_tree(tmp_path / "broken", files))])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not private_cache.exists()


def palette_png(mask: np.ndarray) -> bytes:
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def voc_files(count: int = 12, classes_yaml: bool = True) -> dict[str, bytes]:
    """VOC's layout: JPEG images, palette masks with 255 on the objects' boundaries, the split lists."""
    files = {}
    names = [f"2007_{index:06d}" for index in range(count)]
    for index, name in enumerate(names):
        mask = np.zeros((24, 24), dtype=np.uint8)
        mask[4:12, 4:12] = 1 + index % 2
        mask[3, 3:13] = mask[12, 3:13] = 255  # boundary
        image = (RNG.integers(40, 90, (24, 24, 3)) + 120 * (mask[..., None] == 1)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        files[f"JPEGImages/{name}.jpg"] = buffer.getvalue()
        files[f"SegmentationClass/{name}.png"] = palette_png(mask)
    files["ImageSets/Segmentation/train.txt"] = ("\n".join(names[:9]) + "\n").encode()
    files["ImageSets/Segmentation/val.txt"] = ("\n".join(names[9:]) + "\n").encode()
    if classes_yaml:
        files["dataset.yaml"] = b"classes: [background, square, other]\n"
    return files


def test_a_voc_folder_uses_its_lists_as_splits_and_255_as_the_ignore_label(tmp_path):
    splits = load_splits(str(write_tree(tmp_path / "VOC2012", voc_files())))
    card = splits.card
    assert card.kind == "segmentation" and card.classes == ["background", "square", "other"] and card.channels == 3
    assert splits.sizes()["val"] == 3 and splits.sizes()["train"] + splits.sizes()["test"] == 9  # test carved
    assert any("ignore label" in choice for choice in card.choices)
    masks = splits.train.targets
    assert set(np.unique(masks.numpy())) == {0, 1, 2, 255}  # boundaries kept as 255, not read as a class
    assert sum(card.counts["train"].values()) < masks.numel()  # ignored pixels counted in no class
    assert load_splits(str(write_tree(tmp_path / "plain", voc_files(classes_yaml=False)))).card.num_classes == 21


def test_ignored_pixels_count_in_neither_the_loss_nor_the_dice():
    import torch

    from visiontune.losses import PIXEL_LOSSES
    from visiontune.metrics import dice_counts

    target = torch.tensor([[[0, 1], [255, 1]]])
    logits = torch.randn(1, 2, 2, 2)
    changed = logits.clone()
    changed[0, :, 1, 0] = torch.tensor([5.0, -5.0])  # only the ignored pixel's logits differ
    for loss in PIXEL_LOSSES.values():
        assert torch.allclose(loss(logits, target), loss(changed, target))
    numerator, denominator = dice_counts(torch.tensor([[[1, 1], [1, 1]]]), target, 2)
    assert float(numerator) == 4.0 and float(denominator) == 5.0  # 3 valid pixels predicted, 2 true


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("JPEGImages/2007_000004.jpg"), "train.txt: line 5 names 2007_000004, but JPEGImages/"),
    (lambda f: f.pop("SegmentationClass/2007_000010.png"), "val.txt: line 2 names 2007_000010, but SegmentationClass/"),
    (lambda f: f.pop("ImageSets/Segmentation/train.txt"), "needs ImageSets/Segmentation/train.txt"),
])
def test_broken_voc_folders_are_one_line_errors(tmp_path, capsys, private_cache, change, message):
    files = voc_files()
    change(files)
    code = main(["data", "check", str(write_tree(tmp_path / "broken", files))])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not private_cache.exists()


def test_a_voc_folder_trains_and_predict_scores_a_voc_folder(tmp_path):
    root = write_tree(tmp_path / "VOC2012", voc_files())
    run = tmp_path / "run"
    assert main(["train", str(root), "--epochs", "1", "--out", str(run), "--quiet", "--precision", "fp32"]) == 0
    new = write_tree(tmp_path / "VOCnew", voc_files(count=12))
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "pred")]) == 0
    scores = json.loads((tmp_path / "pred" / SCORES_FILE).read_text())
    assert scores["images"] == 12 and 0.0 <= scores["dice"] <= 1.0
