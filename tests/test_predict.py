"""visiontune predict and load_model: files preprocessed exactly as training read them."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from visiontune import metrics
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.errors import DataError
from visiontune.predict import load_model


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_on_the_warwick_test_files_reproduces_the_runs_test_dice(warwick_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "warwick", "--data-dir", str(warwick_root), "--model", "fcn2", "--epochs", "10",
                 "--precision", "fp32", "--quiet", "--out", str(run)]) == 0
    recorded = json.loads((run / "result.json").read_text())["test/dice"]
    test_folder = warwick_root / "WARWICK" / "Test"
    images = sorted(test_folder.glob("image_*.png"))
    out = tmp_path / "masks"
    assert main(["predict", str(run), *map(str, images), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "60 images predicted" in printed
    with open(out / "areas.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    # the first ten masks shown on the terminal, as areas.csv has them
    assert (f"{rows[0]['file']}: {rows[0]['mask']} (pixels: background {rows[0]['pixels_background']}, "
            f"gland {rows[0]['pixels_gland']})\n") in printed and "... and 50 more\n" in printed
    assert [row["file"] for row in rows] == [str(path) for path in images]
    predicted = torch.stack([torch.from_numpy(np.array(Image.open(out / row["mask"]))) for row in rows])
    truth = torch.stack([torch.from_numpy((np.asarray(Image.open(test_folder / path.name.replace("image", "label")))
                                           == 255).astype(np.uint8)) for path in images])
    assert abs(float(metrics.dice_per_image(predicted, truth).mean()) - recorded) <= 1e-4
    assert int(rows[0]["pixels_background"]) + int(rows[0]["pixels_gland"]) == 128 * 128
    # The same files as a labelled images/ + masks/ folder: predicted, scored and overlaid
    labelled = tmp_path / "labelled"
    (labelled / "images").mkdir(parents=True)
    (labelled / "masks").mkdir()
    for path in images:
        (labelled / "images" / path.name).write_bytes(path.read_bytes())
        (labelled / "masks" / path.name).write_bytes((test_folder / path.name.replace("image", "label")).read_bytes())
    assert main(["predict", str(run), str(labelled), "--out", str(tmp_path / "scored"), "--overlay"]) == 0
    assert "scored against the folder's labels: dice" in capsys.readouterr().out
    scores = json.loads((tmp_path / "scored" / "scores.json").read_text())
    assert scores["images"] == 60 and abs(scores["dice"] - recorded) <= 1e-4
    assert Image.open(tmp_path / "scored" / "overlays" / "image_01.png").size == (128, 128)


def test_predict_on_mnist_test_pngs_reproduces_the_runs_test_accuracy(mnist_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "mnist", "--data-dir", str(mnist_root), "--train-limit", "3000", "--epochs", "1",
                 "--precision", "fp32", "--quiet", "--out", str(run)]) == 0
    recorded = json.loads((run / "result.json").read_text())["test/acc"]
    test = load_splits("mnist", data_dir=mnist_root, download=False).test
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(len(test)):
        (folder / f"{index:05d}_{int(test.targets[index])}.png").write_bytes(_png(test.images[index, 0].numpy()))
    (folder / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "predictions"
    assert main(["predict", str(run), str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 non-image files skipped" in printed
    with open(out / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 10_000 and list(rows[0])[:3] == ["file", "class", "p_0"]
    # the first ten predictions shown on the terminal: file, class and its probability
    first = rows[0]
    assert f"{first['file']}: {first['class']} (p {float(first['p_' + first['class']]):.4f})\n" in printed
    assert printed.count(f"{folder}/") == 10 and "... and 9990 more\n" in printed
    right = sum(row["class"] == row["file"].rsplit("_", 1)[1].split(".")[0] for row in rows)
    assert abs(right / len(rows) - recorded) <= 1e-4
    probabilities = np.array([[float(row[f"p_{d}"]) for d in range(10)] for row in rows[:50]])
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-4)


def test_the_python_api_predicts_arrays_and_unreadable_files_are_listed(digits_splits, tmp_path, capsys):
    from visiontune.config import config_from_dict
    from visiontune.train import train_one

    run = tmp_path / "run"
    config = config_from_dict({"task": "mnist", "blocks": 2, "width": 4, "epochs": 1, "precision": "fp32"},
                              card=digits_splits.card)
    train_one(config, digits_splits, run, progress=lambda line: None)
    predictor = load_model(run)
    images = [digits_splits.test.images[i, 0].numpy() for i in range(5)]
    results = predictor.predict(images)
    assert len(results) == 5 and all(r["class"] in predictor.card.classes for r in results)
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "good.png").write_bytes(_png(images[0]))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("LAB", (28, 28)).save(folder / "lab.tif")  # opens, but its CIELab pixels are not read
    with pytest.raises(DataError, match=r"lab.tif: LAB pixels, which visiontune does not read \(") as raised:
        predictor.predict([folder / "lab.tif"])
    assert "\n" not in str(raised.value)
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "2 files could not be read" in captured.err
    with open(tmp_path / "out" / "errors.csv", newline="") as stream:
        errors = {row["file"].rsplit("/", 1)[1]: row["error"] for row in csv.DictReader(stream)}
    assert set(errors) == {"broken.png", "lab.tif"} and "LAB pixels, which visiontune does not read" in errors["lab.tif"]
    (folder / "good.png").unlink()
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "out2")]) == 1  # nothing predicted
    # A labelled folder in a training layout (class folders): predicted and scored against the labels
    labelled = tmp_path / "labelled"
    for index in range(40):
        label = int(digits_splits.test.targets[index])
        (labelled / str(label)).mkdir(parents=True, exist_ok=True)
        (labelled / str(label) / f"{index}.png").write_bytes(_png(digits_splits.test.images[index, 0].numpy()))
    assert main(["predict", str(run), str(labelled), "--out", str(tmp_path / "scored")]) == 0
    scores = json.loads((tmp_path / "scored" / "scores.json").read_text())
    with open(tmp_path / "scored" / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    right = sum(row["class"] == row["file"].split("/")[-2] for row in rows)
    assert scores["images"] == 40 and scores["acc"] == pytest.approx(right / 40)
    assert {"balanced_acc", "macro_f1"} <= set(scores)


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), "holds neither search.json"),
    (lambda path: (path.mkdir(), (path / "best.pt").write_bytes(b"x"), (path / "data.json").write_text("{")),
     "cannot read the run's data record"),
])
def test_a_bad_model_folder_is_a_one_line_error(tmp_path, capsys, make, message):
    model = tmp_path / "model"
    make(model)
    (tmp_path / "x.png").write_bytes(_png(np.zeros((28, 28), np.uint8)))
    assert main(["predict", str(model), str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and not (tmp_path / "out").exists()


def test_predict_files_in_parallel_chunks_gives_the_one_at_a_time_masks(tmp_path, capsys):
    import zipfile

    from helpers import png_bytes, write_shapes
    from visiontune.predict import SMALL_CHUNK, predict_files

    data = write_shapes(tmp_path / "shapes", count=24)
    run = tmp_path / "run"
    assert main(["train", str(data), "--model", "fcn2", "--epochs", "2", "--precision", "fp32", "--quiet",
                 "--out", str(run)]) == 0
    predictor = load_model(run, device="cpu")
    rng = np.random.default_rng(1)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index in range(2 * SMALL_CHUNK + 5):  # three chunks, images of several sizes
        size = (24, 40) if index % 3 else (31, 17)
        (inputs / f"{index:03d}.png").write_bytes(png_bytes(rng.integers(0, 256, (*size, 3), dtype=np.uint8)))
    (inputs / "010_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        for index in range(3):
            stream.writestr(f"z/{index}.png", png_bytes(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)))
    threads = torch.get_num_threads()
    counts = predict_files(predictor, [str(inputs), str(archive)], tmp_path / "out")
    assert torch.get_num_threads() == threads  # predict's one thread per worker is undone
    assert counts["predicted"] == 2 * SMALL_CHUNK + 8 and counts["errors"] == 1
    assert "010_broken.png" in (tmp_path / "out" / "errors.csv").read_text()
    with open(tmp_path / "out" / "areas.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["file"] for row in rows[:3]] == [str(inputs / f"{i:03d}.png") for i in range(3)]
    assert rows[-1]["file"] == f"{archive}:z/2.png"
    for row in rows:
        source = (zipfile.ZipFile(archive).read(row["file"].split(":", 1)[1]) if row["file"].startswith(str(archive))
                  else row["file"])
        expected = predictor.predict([source])[0]["mask"]
        written = np.array(Image.open(tmp_path / "out" / row["mask"]))
        assert written.shape == expected.shape and np.array_equal(written, expected), row["file"]
        assert sum(int(row[f"pixels_{c}"]) for c in predictor.card.classes) == written.size
