"""``visiontune export RUN --format torchscript|onnx|pt2 --out DIR``: the network and its model card.

The exported graph is the model layer's (``trained.TrainedModel.export_graph``, an
``inference.Ensemble``): the mean class probabilities of one model, of a search's top K or of
the cross-validation's fold ensemble, over the test-time augmentation views each was chosen
with, batchnorm folded into the convolutions, in fp32. Its input is float images
``(N, C, H, W)`` on [0, 1] at the training size (the batch axis dynamic), its output the class
probabilities. ``model.json`` (the model card) says everything needed to use it without
visiontune: the kind, class names, the input and how a file becomes it (the preprocessing of
the data-set card), how plain torch or ONNX Runtime loads the file, the configurations and the
precision each trained in, the validation and test figures and how they were chosen, the
training data's fingerprint, and the versions. Nothing is re-derived at prediction.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from visiontune import record, runs
from visiontune.data import normalisation
from visiontune.model_formats import ExportFormat, get_format
from visiontune.trained import TrainedModel



PIXEL_RANGES = {"uint8": "0-255", "uint16": "0-65535", "float32": "as stored"}


def _decoding(card) -> str:
    """How a file is decoded into the graph's channels, in words."""
    count = card.decode_channels
    if card.channel_files:
        return f"one grey file per channel, CASE_0000 to CASE_{count - 1:04d}, stacked in that order"
    if card.pixel_type == "uint8" and count in (1, 3):
        return "grey (8-bit)" if count == 1 else "RGB (alpha dropped, palette as colour)"
    return (f"{count} channel{'s' if count > 1 else ''} as stored ({card.pixel_type}; a TIFF's pages or samples; "
            "an 8-bit image's alpha dropped)")


def model_card(model: TrainedModel, fmt: ExportFormat) -> dict[str, Any]:
    """The contents of ``model.json``."""
    card = model.card
    height, width = card.image_size
    bf16 = [index for index, precision in enumerate(model.precisions) if precision == "bf16"]
    return {
        "visiontune_model": record.MODEL_CARD_VERSION,
        "format": fmt.name,
        "file": fmt.file,
        "loaded_by": fmt.loaded_by,
        "torch": torch.__version__,  # the graph was written by this torch; pt2 loads in it or newer
        "kind": card.kind,
        "classes": card.classes,
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": card.channels,
                  "height": height, "width": width,
                  "values": f"pixel values as decoded ({card.pixel_type}: {PIXEL_RANGES[card.pixel_type]}), "
                            "normalised inside the graph"},
        "output": {"name": "probabilities", "shape": model.kind.output_shape,
                   "meaning": "class probabilities, averaged over the test-time augmentation views and members"},
        "preprocessing": {"decode": _decoding(card), "keep_channels": card.keep_channels,
                          "resize": "bilinear, to height x width (Pillow; 16-bit and float planes as float)",
                          "dtype": card.pixel_type,
                          "normalise": {**card.normalisation, "in_graph": True,
                                        "words": normalisation.describe(card.normalisation)},
                          "masks": "arg-max over classes, resized back to the image's size by nearest neighbour"},
        "members": model.members,
        "configs": [config.to_dict(compact=True) for config in model.configs],
        "precisions": model.precisions,
        "numerics": ("the graph runs in fp32; " + (f"members {bf16} trained and were evaluated in bf16, so the "
                                                    "graph's figures may differ from the recorded ones in the last "
                                                    "digits" if bf16 else "every member trained in fp32")),
        "figures": model.figures,
        "data": card.to_dict(),
        "source": str(Path(model.source).resolve()),
        "versions": runs.versions(),
    }


def export_model(run: str | os.PathLike, fmt: str, out: str | os.PathLike, ensemble: int | str = 1) -> Path:
    """Write the network of ``run`` (a train run, a search's ``ensemble`` best trials, or ``"cv"``:
    its cross-validation's fold ensemble) in ``fmt`` and its model card into the new folder
    ``out``; nothing is left behind on a failure."""
    export_format = get_format(fmt)
    export_format.check_installed()
    out = runs.prepare_out_dir(Path(out))
    model = TrainedModel.from_run(run, device="cpu", ensemble=ensemble)
    example = torch.rand(2, model.card.channels, *model.card.image_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        export_format.save(model.export_graph(), example, staging / export_format.file)
        runs.write_json(staging / record.MODEL_CARD, model_card(model, export_format))
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


__all__ = ["export_model", "model_card"]
