"""The model layer and the layers around it: what a run records is what its model gives when used
(predict, an ensemble, the fold ensemble, the exported graphs), and the package's layering holds
(no import cycle, no branch on a task kind outside ``kinds`` and the data loaders)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visiontune
from visiontune import metrics, record
from visiontune.cli import main
from visiontune.runfolder import load_search
from visiontune.search import SearchOptions, run_search
from visiontune.trained import TrainedModel, load_model

PACKAGE = Path(visiontune.__file__).parent


# ------------------------------------------------------------------------------------ layering
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports, at the top or inside functions (those under ``if
    TYPE_CHECKING:`` aside: they never run)."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
               and getattr(branch.test, "id", getattr(branch.test, "attr", None)) == "TYPE_CHECKING"
               for node in ast.walk(branch)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]) if node.level \
                else node.module or ""
            base = base.strip(".")  # an imported name is its module where it is one, else its module's
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("visiontune"):
                found.add(target)
    return found


def test_no_module_imports_a_module_that_imports_it_back():
    """No import cycle among the package's modules (a package's __init__ and its own submodules
    aside), counting imports inside functions: each layer imports only those below it."""
    modules = _modules()
    edges = {name: _imports(name, path, modules) for name, path in modules.items()}

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in edges[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    cycles = sorted({tuple(sorted((name, other))) for name in modules for other in reaches(name)
                     if other != name and name in reaches(other)
                     and not (other.startswith(name + ".") or name.startswith(other + "."))})
    assert not cycles, cycles


def test_nothing_branches_on_a_task_kind_outside_kinds_and_the_data_loaders():
    """What differs by kind is the kind's (kinds.Kind): no comparison with a kind's name elsewhere."""
    names = {"classification", "segmentation"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "kinds.py" or relative.startswith("data/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in names
                                                     for c in [node.left, *node.comparators]):
                offenders.append(f"{relative}:{node.lineno}")
            if isinstance(node, ast.Dict) and {getattr(k, "value", None) for k in node.keys} >= names:
                offenders.append(f"{relative}:{node.lineno} (a table keyed by kind)")
    assert not offenders, offenders


def test_the_packages_load_model_takes_every_argument_of_the_model_layers():
    from visiontune import trained

    assert inspect.signature(visiontune.load_model).parameters.keys() == \
        inspect.signature(trained.load_model).parameters.keys()


def test_a_model_trained_in_bf16_is_evaluated_and_predicted_in_bf16(digits_splits, tmp_path):
    """The precision travels with the model: a bf16 run's recorded test accuracy is what its
    model gives, not what an fp32 run of the same weights would."""
    from visiontune.config import config_from_dict
    from visiontune.train import train_one

    config = config_from_dict({"task": "mnist", "blocks": 2, "width": 8, "epochs": 1, "precision": "bf16"},
                              card=digits_splits.card)
    result = train_one(config, digits_splits, tmp_path / "run", progress=lambda line: None)
    model = load_model(tmp_path / "run", device="cpu")
    assert model.precisions == ["bf16"] and model.network.bf16 == [True]
    tested = model.evaluate(digits_splits.test).metrics
    assert tested["test/acc"] == pytest.approx(result["test/acc"], abs=1e-9)
    predicted = model.probabilities(digits_splits.test.images).argmax(1)
    assert float((predicted == digits_splits.test.targets).float().mean()) == pytest.approx(result["test/acc"])


# ------------------------------------------------------------- recorded figures, reproduced
@pytest.fixture(scope="module")
def warwick_search(ray_address, warwick_root, tmp_path_factory) -> Path:
    """A short search on the real WARWICK data (4 FCN2 trials of 3 epochs, the top 3 tested and
    their ensemble), then its top 2 cross-validated on 2 folds."""
    from visiontune.selection.crossval import cross_validate

    storage = tmp_path_factory.mktemp("warwick-runs")
    space = storage / "fcn2.yaml"
    space.write_text("params:\n  model: fcn2\n  width: 8\n  batch_size: 16\n  lr: {loguniform: [0.001, 0.01]}\n"
                     "  tta: [none, flip]\n")
    run_search(SearchOptions(task="warwick", data_dir=str(warwick_root), space=str(space), trials=4, max_epochs=3,
                             scheduler="none", searcher="random", top_k=3, fixed={"precision": "fp32"},
                             storage=str(storage), name="glands", report=False), progress=lambda line: None)
    cross_validate(load_search(storage / "glands"), folds=2, top=2, epochs=2, progress=lambda line: None)
    return storage / "glands"


@pytest.fixture(scope="module")
def warwick_test_folder(warwick_root, tmp_path_factory) -> Path:
    """WARWICK's 60 test images and masks as a labelled images/ + masks/ folder: predict scores it."""
    test = warwick_root / "WARWICK" / "Test"
    folder = tmp_path_factory.mktemp("warwick-test")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for image in sorted(test.glob("image_*.png")):
        (folder / "images" / image.name).write_bytes(image.read_bytes())
        (folder / "masks" / image.name).write_bytes((test / image.name.replace("image", "label")).read_bytes())
    return folder


