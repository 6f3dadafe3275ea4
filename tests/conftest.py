"""Shared fixtures: real data (from $VISIONTUNE_DATA, skipped where absent) and tiny synthetic sets."""

from __future__ import annotations

import os
from pathlib import Path

# Ray reads these at import time: keep every Ray port on loopback, and Ray's own tables quiet.
# (A plain Ray node on these machines binds to the external interface address.)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from visiontune.data import load_splits  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance for the whole test session: 2 CPUs, no dashboard, loopback only.

    Yields its GCS address, for tests that connect a second driver (a subprocess search).
    ``ray.shutdown()`` stops the processes this session started.
    """
    import logging

    import ray

    context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _real_root() -> Path | None:
    value = os.environ.get("VISIONTUNE_DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The folder holding the real data sets; skips the test when $VISIONTUNE_DATA is unset."""
    root = _real_root()
    if root is None or not root.is_dir():
        pytest.skip("real data not available: set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/")
    return root


@pytest.fixture(scope="session")
def mnist_root(real_data_root: Path) -> Path:
    if not (real_data_root / "mnist").is_dir():
        pytest.skip(f"no mnist/ folder in VISIONTUNE_DATA={real_data_root}")
    return real_data_root


@pytest.fixture(scope="session")
def warwick_root(real_data_root: Path) -> Path:
    if not (real_data_root / "WARWICK").is_dir():
        pytest.skip(f"no WARWICK/ folder in VISIONTUNE_DATA={real_data_root}")
    return real_data_root


@pytest.fixture(scope="session")
def digits_splits():
    """Synthetic digit-like classification splits (500 train / 100 val / 200 test)."""
    return load_splits("mnist", synthetic=True)


@pytest.fixture(scope="session")
def glands_splits():
    """Synthetic gland segmentation splits (36 / 12 / 16 images of 128x128)."""
    return load_splits("warwick", synthetic=True)
