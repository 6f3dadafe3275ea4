"""Running given configurations as a grid search of the search service: :func:`run_grid`.

Reseeding (more seeds), cross-validation (folds, and the refit) and the report's studies all
train given rows of settings: each is one grid search of its own inside a storage folder (a
run folder's ``reseed/`` or ``cv/``, or the studies' storage), on the trial resources given
(GPU fractions, ``--address``), so the rows pack, run on clusters and resume after an
interruption like any search; a finished grid is read, not rerun.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from visiontune import record
from visiontune.config import TrainConfig
from visiontune.options import known_values
from visiontune.runfolder import SearchRun
from visiontune.search import SearchOptions, TrialResources, run_search
from visiontune.storage import RunStore


def row_key(config: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """A configuration without the settings the search adds itself (and ``leave_out``), as a
    comparable string."""
    return json.dumps({k: v for k, v in config.items() if k not in record.SET_BY_SEARCH + leave_out}, sort_keys=True)


def complete_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every row the same settings (a grid's rows must): a setting one configuration leaves
    out takes its default, which is what that configuration trained with."""
    defaults = {spec.name: spec.default for spec in dataclasses.fields(TrainConfig)}
    keys = [key for config in configs for key in config]
    keys = list(dict.fromkeys(key for key in keys if key not in record.SET_BY_SEARCH))
    return [{key: config.get(key, defaults.get(key)) for key in keys} for config in configs]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the values that are numbers (NaN left out); NaN
    where none is, a standard deviation of 0 for one."""
    clean = [v for v in values if v == v]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def run_grid(task: str, space: dict[str, Any], points: int, epochs: int, storage: Path, name: str, what: str,
             progress: Callable[[str], None], metric: str | None = None, data: dict[str, Any] | None = None,
             resources: dict[str, Any] | None = None, cv_folds: int = 0, cv_refit: bool = False) -> Path:
    """Run the declarative grid ``space`` (its ``rows`` and ``params``; ``points`` in all) for
    ``epochs`` as the grid search ``storage/name``: resumed where it was interrupted, read where it
    finished; returns its folder. ``data``: ``DataOptions`` fields; ``resources``:
    ``TrialResources`` fields; ``cv_folds``/``cv_refit``: a fold search or a refit."""
    storage.mkdir(parents=True, exist_ok=True)
    folder = storage / name
    if (folder / record.TEST_FILE).is_file():
        progress(f"{what}: already done in {folder}; reading it")
        return folder
    space_file = storage / f"{name}.space.json"
    space_file.write_text(json.dumps(space, indent=2) + "\n")
    options = SearchOptions(task=task, space=str(space_file), searcher="grid", scheduler="none", max_epochs=epochs,
                            top_k=points, report=False, storage=str(storage), name=name, metric=metric,
                            cv_folds=cv_folds, cv_refit=cv_refit, **(data or {}), **(resources or {}))
    resume = RunStore(str(storage), name).exists()
    progress(f"{what}: {points} runs of {epochs} epochs as trials of the search service -> {folder}"
             + (" (resuming)" if resume else ""))
    run_search(options, resume=resume, progress=lambda line: progress(f"  {line}"))
    return folder


def retrain(run: SearchRun, rows: list[dict[str, Any]], epochs: int, inside: str, name: str, what: str,
            data_dir: str | None, resources: dict[str, Any], progress: Callable[[str], None], cv_folds: int = 0,
            cv_refit: bool = False) -> Path:
    """Run configurations of a finished search (``rows``) as the grid ``RUN/inside/name``, on the
    search's data and trial resources (``resources`` override them; ``address`` is not taken
    from the record: the cluster may be gone)."""
    space = {"description": f"{what} of {run.name}", "params": {}, "rows": rows}
    data = dataclasses.asdict(run.data_options(data_dir))
    where = {**known_values(TrialResources, run.options), "address": None, **resources}
    return run_grid(run.task, space, len(rows), epochs, run.folder / inside, name, what, progress, metric=run.metric,
                    data=data, resources=where, cv_folds=cv_folds, cv_refit=cv_refit)


__all__ = ["complete_rows", "mean_std", "retrain", "row_key", "run_grid"]