def _predicted_dice(model: str | Path, folder: Path, out: Path, *ensemble: str) -> float:
    assert main(["predict", str(model), str(folder), "--out", str(out), *ensemble]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["images"] == 60
    return scores["dice"]


@pytest.mark.slow
def test_predict_reproduces_the_searchs_recorded_test_figures(warwick_search, warwick_test_folder, tmp_path):
    """The best trial, the top-3 ensemble and the cross-validation's fold ensemble, each applied
    to WARWICK's test files by `visiontune predict`, score what the run recorded."""
    tested = json.loads((warwick_search / record.TEST_FILE).read_text())
    best = min(tested["trials"].values(), key=lambda entry: entry["rank"])
    assert _predicted_dice(warwick_search, warwick_test_folder, tmp_path / "best") == \
        pytest.approx(best["test/dice"], abs=1e-4)
    ensemble = tested["ensemble"]
    assert len(ensemble["members"]) == 3
    assert _predicted_dice(warwick_search, warwick_test_folder, tmp_path / "top3", "--ensemble", "3") == \
        pytest.approx(ensemble["test/dice"], abs=1e-4)
    cv = json.loads((warwick_search / record.CV_DIR / record.CV_FILE).read_text())
    assert _predicted_dice(warwick_search, warwick_test_folder, tmp_path / "cv", "--ensemble", "cv") == \
        pytest.approx(cv["ranking"][0]["ensemble_test"]["test/dice"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "pt2"])
def test_every_exported_graph_reproduces_the_recorded_test_figures(fmt, warwick_search, warwick_test_folder,
                                                                   tmp_path):
    tested = json.loads((warwick_search / record.TEST_FILE).read_text())
    cv = json.loads((warwick_search / record.CV_DIR / record.CV_FILE).read_text())
    for ensemble, recorded in (("1", min(tested["trials"].values(), key=lambda entry: entry["rank"])["test/dice"]),
                               ("3", tested["ensemble"]["test/dice"]),
                               ("cv", cv["ranking"][0]["ensemble_test"]["test/dice"])):
        out = tmp_path / f"{fmt}-{ensemble}"
        assert main(["export", str(warwick_search), "--format", fmt, "--ensemble", ensemble, "--out", str(out)]) == 0
        card = json.loads((out / record.MODEL_CARD).read_text())
        assert card["figures"]["test"]["test/dice"] == pytest.approx(recorded, abs=1e-9)
        assert _predicted_dice(out, warwick_test_folder, tmp_path / f"{fmt}-{ensemble}-scored") == \
            pytest.approx(recorded, abs=1e-4)


@pytest.mark.slow
def test_a_pt2_export_predicts_warwick_in_plain_torch_with_its_model_card_alone(warwick_search, warwick_root,
                                                                               tmp_path):
    """The fold ensemble as pt2, read where visiontune cannot be imported, preprocessing each
    test file as model.json says: its Dice is the one cv.json recorded."""
    out = tmp_path / "pt2"
    assert main(["export", str(warwick_search), "--format", "pt2", "--ensemble", "cv", "--out", str(out)]) == 0
    test = warwick_root / "WARWICK" / "Test"
    script = f"""
import json, sys
sys.modules["visiontune"] = None  # importing visiontune fails here
from pathlib import Path
import numpy as np, torch
from PIL import Image
card = json.load(open({str(out / record.MODEL_CARD)!r}))
model = torch.export.load({str(out)!r} + "/" + card["file"]).module()
keep = card["preprocessing"]["keep_channels"]
images = []
for path in sorted(Path({str(test)!r}).glob("image_*.png")):
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
    images.append(rgb[keep])  # pixel values: the graph normalises them (model.json's preprocessing)
with torch.no_grad():
    masks = model(torch.from_numpy(np.stack(images))).argmax(1).numpy().astype(np.uint8)
np.save({str(tmp_path / "masks.npy")!r}, masks)
"""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    masks = torch.from_numpy(np.load(tmp_path / "masks.npy"))
    truth = torch.stack([torch.from_numpy((np.asarray(Image.open(path)) == 255).astype(np.uint8))
                         for path in sorted(test.glob("label_*.png"))])
    cv = json.loads((warwick_search / record.CV_DIR / record.CV_FILE).read_text())
    assert float(metrics.dice_per_image(masks, truth).mean()) == \
        pytest.approx(cv["ranking"][0]["ensemble_test"]["test/dice"], abs=1e-4)


@pytest.mark.slow
def test_the_model_layer_evaluates_an_exported_folder_as_it_does_the_run(warwick_search, warwick_root, tmp_path):
    """TrainedModel.evaluate on the test split: the run's best trial and its ONNX export agree."""
    from visiontune.data import load_splits

    splits = load_splits("warwick", data_dir=warwick_root, download=False)
    assert main(["export", str(warwick_search), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    from_run = TrainedModel.from_run(warwick_search, "cpu").evaluate(splits.test).metrics
    exported = load_model(tmp_path / "onnx", "cpu").evaluate(splits.test).metrics
    assert exported["test/dice"] == pytest.approx(from_run["test/dice"], abs=1e-4)
    best = min(json.loads((warwick_search / record.TEST_FILE).read_text())["trials"].values(),
               key=lambda entry: entry["rank"])
    assert from_run["test/dice"] == pytest.approx(best["test/dice"], abs=1e-9)
