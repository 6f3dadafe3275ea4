"""Shared pieces of the benchmark scripts: machine description, medians, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

# Where figures go: benchmarks/results, or VISIONTUNE_BENCHMARK_RESULTS (the GPU session's folder).
RESULTS_DIR = Path(os.environ.get("VISIONTUNE_BENCHMARK_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: CPU model, cores, GPU, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def describe(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']}, {info['cores']} cores{gpu}, torch {info['torch']}"


def median_of(repeats: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Median and all values of ``repeats`` calls of ``measure``."""
    values = [measure() for _ in range(repeats)]
    return statistics.median(values), values


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write a benchmark's figures to benchmarks/results/NAME.json (created if needed)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def git_revision() -> str:
    try:
        folder = Path(__file__).resolve().parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=folder, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, cwd=folder, check=True).stdout.strip()
        return head + ("+uncommitted changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
