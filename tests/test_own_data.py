"""Your own images, part 2: train, search and analyse generated data sets of every layout."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from helpers import write_colour_classes, write_shapes, write_tree
from visiontune.analysis import analyze_run
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.search import SearchOptions, run_search


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def shapes_search(ray_address, tmp_path_factory):
    """One finished search on a three-class, non-square (24x40) segmentation folder, with its report."""
    root = tmp_path_factory.mktemp("own")
    data = write_shapes(root / "shapes")
    lines: list[str] = []
    # fp32: the ONNX test compares the exported graph (always fp32) with the members in PyTorch, and
    # "auto" may choose bf16 on a CPU with bf16 units when its timing probe finds it faster
    # (seen in CI: 1.8e-4 apart); a bf16 member's graph differs in the last digits by design.
    summary = run_search(SearchOptions(task=str(data), space="warwick-unet", trials=3, max_epochs=2, top_k=2,
                                       storage=str(root / "runs"), name="shapes", fixed={"precision": "fp32"}),
                         progress=lines.append)
    analyze_run(root / "runs" / "shapes", top=2, progress=lines.append)  # the report, as `visiontune search` writes it
    return summary, root / "runs" / "shapes", lines


def test_a_three_class_search_ranks_by_mean_foreground_dice_and_reports_each_class(shapes_search):
    summary, run, _ = shapes_search
    table = pd.read_csv(run / "trials.csv")
    values = list(table["best_val/dice"].dropna())
    assert len(table) == 3 and values == sorted(values, reverse=True)
    tested = json.loads((run / "test_results.json").read_text())["trials"]
    assert len(tested) == 2
    for result in tested.values():
        # val/dice and test/dice: per image and class, averaged over images, then over the classes
        assert result["test/dice"] == pytest.approx((result["test/dice/square"] + result["test/dice/disc"]) / 2)
    assert {"test/dice/square", "test/dice/disc"} <= set(table.columns)
    card = json.loads((run / "search.json").read_text())["data"]["card"]
    assert card["classes"] == ["background", "square", "disc"] and card["image_size"] == [24, 40]
    report = (run / "analysis" / "report.html").read_text()
    # per-class figures in the ranked table; the overlays captioned with the class names
    assert "test/dice/square" in report and "square, disc; background black" in report and 'alt="best_worst"' in report


def test_the_best_trial_of_a_folder_search_predicts_masks_at_each_images_size(shapes_search, tmp_path):
    import numpy as np

    import visiontune

    _, run, _ = shapes_search
    best = pd.read_csv(run / "trials.csv").iloc[0]
    predictor = visiontune.load_model(run)
    assert predictor.card.classes == ["background", "square", "disc"]
    assert predictor.config.lr == pytest.approx(best["lr"])
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)  # not the training 24x40
    (result,) = predictor.predict([image])
    assert result["mask"].shape == (30, 50) and sum(result["areas"].values()) == 30 * 50


def test_a_two_model_ensemble_exports_as_one_onnx_graph_equal_to_pytorch(shapes_search, tmp_path):
    import numpy as np
    import onnxruntime
    import torch

    from visiontune.export import export_model
    from visiontune.predict import load_model as load

    _, run, _ = shapes_search
    out = export_model(run, "onnx", tmp_path / "ensemble", ensemble=2)
    card = json.loads((out / "model.json").read_text())
    assert card["members"] == 2 and len(card["configs"]) == 2 and len(card["figures"]["members"]) == 2
    ensemble, single = load(run, device="cpu", ensemble=2), load(run, device="cpu")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, 24, 40)
    with torch.inference_mode():
        expected, first = ensemble.forward(images), single.forward(images)
    assert np.abs(session.run(None, {"images": images.numpy()})[0] - expected.numpy()).max() <= 1e-4
    assert not torch.allclose(expected, first)  # the second member counts


def test_a_colour_classification_search_ranks_trials_and_names_the_classes(ray_address, tmp_path):
    """Class folders of 12x12 colour images: a search through the CLI with --metric, the top trial's
    per-class recall on test, and a report whose figures are captioned by class."""
    data = write_colour_classes(tmp_path / "insects")
    assert main(["search", str(data), "--space", "mnist-cnn", "--trials", "2", "--max-epochs", "2",
                 "--metric", "val/balanced_acc", "--top-k", "1", "--storage", str(tmp_path / "runs"),
                 "--name", "insects"]) == 0
    run = tmp_path / "runs" / "insects"
    table = pd.read_csv(run / "trials.csv")
    assert "best_val/balanced_acc" in table.columns and len(table) == 2
    values = list(table["best_val/balanced_acc"].dropna())
    assert values == sorted(values, reverse=True)
    (result,) = json.loads((run / "test_results.json").read_text())["trials"].values()
    assert {"test/acc", "test/balanced_acc", "test/macro_f1", "test/recall/ant", "test/recall/bee",
            "test/recall/cat"} <= set(result)
    report = (run / "analysis" / "report.html").read_text()
    assert 'alt="confusion_matrix"' in report and "rows are the true classes" in report


def test_train_works_on_each_layout_from_the_command_line(tmp_path, capsys):
    """Class folders (carved split), train/test folders, images + masks, a .zip and a dataset.yaml."""
    colour = write_colour_classes(tmp_path / "colour")
    split = write_tree(tmp_path / "split", {f"{part}/{name}/{i}.png": (colour / name / f"{i}.png").read_bytes()
                                            for part, count in (("train", 9), ("test", 3))
                                            for name in ("ant", "bee", "cat") for i in range(count)})
    shapes = write_shapes(tmp_path / "shapes", count=12)
    archive = tmp_path / "colour.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(colour.rglob("*.png")):
            bundle.write(path, path.relative_to(tmp_path))
    runs = [(colour, ["--blocks", "2", "--width", "4"]), (split, ["--blocks", "2", "--width", "4"]),
            (archive, ["--model", "fnn", "--hidden", "16"]),
            (shapes / "dataset.yaml", ["--model", "unet", "--depth", "2", "--width", "4"])]
    for index, (path, extra) in enumerate(runs):
        out = tmp_path / f"run{index}"
        assert main(["train", str(path), "--epochs", "1", "--quiet", "--precision", "fp32", "--out", str(out),
                     *extra]) == 0, capsys.readouterr().err
        result = json.loads((out / "result.json").read_text())
        card = result["data"]["card"]
        assert card["channels"] == 3 and result["status"] == "finished"
        if card["kind"] == "segmentation":
            assert card["image_size"] == [24, 40] and "test/dice/disc" in result
        else:
            assert card["classes"] == ["ant", "bee", "cat"] and "test/acc" in result


def test_the_cnn_and_the_space_respect_what_a_small_image_allows(tmp_path, capsys):
    """2x6 images leave a pixel for at most 2 CNN blocks: the fitted space offers 1-2, a batch size
    no larger than the training set, and training with 3 blocks is a one-line error."""
    root = write_colour_classes(tmp_path / "tiny", per_class=8, size=(2, 6))
    assert main(["search", str(root), "--show-space"]) == 0
    shown = capsys.readouterr().out
    assert "blocks: int 1 to 2" in shown and "batch_size: one of 17" in shown  # 24 images: 17 to train on
    assert "augment: one of none, rotate,shift" in shown
    assert main(["train", str(root), "--blocks", "3", "--epochs", "1", "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "blocks=3 does not fit 2x6 images" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_metric_chooses_what_the_search_maximises(tmp_path, capsys):
    from visiontune.search.options import check_options

    card = load_splits(str(write_colour_classes(tmp_path / "colour"))).card
    plan = check_options(SearchOptions(task="colour", metric="val/balanced_acc"), card)
    assert plan.metric == "val/balanced_acc"
    with pytest.raises(Exception, match="--metric must be one of val/acc, val/balanced_acc, val/macro_f1"):
        check_options(SearchOptions(task="colour", metric="val/dice"), card)


@pytest.mark.parametrize("files, message", [
    ({"pets/cat/1.png": "image", "pets/dog/notes.txt": b"x"}, "a class folder with no images"),
    ({"pets/dataset.yaml": b"colour: red\n", "pets/a/1.png": "image", "pets/b/1.png": "image"}, "unknown key"),
])
def test_bad_data_gives_the_same_one_line_error_from_train_and_search(tmp_path, capsys, files, message):
    from helpers import png_bytes
    import numpy as np

    written = {name: png_bytes(np.zeros((8, 8), np.uint8)) if content == "image" else content
               for name, content in files.items()}
    root = write_tree(tmp_path, written) / "pets"
    for command in (["train", str(root), "--out", str(tmp_path / "out")],
                    ["search", str(root), "--storage", str(tmp_path / "runs"), "--name", "s"]):
        assert main(command) == 1
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_warwick_written_as_folders_trains_to_the_built_in_test_dice(warwick_root, tmp_path):
    """WARWICK as train/val/test folders of images/ + 0/255 masks, keeping the two stain channels
    (dataset.yaml ``channels: [0, 1]``), is the same data in the same order: the same test Dice."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from own_data_equivalence import train, write_warwick_folders

    write_warwick_folders(tmp_path / "folders", str(warwick_root))
    built_in, folder = load_splits("warwick", data_dir=warwick_root), load_splits(str(tmp_path / "folders"))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(built_in, part).images, getattr(folder, part).images)
        assert torch.equal(getattr(built_in, part).targets, getattr(folder, part).targets)
    settings = {"model": "fcn2", "optimizer": "adam", "epochs": 6, "seed": 0, "precision": "fp32"}
    expected = train("warwick", settings, tmp_path / "built-in", str(warwick_root))
    got = train(str(tmp_path / "folders"), settings, tmp_path / "own", None)
    assert abs(expected["test/dice"] - got["test/dice"]) <= 0.005
    assert got["data"]["card"]["channels"] == 2


