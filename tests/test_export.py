"""visiontune export: pt2, TorchScript and ONNX graphs with their model card, used with and without visiontune."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from visiontune.cli import main
from visiontune.config import config_from_dict
from visiontune.export import export_model
from visiontune.model_formats import FORMATS
from visiontune.trained import TrainedModel, load_model
from visiontune.train import train_one


@pytest.fixture(scope="module")
def digit_run(digits_splits, tmp_path_factory):
    run = tmp_path_factory.mktemp("digits") / "run"
    config = config_from_dict({"task": "mnist", "blocks": 2, "width": 4, "epochs": 1, "precision": "fp32"},
                              card=digits_splits.card)
    train_one(config, digits_splits, run, progress=lambda line: None)
    return run


@pytest.fixture(scope="module")
def unet_run(glands_splits, tmp_path_factory):
    run = tmp_path_factory.mktemp("glands") / "run"
    config = config_from_dict({"task": "warwick", "model": "unet", "depth": 2, "width": 4, "epochs": 1,
                               "tta": "flip", "precision": "fp32"}, card=glands_splits.card)
    train_one(config, glands_splits, run, progress=lambda line: None)
    return run


def _pytorch_probabilities(run, images: torch.Tensor) -> torch.Tensor:
    predictor = load_model(run, device="cpu")
    with torch.inference_mode():
        return predictor.forward(images)


@pytest.mark.parametrize("which", ["digit_run", "unet_run"])
def test_onnx_runtime_equals_pytorch_on_random_and_real_inputs(which, request, tmp_path, digits_splits, glands_splits):
    import onnxruntime

    run = request.getfixturevalue(which)
    out = export_model(run, "onnx", tmp_path / "onnx")
    card = json.loads((out / "model.json").read_text())
    assert card["input"]["channels"] == (1 if which == "digit_run" else 2) and card["classes"]
    assert card["figures"]["members"][0]["test/" + ("acc" if which == "digit_run" else "dice")] is not None
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    real = (digits_splits if which == "digit_run" else glands_splits).test.images[:5].float() / 255
    for images in (torch.rand(3, *real.shape[1:]), real):  # another batch size than the export's 2: dynamic
        expected = _pytorch_probabilities(run, images)
        got = session.run(None, {"images": images.numpy()})[0]
        assert np.abs(got - expected.numpy()).max() <= 1e-4
    # The exported folder is a MODEL for predict: the same probabilities as the run it came from
    image = real[0].mul(255).round().byte().numpy().transpose(1, 2, 0)
    image = image[..., 0] if image.shape[2] == 1 else np.dstack([image, np.zeros(image.shape[:2], np.uint8)])
    (exported,), (original,) = load_model(out).predict([image]), load_model(run).predict([image])
    key = "probabilities" if which == "digit_run" else "mask"
    assert np.allclose(exported[key], original[key], atol=1e-4)


LOADERS = {"torchscript": 'torch.jit.load({path!r})',
           "pt2": 'torch.export.load({path!r}).module()'}


@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_an_export_predicts_with_plain_torch_and_its_model_card_alone(fmt, digit_run, tmp_path, digits_splits):
    """Where visiontune cannot be imported: the model card says how to load the file and how a
    file becomes the input; the prediction is visiontune's."""
    out = export_model(digit_run, fmt, tmp_path / fmt)
    card = json.loads((out / "model.json").read_text())
    assert card["format"] == fmt and card["loaded_by"].startswith(LOADERS[fmt].split("(")[0])
    image = digits_splits.test.images[7, 0].numpy()
    Image.fromarray(image).save(tmp_path / "digit.png")
    script = f"""
import json, sys
sys.modules["visiontune"] = None  # importing visiontune fails here
import numpy as np, torch
from PIL import Image
card = json.load(open({str(out / "model.json")!r}))
size = (card["input"]["width"], card["input"]["height"])
image = Image.open({str(tmp_path / "digit.png")!r}).convert("L").resize(size, Image.BILINEAR)
x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]  # pixel values: the graph normalises
model = {LOADERS[fmt].format(path=str(out / FORMATS[fmt].file))}
p = model(torch.cat([x, x, x]))[0]  # a batch of 3: not the export's example size
print(card["classes"][int(p.argmax())], float(p.max()))
"""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    label, probability = done.stdout.split()
    (expected,) = load_model(digit_run).predict([image])
    assert label == expected["class"] and abs(float(probability) - max(expected["probabilities"])) <= 1e-5
    (exported,) = load_model(out).predict([image])  # the exported folder is a MODEL for predict too
    assert np.allclose(exported["probabilities"], expected["probabilities"], atol=1e-5)


def test_export_errors_are_one_line_and_leave_nothing(digit_run, tmp_path, capsys, monkeypatch):
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="--format must be one of torchscript, onnx, pt2, not 'tflite'"):
        export_model(digit_run, "tflite", tmp_path / "x")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(digit_run), "--format", "onnx", "--out", str(tmp_path / "y")]) == 1
    error = capsys.readouterr().err
    assert "pip install 'visiontune[export]'" in error and error.count("\n") == 1
    monkeypatch.undo()
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    out = export_model(digit_run, "torchscript", tmp_path / "good")
    (out / "model.json").write_text("{broken")
    (tmp_path / "d.png").write_bytes(b"")
    assert main(["predict", str(out), str(tmp_path / "d.png"), "--out", str(tmp_path / "p")]) == 1
    error = capsys.readouterr().err
    assert "model.json: not a readable model card" in error and error.count("\n") == 1


def test_members_are_rebuilt_from_the_run_record(digit_run):
    model = TrainedModel.from_run(digit_run, device="cpu")
    assert model.card.kind == "classification" and model.config.blocks == 2 and model.members == 1
    assert model.precisions == ["fp32"] and model.figures["members"][0]["test/acc"] is not None
