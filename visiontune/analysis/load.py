"""Reading a search's run folder: the only input of analysis.

Works on a finished search, on one still running (statuses then come from Ray Tune's experiment
state), and on a folder moved elsewhere (every path is taken relative to the folder). A damaged
file in one trial (a truncated ``result.json``) becomes a warning for that trial, not a crash.
File names, report keys and statuses are the run record's (``visiontune.record``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from visiontune import record
from visiontune.data.card import DatasetCard
from visiontune.errors import VisiontuneError
from visiontune.record import TrialRecord


@dataclass
class RunRecord:
    """A search's run folder, read."""

    folder: Path
    record: dict[str, Any]
    trials: list[TrialRecord]
    test: dict[str, dict[str, Any]]
    pareto: list[dict[str, Any]]
    complete: bool  # the search ended and wrote its summary
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.record.get("name") or self.folder.name)

    @property
    def task(self) -> str:
        return str(self.record["task"])

    @property
    def card(self) -> DatasetCard:
        """The card of the data set searched on, as the search recorded it (``search.json``)."""
        recorded = (self.record.get("data") or {}).get("card")
        if recorded is None:
            raise VisiontuneError(f"{self.folder}: {record.SEARCH_FILE} holds no data-set card (a search from "
                                  "before visiontune recorded one); rerun the search to analyse it")
        return DatasetCard.from_dict(recorded)

    @property
    def metric(self) -> str:
        return str(self.record["metric"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.record.get("options") or {})

    @property
    def max_epochs(self) -> int:
        return int(self.options.get("max_epochs") or 0)

    def prediction_file(self, trial_id: str) -> Path | None:
        """The saved test predictions of a top-k trial."""
        path = self.folder / record.PREDICTIONS_DIR / f"{trial_id}.npz"
        return path if path.is_file() else None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VisiontuneError(f"{path}: unreadable {what} ({error})") from None


def _reports(folder: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Every report of a trial from Ray's result.json (one JSON object per line)."""
    path = folder / record.RESULT_FILE
    if not path.is_file():
        progress = folder / record.PROGRESS_FILE
        if progress.is_file():
            try:
                return pd.read_csv(progress).to_dict("records")
            except (ValueError, OSError) as error:
                warnings.append(f"{progress}: unreadable ({error}); trial has no metrics")
        return []
    rows = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as error:
        warnings.append(f"{path}: unreadable ({error}); trial has no metrics")
        return []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            warnings.append(f"{path}: line {number} is truncated or corrupt; "
                            f"kept the {len(rows)} epochs before it")
            break
    return rows


def _ray_statuses(folder: Path) -> dict[str, str]:
    """Trial statuses from Ray Tune's newest experiment-state file (best effort)."""
    statuses: dict[str, str] = {}
    files = sorted(folder.glob(record.EXPERIMENT_STATE_GLOB))
    if not files:
        return statuses
    try:
        state = json.loads(files[-1].read_text())
        for entry in state.get("trial_data", []):
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            statuses[str(trial["trial_id"])] = str(trial["status"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {}
    return statuses


def _config(trial_folder: Path, reports: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    path = trial_folder / record.PARAMS_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            warnings.append(f"{path}: unreadable; configuration unknown")
    if reports and isinstance(reports[0].get("config"), dict):
        return reports[0]["config"]
    return {}


def load_run(folder: str | Path) -> RunRecord:
    """Read a search's run folder; a :class:`VisiontuneError` if it is not one."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VisiontuneError(f"{folder}: no such run folder")
    if not (folder / record.SEARCH_FILE).is_file():
        raise VisiontuneError(f"{folder}: not a visiontune search folder (no {record.SEARCH_FILE})")
    search = _read_json(folder / record.SEARCH_FILE, "search record")
    max_epochs = int((search.get("options") or {}).get("max_epochs") or 0)
    final = {}
    if (folder / record.TRIALS_JSON).is_file():
        final = {str(t["trial_id"]): t for t in _read_json(folder / record.TRIALS_JSON, "trial summary")}
    ray_statuses = {} if final else _ray_statuses(folder)
    trials, warnings = [], []
    for trial_folder in sorted(p for p in folder.glob(f"{record.TRIAL_PREFIX}*") if p.is_dir()):
        trial_id = trial_folder.name.removeprefix(record.TRIAL_PREFIX)
        trial_warnings: list[str] = []
        reports = _reports(trial_folder, trial_warnings)
        config = _config(trial_folder, reports, trial_warnings)
        if trial_id in final:
            config = final[trial_id].get("config") or config
            status, error = final[trial_id]["status"], final[trial_id].get("error", "")
        else:  # the search has not ended: where Ray's state is unknown, an error file without reports failed
            ray_status = ray_statuses.get(trial_id)
            errored = ray_status is None and (trial_folder / record.ERROR_FILE).is_file() and not reports
            status = record.trial_status(reports[-1] if reports else None, max_epochs=max_epochs, errored=errored,
                                         ray_status=ray_status)
            error = ""
        trials.append(TrialRecord(trial_id, trial_folder.name, config, record.epochs_frame(reports), status, error,
                                  trial_warnings))
        warnings.extend(f"trial {trial_id}: {w}" for w in trial_warnings)
    test = {}
    if (folder / record.TEST_FILE).is_file():
        test = _read_json(folder / record.TEST_FILE, "test results").get("trials", {})
    pareto = (_read_json(folder / record.PARETO_FILE, "Pareto front")
              if (folder / record.PARETO_FILE).is_file() else [])
    return RunRecord(folder, search, trials, test, pareto, complete=bool(final), warnings=warnings)


__all__ = ["RunRecord", "TrialRecord", "load_run"]
