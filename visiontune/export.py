"""``visiontune export RUN --format torchscript|onnx --out DIR``: the network and its model card.

The exported graph is ``predict.Ensemble``: the mean class probabilities of one model or of a
search's top K, over the test-time augmentation views each was chosen with. Its input is float
images ``(N, C, H, W)`` on [0, 1] at the training size (the batch axis dynamic), its output the
class probabilities. ``model.json`` (the model card) says everything needed to use it without
visiontune: the kind, class names, the input and how a file becomes it (the preprocessing of
the data-set card), the configurations, the validation and test figures and how they were
chosen, the training data's fingerprint, and the versions. Nothing is re-derived at prediction.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from visiontune import record, runs
from visiontune.config import config_from_dict
from visiontune.data.card import DatasetCard
from visiontune.errors import ConfigError, VisiontuneError
from visiontune.predict import CV_ENSEMBLE, MODEL_CARD, Ensemble, Predictor, load_members

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
CARD_VERSION = 1
ONNX_OPSET = 17


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--format onnx needs the export extra: pip install 'visiontune[export]' "
                          f"({' and '.join(missing)} not installed)")


def _figures(folder: Path, members: int, ensemble: int | str = 1) -> dict[str, Any]:
    """Validation and test figures of the exported members, as the run recorded them."""
    if ensemble == CV_ENSEMBLE:
        summary = json.loads((folder / record.CV_DIR / record.CV_FILE).read_text())
        winner = summary["ranking"][0]
        return {"selection": summary["selection"], "folds": summary["folds"], "images": summary["images"],
                "members": winner["members"],
                "out_of_fold": {k: v for k, v in winner.items() if k.startswith("oof/")},
                "fold_mean": winner["fold_mean"], "fold_std": winner["fold_std"],
                "validation_one_split": winner["val_one_split"], "test": winner.get("ensemble_test", {})}
    if (folder / record.SEARCH_FILE).is_file():
        search = json.loads((folder / record.SEARCH_FILE).read_text())
        tested = json.loads((folder / record.TEST_FILE).read_text())["trials"] if (folder / record.TEST_FILE).is_file() else {}
        ranked = sorted(tested.values(), key=lambda entry: entry["rank"])[:members]
        return {"selection": f"trials ranked by their best {search['metric']} (validation); the epoch of each chosen "
                             "on validation; test evaluated once, after the search, for the top-k",
                "members": [{key: value for key, value in entry.items() if key != "config"} for entry in ranked]}
    result = json.loads((folder / record.RESULT_FILE).read_text())
    return {"selection": "the epoch chosen on validation; test evaluated once, after training",
            "members": [{key: value for key, value in result.items() if key.startswith(("test/", "best_"))}]}


def model_card(folder: Path, card: DatasetCard, configs: list, fmt: str, ensemble: int | str = 1) -> dict[str, Any]:
    """The contents of ``model.json``."""
    height, width = card.image_size
    return {
        "visiontune_model": CARD_VERSION,
        "format": fmt,
        "file": FORMATS[fmt],
        "kind": card.kind,
        "classes": card.classes,
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": card.channels,
                  "height": height, "width": width},
        "output": {"name": "probabilities", "shape": "(N, K)" if card.kind == "classification" else "(N, K, H, W)",
                   "meaning": "class probabilities, averaged over the test-time augmentation views and members"},
        "preprocessing": {"decode": "grey (8-bit)" if card.channels == 1 else "RGB (alpha dropped, palette as colour)",
                          "keep_channels": card.keep_channels, "resize": "bilinear, to height x width",
                          "scale": "pixel / 255", "normalise": None,
                          "masks": "arg-max over classes, resized back to the image's size by nearest neighbour"},
        "members": len(configs),
        "configs": [config.to_dict(compact=True) for config in configs],
        "figures": _figures(folder, len(configs), ensemble),
        "data": card.to_dict(),
        "source": str(folder.resolve()),
        "versions": runs.versions(),
    }


def export_model(run: str | os.PathLike, fmt: str, out: str | os.PathLike, ensemble: int | str = 1) -> Path:
    """Write the network of ``run`` (a train run, or a search's ``ensemble`` best trials) in ``fmt``
    and its model card into the new folder ``out``; nothing is left behind on a failure."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "onnx":
        _require_onnx()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: already exists and is not empty; choose another --out")
    folder = Path(run)
    card, configs, models = load_members(folder, ensemble)
    network = Ensemble(models, [config.tta for config in configs]).eval()
    example = torch.rand(2, card.channels, *card.image_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns that the segmenters' padding depends on the input size: the graph is
            # for the training size, which the model card fixes.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # ONNX goes through torch's TorchScript-based exporter, which it calls legacy: the newer
            # one needs onnxscript, which the export extra does not install.
            warnings.simplefilter("ignore", DeprecationWarning)
            # torch now calls TorchScript itself deprecated (in favour of torch.export); the format
            # is still what plain torch loads with torch.jit.load, which users ask for.
            warnings.simplefilter("ignore", FutureWarning)
            if fmt == "torchscript":
                torch.jit.trace(network, example).save(str(staging / FORMATS[fmt]))
            else:
                torch.onnx.export(network, (example,), str(staging / FORMATS[fmt]), dynamo=False,
                                  input_names=["images"], output_names=["probabilities"], opset_version=ONNX_OPSET,
                                  dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}})
        (staging / MODEL_CARD).write_text(json.dumps(model_card(folder, card, configs, fmt, ensemble), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def load_exported(folder: Path, device: torch.device) -> Predictor:
    """A :class:`Predictor` over an exported model (TorchScript or ONNX) and its model card."""
    try:
        card_data = json.loads((folder / MODEL_CARD).read_text())
        fmt, card = card_data["format"], DatasetCard.from_dict(card_data["data"])
        config = config_from_dict(dict(card_data["configs"][0]), f"{folder / MODEL_CARD}: configs[0]", card)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise VisiontuneError(f"{folder / MODEL_CARD}: not a readable model card ({type(error).__name__}: "
                              f"{error})") from None
    path = folder / FORMATS.get(fmt, "?")
    if fmt not in FORMATS or not path.is_file():
        raise VisiontuneError(f"{folder}: the model card names format {fmt!r}, but {path.name} is not there")
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location=device).eval()
        forward = module
    else:
        _require_onnx()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def forward(images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"images": images.cpu().numpy()})[0])
    return Predictor(card, config, device, str(folder), forward, members=int(card_data.get("members", 1)))


__all__ = ["FORMATS", "export_model", "load_exported", "model_card"]
