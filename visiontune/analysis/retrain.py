"""Retraining given configurations of a finished search as a grid search of the search service.

``analyze --reseed`` (more seeds) and ``analyze --cv`` (folds, and the refit) both retrain rows
of settings: :func:`run_rows` runs them as one grid search of their own inside the run folder, on
the search's trial resources (or those given: GPU fractions, ``--address``), so they pack, run on
clusters and resume after an interruption like any search; a finished one is read, not rerun.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from visiontune import record
from visiontune.analysis.load import RunRecord
from visiontune.config import TrainConfig
from visiontune.data.options import DataOptions
from visiontune.options import known_values


def row_key(config: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """A configuration without the settings the search adds itself (and ``leave_out``), as a
    comparable string."""
    return json.dumps({k: v for k, v in config.items() if k not in record.IGNORED_KEYS + leave_out}, sort_keys=True)


def complete_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every row the same settings (a grid's rows must): a setting one configuration leaves
    out takes its default, which is what that configuration trained with."""
    defaults = {spec.name: spec.default for spec in dataclasses.fields(TrainConfig)}
    keys = [key for config in configs for key in config]
    keys = list(dict.fromkeys(key for key in keys if key not in record.IGNORED_KEYS))
    return [{key: config.get(key, defaults.get(key)) for key in keys} for config in configs]


def run_rows(run: RunRecord, rows: list[dict[str, Any]], epochs: int, inside: str, name: str, what: str,
             data_dir: str | None, resources: dict[str, Any], progress: Callable[[str], None],
             cv_folds: int = 0) -> Path:
    """Run ``rows`` for ``epochs`` as the grid search ``RUN/inside/name`` (resumed where it was
    interrupted, read where it finished); returns its folder. ``cv_folds``: a fold search."""
    from visiontune.search import SearchOptions, TrialResources, run_search
    from visiontune.storage import RunStore

    storage = run.folder / inside
    storage.mkdir(exist_ok=True)
    space = storage / f"{name}.space.json"
    space.write_text(json.dumps({"description": f"{what} of {run.name}", "params": {}, "rows": rows}, indent=2) + "\n")
    recorded = run.options
    data = known_values(DataOptions, recorded)
    data.update(download=False, **({"data_dir": data_dir} if data_dir else {}))
    where = {**known_values(TrialResources, recorded), "address": None, **resources}
    options = SearchOptions(task=run.task, space=str(space), searcher="grid", scheduler="none", max_epochs=epochs,
                            top_k=len(rows), report=False, storage=str(storage), name=name, metric=run.metric,
                            cv_folds=cv_folds, **data, **where)
    folder = storage / name
    if (folder / record.TEST_FILE).is_file():
        progress(f"{what}: already done in {folder}; reading it")
        return folder
    resume = RunStore(str(storage), name).exists()
    progress(f"{what}: {len(rows)} runs of {epochs} epochs as trials of the search service -> {folder}"
             + (" (resuming)" if resume else ""))
    run_search(options, resume=resume, progress=lambda line: progress(f"  {line}"))
    return folder


__all__ = ["complete_rows", "row_key", "run_rows"]