def test_two_class_dice_on_the_warwick_test_split_equals_the_reports_binary_formula(warwick_root):
    """The K-class Dice of a trained FCN2's WARWICK test predictions equals, exactly, the binary
    per-image Dice 2|A∩B| / (|A|+|B|) (1 where both are empty) and the pooled Dice the report used."""
    import torch

    from visiontune import metrics
    from visiontune.config import config_from_dict
    from visiontune.engine import Trainer
    from visiontune.trained import TrainedModel

    splits = load_splits("warwick", data_dir=warwick_root)
    config = config_from_dict({"task": "warwick", "model": "fcn2", "epochs": 10, "precision": "fp32"})
    trainer = Trainer(config, splits, device="cpu")
    for _ in range(10):  # FCN2's masks are empty for 7 epochs, then partly right (validation Dice 0.54)
        trainer.fit_epoch()
    model = TrainedModel.from_weights(splits.card, [(config, trainer.model.state_dict(), False)], "cpu")
    logits, truth = model.probabilities(splits.test.images), splits.test.targets.long()
    predicted = logits.argmax(1)
    a, b = predicted.flatten(1).float(), truth.flatten(1).float()
    union = a.sum(1) + b.sum(1)
    binary = torch.where(union > 0, 2 * (a * b).sum(1) / union.clamp_min(1), torch.ones_like(union))
    accumulator = metrics.DiceAccumulator(2, splits.card.classes)
    for start in range(0, len(truth), 7):  # in batches, as evaluation runs
        accumulator.update(logits[start:start + 7], truth[start:start + 7])
    result = accumulator.aggregate()
    assert 0.0 < result["dice"] < 1.0 and torch.equal(accumulator.per_image(), binary)
    assert result["dice"] == float(binary.mean())
    assert result["dice_pooled"] == float(2 * (a * b).sum() / union.sum())
    assert model.evaluate(splits.test).metrics["test/dice"] == result["dice"]
