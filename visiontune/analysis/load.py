"""Reading a search's run folder: the only input of analysis.

Works on a finished search, on one still running (statuses then come from Ray Tune's experiment
state), and on a folder moved elsewhere (every path is taken relative to the folder). A damaged
file in one trial (a truncated ``result.json``) becomes a warning for that trial, not a crash.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontune.errors import VisiontuneError
from visiontune.results import BUDGET, DIVERGED_STATUS, FAILED, FINISHED, SKIPPED, STOPPED

RUNNING, PENDING = "running", "pending"
SEARCH_FILE, TRIALS_JSON, TEST_FILE, PARETO_FILE = "search.json", "trials.json", "test_results.json", "pareto.json"


@dataclass
class TrialRecord:
    """One trial as analysis sees it."""

    trial_id: str
    folder: Path
    config: dict[str, Any]
    epochs: pd.DataFrame  # one row per epoch, last report wins where an epoch was reported twice
    status: str
    warnings: list[str] = field(default_factory=list)

    def best(self, metric: str, mode: str = "max") -> tuple[float | None, int]:
        """(best value of ``metric`` over the epochs, the epoch it came at); (None, 0) if none."""
        if metric not in self.epochs or self.epochs[metric].dropna().empty:
            return None, 0
        column = self.epochs[metric].astype(float)
        if "diverged" in self.epochs:
            column = column[~self.epochs["diverged"].fillna(False).astype(bool)]
        column = column[np.isfinite(column)]
        if column.empty:
            return None, 0
        index = column.idxmax() if mode == "max" else column.idxmin()
        return float(column[index]), int(self.epochs.loc[index, "epoch"])

    def epochs_trained(self) -> int:
        """Epochs that completed (a diverged epoch does not count)."""
        if self.epochs.empty:
            return 0
        good = self.epochs
        if "diverged" in good:
            good = good[~good["diverged"].fillna(False).astype(bool)]
        return int(good["epoch"].max()) if not good.empty else 0

    def compute_seconds(self) -> float:
        """Seconds spent in this trial's epochs (training and validation)."""
        for column in ("epoch_time_s", "time_this_iter_s"):
            if column in self.epochs:
                return float(self.epochs[column].fillna(0).sum())
        return 0.0

    def precision(self) -> str | None:
        """The numeric precision the trial trained in, if it reported it."""
        if "precision" in self.epochs and not self.epochs["precision"].dropna().empty:
            return str(self.epochs["precision"].dropna().iloc[-1])
        return None


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
        path = self.folder / "predictions" / f"{trial_id}.npz"
        return path if path.is_file() else None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VisiontuneError(f"{path}: unreadable {what} ({error})") from None


def _epoch_rows(folder: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Per-epoch reports of a trial from Ray's result.json (one JSON object per line)."""
    path = folder / "result.json"
    if not path.is_file():
        progress = folder / "progress.csv"
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


def _epochs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Flat per-epoch table; where an epoch was reported twice (a resumed trial), the last wins."""
    records = []
    for row in rows:
        if not row.get("epoch"):
            continue  # a report made without training (a trial skipped by the time budget)
        records.append({k: v for k, v in row.items() if k != "config" and not isinstance(v, (dict, list))})
    if not records:
        return pd.DataFrame({"epoch": pd.Series(dtype=int)})
    frame = pd.DataFrame(records)
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
    return frame


def _ray_statuses(folder: Path) -> dict[str, str]:
    """Trial statuses from Ray Tune's newest experiment-state file (best effort)."""
    statuses: dict[str, str] = {}
    files = sorted(folder.glob("experiment_state-*.json"))
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


def _status(frame: pd.DataFrame, ray_status: str | None, max_epochs: int, error_file: bool) -> str:
    """How a trial stands, for a search that has not written its own summary yet."""
    if ray_status == "ERROR" or (ray_status is None and error_file and frame.empty):
        return FAILED
    if ray_status in ("RUNNING", "PAUSED"):
        return RUNNING
    if ray_status == "PENDING":
        return PENDING
    if frame.empty:
        return SKIPPED if ray_status == "TERMINATED" else PENDING
    last = frame.iloc[-1]
    if bool(last.get("diverged")) if "diverged" in frame else False:
        return DIVERGED_STATUS
    if int(last["epoch"]) >= max_epochs:
        return FINISHED
    return STOPPED if ray_status == "TERMINATED" else RUNNING


def load_run(folder: str | Path) -> RunRecord:
    """Read a search's run folder; a :class:`VisiontuneError` if it is not one."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VisiontuneError(f"{folder}: no such run folder")
    if not (folder / SEARCH_FILE).is_file():
        raise VisiontuneError(f"{folder}: not a visiontune search folder (no {SEARCH_FILE})")
    record = _read_json(folder / SEARCH_FILE, "search record")
    max_epochs = int((record.get("options") or {}).get("max_epochs") or 0)
    final = {}
    if (folder / TRIALS_JSON).is_file():
        final = {str(t["trial_id"]): t for t in _read_json(folder / TRIALS_JSON, "trial summary")}
    ray_statuses = {} if final else _ray_statuses(folder)
    trials, warnings = [], []
    for trial_folder in sorted(p for p in folder.glob("trial_*") if p.is_dir()):
        trial_id = trial_folder.name.removeprefix("trial_")
        trial_warnings: list[str] = []
        rows = _epoch_rows(trial_folder, trial_warnings)
        config: dict[str, Any] = {}
        if (trial_folder / "params.json").is_file():
            try:
                config = json.loads((trial_folder / "params.json").read_text())
            except ValueError:
                trial_warnings.append(f"{trial_folder / 'params.json'}: unreadable; configuration unknown")
        if not config and rows and isinstance(rows[0].get("config"), dict):
            config = rows[0]["config"]
        if trial_id in final:
            config = final[trial_id].get("config") or config
        frame = _epochs_frame(rows)
        status = (final[trial_id]["status"] if trial_id in final
                  else _status(frame, ray_statuses.get(trial_id), max_epochs, (trial_folder / "error.txt").is_file()))
        trials.append(TrialRecord(trial_id, trial_folder, config, frame, status, trial_warnings))
        warnings.extend(f"trial {trial_id}: {w}" for w in trial_warnings)
    test = {}
    if (folder / TEST_FILE).is_file():
        test = _read_json(folder / TEST_FILE, "test results").get("trials", {})
    pareto = _read_json(folder / PARETO_FILE, "Pareto front") if (folder / PARETO_FILE).is_file() else []
    return RunRecord(folder, record, trials, test, pareto, complete=bool(final), warnings=warnings)


def metric_mode(metric: str) -> str:
    """``min`` for losses, ``max`` for everything else (accuracy, Dice)."""
    return "min" if "loss" in metric else "max"


def is_missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


__all__ = ["BUDGET", "RunRecord", "TrialRecord", "load_run", "metric_mode"]
