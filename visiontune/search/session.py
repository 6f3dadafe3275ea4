"""The Ray session of a search: a local Ray bound to loopback, or ``--address``; resource checks.

Ray reads some settings at import time, so nothing here imports ray before
:func:`quiet_ray_environment` and the loopback setting are in place.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

from visiontune.errors import ConfigError, VisiontuneError
from visiontune.storage import is_uri


def quiet_ray_environment() -> None:
    """Ray Tune's own tables and advisory warnings off; visiontune prints its own progress.

    Read by Ray at import time, so this runs before ``import ray``; explicit settings win.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every epoch checkpoints, which forces an experiment-state snapshot: wanted (it is what
    # makes --resume exact), so the warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


class _TransientSyncRaceFilter(logging.Filter):
    """Drop Ray's report of a sync that raced with a temporary file being renamed.

    Ray stages experiment state in a local folder and copies it to storage in a background
    thread; a copy that lists a ``*-tmp-*`` file just before it is renamed fails with
    FileNotFoundError and is retried by the next snapshot. Other sync failures still show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


def start_or_connect_ray(address: str | None, progress: Callable[[str], None]) -> bool:
    """Connect to ``address`` or start a local Ray bound to loopback; True if we started it."""
    # Ray binds its ports to the machine's external address unless told it is a local-only
    # node; a local search needs no network, so keep every port on 127.0.0.1. Must be set
    # before ray is first imported (ray reads it at import time).
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    quiet_ray_environment()
    import ray

    logging.getLogger("ray.tune.execution.experiment_state").addFilter(_TransientSyncRaceFilter())
    # Ray logs every trial error with its traceback; the progress display names the error and
    # its error.txt instead, and the traceback stays in the run folder.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = address or "a local Ray instance"
            raise VisiontuneError(f"cannot start or reach Ray at {where}: {' '.join(str(error).split())}") from None
    if not address:
        from ray.util import get_node_ip_address

        node = get_node_ip_address()
        if not node.startswith("127."):
            progress(f"warning: the local Ray node is on {node}, not loopback; "
                     "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting Python to keep it local")
    return True


@contextmanager
def ray_session(address: str | None, progress: Callable[[str], None]) -> Iterator[None]:
    """Ray for the duration of a ``with`` block; a Ray this started is shut down at its end
    (a Ray already running in this process, or a cluster's, is left as it was)."""
    started = start_or_connect_ray(address, progress)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def check_resources(cpus_per_trial: float, gpus_per_trial: float, on_cluster: bool,
                    progress: Callable[[str], None]) -> None:
    """Refuse trials that can never be placed on a local machine; warn on a cluster."""
    import ray

    available = ray.cluster_resources()
    cpus, gpus = available.get("CPU", 0), available.get("GPU", 0)
    problems = []
    if cpus_per_trial > cpus:
        problems.append(f"--cpus-per-trial {cpus_per_trial} but Ray has {cpus:g} CPUs")
    if gpus_per_trial > gpus:
        problems.append(f"--gpus-per-trial {gpus_per_trial} but Ray has {gpus:g} GPUs")
    if not problems:
        return
    if on_cluster:
        progress(f"warning: {'; '.join(problems)}: trials wait until the autoscaler adds such nodes")
    else:
        raise ConfigError("; ".join(problems) + " on this machine")


def warn_local_storage_on_cluster(address: str | None, storage: str, progress: Callable[[str], None]) -> None:
    """On a cluster of several nodes, a local --storage path must be visible to every node."""
    import ray

    if address and not is_uri(storage):
        alive = [node for node in ray.nodes() if node.get("Alive")]
        if len(alive) > 1:
            progress(f"note: {len(alive)} nodes share this search: every node must see --storage "
                     f"{storage} (an NFS mount or one machine's folder); on cloud clusters use "
                     "--storage s3://... (README: Cluster runbook)")
