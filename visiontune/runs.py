"""Writing run folders: atomic JSON and checkpoint files, a per-epoch CSV log, provenance.

Every file is written to a temporary name and renamed into place, so a reader (or a crash)
never sees half a file. Checkpoints are plain state dicts that load with
``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from visiontune.errors import ConfigError

def _umask_mode() -> int:
    """The mode a plainly created file gets (mkstemp would make it private, 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(text)
        os.chmod(temporary, _umask_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def json_text(data: Any) -> str:
    """``data`` as the indented JSON every run-folder file uses (non-JSON values as strings)."""
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_text(path, json_text(data))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a state dict (tensors and plain values only)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        torch.save(state, temporary)
        os.chmod(temporary, _umask_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no arbitrary code runs)."""
    return torch.load(path, map_location=map_location, weights_only=True)


TRAINER_STATE = "trainer"  # a trial checkpoint's key of the Trainer's state (engine.Trainer.state_dict)


def weights_of(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], bool | None]:
    """(model weights, whether the model trained in bf16, None where not recorded) of a loaded
    checkpoint: a trial's full state (``trainables.loop``) or a train run's ``best.pt`` (the
    weights alone)."""
    trainer = state.get(TRAINER_STATE)
    if isinstance(trainer, dict) and "model" in trainer:
        return trainer["model"], trainer.get("bf16")
    return state, None


class MetricsLog:
    """Appends one CSV row per epoch, flushed at once so a live run can be read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None

    def append(self, row: dict[str, Any]) -> None:
        """Write ``row``; the first row fixes the columns, later rows may not add new ones."""
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        with self.path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run's numbers depend on."""
    found = {"python": platform.python_version()}
    for package in ("visiontune", "torch", "torchvision", "numpy", "ray", "optuna"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """Where and how a run was made: command line, versions, host, time (and the training device)."""
    record = {
        "command": shlex.join(["visiontune", *sys.argv[1:]]) if sys.argv else "",
        "versions": versions(),
        "host": platform.node(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device is not None:
        device = torch.device(device)
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else platform.processor() or platform.machine())
        record.update({"device": f"{device.type}: {name}", "threads": torch.get_num_threads()})
    return record


def prepare_out_dir(path: Path) -> Path:
    """Check that ``path`` can become a new run folder (missing or empty); does not create it."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{path}: already exists and is not empty; choose another --out")
    return path


def default_run_name(*parts: str) -> str:
    """A readable, sortable, unique-enough folder name: ``parts-YYYYmmdd-HHMMSS`` (each part with
    anything but letters, digits, dots and dashes made a dash: a data set's name may hold spaces)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return "-".join([*(re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-") or "data" for part in parts), stamp])
