"""The file formats a trained model's graph is exported in, each with how it is written and read.

``export`` writes a graph with :meth:`ExportFormat.save`; the model layer (``trained``) reads an
exported folder back with :meth:`ExportFormat.load`, so that ``predict`` and ``load_model`` run
an exported model like any other (Ultralytics' AutoBackend: any format behind one predict). The
graph is ``inference.Ensemble``: float images ``(N, C, H, W)`` on [0, 1] at the training size,
the batch axis dynamic, to class probabilities.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from visiontune.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a graph is written or read: the command line lists the formats
    import torch
    from torch import nn

ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its file, what loads it without visiontune, what it needs installed."""

    name: str
    file: str
    loaded_by: str  # for the model card: how plain Python loads the file
    needs: tuple[str, ...] = ()  # modules beyond torch, from the export extra

    def check_installed(self) -> None:
        """A one-line error naming the export extra where a module this format needs is missing."""
        missing = [name for name in self.needs if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"--format {self.name} needs the export extra: pip install 'visiontune[export]' "
                              f"({' and '.join(missing)} not installed)")

    def save(self, network: nn.Module, example: torch.Tensor, path: Path) -> None:
        """Write ``network`` (traced or exported on ``example``) to ``path``."""
        import torch

        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns that the segmenters' padding depends on the input size: the graph is
            # for the training size, which the model card fixes.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # ONNX goes through torch's TorchScript-based exporter, which it calls legacy: the newer
            # one needs onnxscript, which the export extra does not install.
            warnings.simplefilter("ignore", DeprecationWarning)
            # torch calls TorchScript itself deprecated (in favour of torch.export); the format is
            # still what plain torch loads with torch.jit.load, which users ask for.
            warnings.simplefilter("ignore", FutureWarning)
            SAVERS[self.name](network, example, path)

    def load(self, path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """The graph in ``path`` as a function of float images to class probabilities."""
        self.check_installed()
        return LOADERS[self.name](path, device)


def _save_torchscript(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    torch.jit.trace(network, example).save(str(path))


def _save_onnx(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    torch.onnx.export(network, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], opset_version=ONNX_OPSET,
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def _save_pt2(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(network, (example,), dynamic_shapes={INPUT_NAME: {0: batch}})
    torch.export.save(program, str(path))


def _load_torchscript(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location=device).eval()


def _load_onnx(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {INPUT_NAME: images.cpu().numpy()})[0])
    return forward


def _load_pt2(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch

    return torch.export.load(str(path)).module().to(device)


SAVERS = {"torchscript": _save_torchscript, "onnx": _save_onnx, "pt2": _save_pt2}
LOADERS = {"torchscript": _load_torchscript, "onnx": _load_onnx, "pt2": _load_pt2}
FORMATS: dict[str, ExportFormat] = {
    "torchscript": ExportFormat("torchscript", "model.pt", "torch.jit.load(path) (torch calls TorchScript deprecated; "
                                                          "prefer pt2)"),
    "onnx": ExportFormat("onnx", "model.onnx", f"onnxruntime.InferenceSession(path) (opset {ONNX_OPSET})",
                         needs=("onnx", "onnxruntime")),
    "pt2": ExportFormat("pt2", "model.pt2", "torch.export.load(path).module() (torch.export's ExportedProgram)"),
}


def get_format(name: str) -> ExportFormat:
    """The format called ``name``; a one-line error listing the formats otherwise."""
    if name not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {name!r}")
    return FORMATS[name]


__all__ = ["FORMATS", "ExportFormat", "get_format"]
