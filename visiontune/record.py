"""The run record: the one place that names run-folder files, report keys and trial statuses,
and builds the ranked table of a search's trials.

Writers (the trial loop, the search's finishing step, ``visiontune train``) and readers
(analysis, reproduce, reseed, the benchmarks) import these names; none spells them itself.
The ranked table has one schema, built by :func:`ranked_table` from :class:`TrialRecord`\\ s,
whether they come from a live Ray Tune ``ResultGrid`` (:func:`trial_from_result`, when a
search ends) or from a run folder on disk (``runfolder.load_search``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# ------------------------------------------------------------------------- run-folder files
# A search's run folder (STORAGE/NAME), written by visiontune:
SEARCH_FILE = "search.json"  # options, space, data, versions; the bytes kept on disk at the end
TRIALS_CSV = "trials.csv"  # the ranked table (schema: ranked_table)
TRIALS_JSON = "trials.json"  # one summary per trial (TrialRecord.summary), statuses final
TEST_FILE = "test_results.json"  # the top-k's test metrics: the one look at test
PARETO_FILE = "pareto.json"  # two-objective searches: the trials on the Pareto front
CACHED_DATA_DIR = "cached_data"  # on a cluster: the data set's cache entries, which each node copies once
PREDICTIONS_DIR = "predictions"  # the top-k's test predictions, TRIAL.npz
ANALYSIS_DIR = "analysis"  # what `visiontune analyze` writes (its own trials.csv has the same schema)
REPORT_FILE = "report.html"
BEST_CONFIG_FILE = "best_config.json"
RESEED_DIR = "reseed"  # `analyze --reseed`: its retrains are a search of their own in here
RESEED_TABLE = "reseed"  # stem of reseed.csv / .md / .html in the analysis folder
CV_DIR = "cv"  # `analyze --cv`: its fold trainings (and the refit) are searches of their own in here
CV_FILE = "cv.json"  # RUN/cv/cv.json: the latest cross-validation (ranking, fold members, test)
CV_TABLE = "cv"  # stem of cv.csv / .md / .html in the analysis folder
CV_FOLD = "cv_fold"  # a fold trial's config key: the fold it validates on (data.folds)
RESEED_FILE = "reseed.json"  # RUN/reseed/reseed.json: the latest reseeding (its table's rows)
# ... and by Ray Tune, one folder per trial:
TRIAL_PREFIX = "trial_"  # trial folders are trial_<trial id> (search.tuner names them)
RESULT_FILE = "result.json"  # Ray: every report of a trial, one JSON object per line (also train's result)
PROGRESS_FILE = "progress.csv"  # Ray: the same reports as CSV
PARAMS_FILE = "params.json"  # Ray: the trial's configuration
ERROR_FILE = "error.txt"  # Ray: the traceback of a trial that raised
CHECKPOINT_PREFIX = "checkpoint_"  # Ray: checkpoint_000003/ folders, each holding STATE_FILE
REPORTED_CHECKPOINT = "checkpoint_dir_name"  # Ray: in a report, the checkpoint folder it came with
STATE_FILE = "state.pt"  # the trial loop's full resume state inside each checkpoint
CHECKPOINT_REPORT = "reports.json"  # ... beside it: REPORTS and STATE_BYTES (search.recovery)
REPORTS = "reports"  # every report of the trial up to the checkpoint, oldest first
STATE_BYTES = "state_bytes"  # the size STATE_FILE has when complete
TRAINING_ITERATION = "training_iteration"  # Ray: the number of reports so far, in every report
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"  # Ray: trial statuses while a search runs
# A `visiontune train` run folder:
CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.csv"
BEST_CHECKPOINT = "best.pt"
# RESULT_FILE (above) holds its test metrics.
# A folder `visiontune export` writes: the graph (model_formats.FORMATS names its file) and
MODEL_CARD = "model.json"  # the model card: what the graph takes and gives, how it was chosen
MODEL_CARD_VERSION = 3  # 2: "loaded_by", "precisions", pt2; 3: the graph takes pixel values and normalises them
PIXEL_VALUE_INPUT = 3  # the model card version from which an exported graph takes pixel values, not pixel / 255

# ------------------------------------------------------------------- per-epoch report keys
# Every report of a trial carries the train and validation metrics (metrics.py names them) and:
EPOCH = "epoch"
BEST_EPOCH = "best_epoch"
DIVERGED = "diverged"
PARAMS = "params"  # learnable weights of the model
NODE_ID = "node_id"
EPOCH_TIME = "epoch_time_s"  # training + validation seconds of the epoch
PRECISION = "precision"  # what precision "auto" resolved to
BUDGET_END = "ended_by_budget"  # set on the report after which the trial ends for the time budget
# Keys Ray Tune adds to every report:
TRIAL_ID = "trial_id"
NODE_IP = "node_ip"
TIMESTAMP = "timestamp"
ITERATION_TIME = "time_this_iter_s"


def best_name(metric: str) -> str:
    """Name of the best-so-far companion of a metric: ``val/acc`` -> ``val/acc_best``."""
    return f"{metric}_best"


def trial_dirname(trial_id: str) -> str:
    """The folder of a trial inside its run folder."""
    return f"{TRIAL_PREFIX}{trial_id}"


# ---------------------------------------------------------------------------- trial status
class Status:
    """How a trial stands; the words the ranked table, the progress lines and analysis show."""

    FINISHED = "finished"
    STOPPED = "stopped"  # by ASHA
    BUDGET = "stopped (time budget)"
    DIVERGED = "diverged"
    FAILED = "failed"
    SKIPPED = "not started (time budget)"
    RUNNING = "running"  # only while a search runs
    PENDING = "pending"

    ENDED = (FINISHED, STOPPED, BUDGET, DIVERGED, FAILED, SKIPPED)


RAY_TERMINATED, RAY_ERROR, RAY_PENDING = "TERMINATED", "ERROR", "PENDING"


def trial_status(last_report: Mapping[str, Any] | None, *, max_epochs: int, errored: bool = False,
                 ray_status: str | None = RAY_TERMINATED, deadline: float | None = None) -> str:
    """How a trial ended (or stands), from its last report, whether it raised, and Ray's status.

    ``ray_status`` is Ray Tune's word for the trial (TERMINATED once it has ended, the default;
    RUNNING, PAUSED, PENDING, ERROR), or None where it is not known (a run folder read while its
    search runs, without Ray's experiment state): the trial is then taken as still going.
    ``deadline`` is only for runs recorded before reports carried ``ended_by_budget``.
    """
    report = last_report or {}
    if errored or ray_status == RAY_ERROR:
        return Status.FAILED
    if ray_status in ("RUNNING", "PAUSED"):
        return Status.RUNNING
    if ray_status == "PENDING":
        return Status.PENDING
    ended = ray_status == RAY_TERMINATED
    if not report.get(EPOCH):
        return Status.SKIPPED if ended else Status.PENDING
    if report.get(DIVERGED):
        return Status.DIVERGED
    if report[EPOCH] >= max_epochs:
        return Status.FINISHED
    if not ended:
        return Status.RUNNING
    if report.get(BUDGET_END):
        return Status.BUDGET
    # Runs recorded before BUDGET_END existed: Ray's timestamp, whole seconds.
    if BUDGET_END not in report and deadline is not None and report.get(TIMESTAMP, 0) >= int(deadline):
        return Status.BUDGET
    return Status.STOPPED


def metric_mode(metric: str) -> str:
    """``min`` for losses, ``max`` for everything else (accuracy, Dice)."""
    return "min" if "loss" in metric else "max"


def checkpoint_reports_text(reports: list[Mapping[str, Any]], state_bytes: int) -> str:
    """The text of a checkpoint's CHECKPOINT_REPORT: its trial's reports so far and its state
    file's size when complete."""
    def plain(value: Any) -> Any:  # a numpy scalar as its Python number
        return value.item() if hasattr(value, "item") else str(value)

    return json.dumps({REPORTS: list(reports), STATE_BYTES: state_bytes}, default=plain)


def read_checkpoint_reports(text: str) -> tuple[list[dict[str, Any]], int | None]:
    """(reports, state file size) from a CHECKPOINT_REPORT's text; ValueError if it is not one."""
    try:
        held = json.loads(text)
        return list(held[REPORTS]), held.get(STATE_BYTES)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a checkpoint report ({error})") from None


def is_missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---------------------------------------------------------------------------------- trials
def epochs_frame(reports: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Flat per-epoch table of a trial's reports; where an epoch was reported twice (a resumed
    trial), the last report wins. Reports without an epoch (a trial skipped by the time budget)
    and nested values (Ray's config) are left out."""
    import pandas as pd  # here, not at the top: every command's start would pay for it

    rows = []
    for report in reports:
        if not report.get(EPOCH):
            continue
        rows.append({key: value for key, value in report.items()
                     if not key.startswith("config/") and not isinstance(value, (dict, list))})
    if not rows:
        return pd.DataFrame({EPOCH: pd.Series(dtype=int)})
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(EPOCH, keep="last").sort_values(EPOCH).reset_index(drop=True)


@dataclass
class TrialRecord:
    """One trial of a search: its configuration, every epoch's report, and how it stands."""

    trial_id: str
    path: str  # the trial folder, relative to the run folder
    config: dict[str, Any]
    epochs: pd.DataFrame  # one row per epoch (epochs_frame)
    status: str
    error: str = ""
    warnings: list[str] = field(default_factory=list)

    def _good_epochs(self) -> pd.DataFrame:
        """The epochs that completed (a diverged epoch's report does not count)."""
        if DIVERGED in self.epochs:
            return self.epochs[~self.epochs[DIVERGED].fillna(False).astype(bool)]
        return self.epochs

    def best(self, metric: str) -> tuple[float | None, int]:
        """(best value of ``metric`` over the epochs, the first epoch it came at); (None, 0) if none."""
        import pandas as pd

        good = self._good_epochs()
        if metric not in good:
            return None, 0
        column = pd.to_numeric(good[metric], errors="coerce").astype(float)
        column = column[np.isfinite(column)]
        if column.empty:
            return None, 0
        index = column.idxmax() if metric_mode(metric) == "max" else column.idxmin()
        return float(column[index]), int(good.loc[index, EPOCH])

    def epochs_trained(self) -> int:
        """Epochs that completed."""
        good = self._good_epochs()
        return int(good[EPOCH].max()) if not good.empty else 0

    def compute_seconds(self) -> float:
        """Seconds spent in this trial's epochs (training and validation)."""
        for column in (EPOCH_TIME, ITERATION_TIME):
            if column in self.epochs:
                return float(self.epochs[column].fillna(0).sum())
        return 0.0

    def _last(self, key: str) -> Any:
        if key not in self.epochs or self.epochs[key].dropna().empty:
            return None
        return self.epochs[key].dropna().iloc[-1]

    def precision(self) -> str | None:
        """The numeric precision the trial trained in, if it reported it."""
        value = self._last(PRECISION)
        return None if value is None else str(value)

    def trained_config(self) -> dict[str, Any]:
        """The configuration as the trial trained it: with the precision ``auto`` resolved to, so
        that a retrain or a repeat runs the same numerics."""
        config = dict(self.config)
        config[PRECISION] = self.precision() or config.get(PRECISION, "auto")
        return config

    def weights(self) -> int | None:
        """Learnable weights of the trial's model."""
        value = self._last(PARAMS)
        return None if value is None else int(value)

    def nodes(self, key: str = NODE_ID) -> list[str]:
        """The nodes the trial ran on (``NODE_ID``, or their addresses with ``NODE_IP``)."""
        return sorted({str(v) for v in self.epochs[key].dropna()}) if key in self.epochs else []

    def summary(self, metric: str) -> dict[str, Any]:
        """The trial as one plain dict (an entry of ``trials.json``)."""
        value, epoch = self.best(metric)
        return {"trial_id": self.trial_id, "status": self.status, "config": self.config, "best_value": value,
                "best_epoch": epoch, "epochs": self.epochs_trained(), "time_s": round(self.compute_seconds(), 1),
                "params": self.weights(), "node_ids": self.nodes(NODE_ID), "node_ips": self.nodes(NODE_IP),
                "path": self.path, "error": self.error}


def trial_from_result(result, run_dir: str, max_epochs: int, deadline: float | None = None) -> TrialRecord:
    """A :class:`TrialRecord` from one ``ray.tune.Result`` of a finished search."""
    metrics = dict(result.metrics or {})
    frame = result.metrics_dataframe
    reports = frame.to_dict("records") if frame is not None else []
    path = result.path or ""
    trial_id = str(metrics.get(TRIAL_ID) or Path(path).name.removeprefix(TRIAL_PREFIX))
    relative = Path(path).name if "://" in path or not path else os.path.relpath(path, run_dir)
    return TrialRecord(
        trial_id=trial_id, path=relative, config=dict(result.config or {}), epochs=epochs_frame(reports),
        status=trial_status(metrics, max_epochs=max_epochs, errored=result.error is not None, deadline=deadline),
        error=str(result.error).splitlines()[0] if result.error else "")


def choose_checkpoint(kept: list[tuple[Any, float | None, int | None]], best_epoch: int) -> Any:
    """The checkpoint of a trial's best validation score among those kept, as (checkpoint, its
    score, its epoch) triples; None where none has a score. Ray keeps the best by the metric and the
    latest, and where two epochs tie it may keep the later, so the best epoch's own checkpoint
    (``best_epoch``: the first epoch that reached the best, ``TrialRecord.best``) is preferred and
    the last tied one taken otherwise. The top-k's test evaluation (from Ray's results) and every
    reader of a run folder choose with this one rule, so they load the same weights."""
    scored = [(checkpoint, score, epoch) for checkpoint, score, epoch in kept if not is_missing(score)]
    if not scored:
        return None
    best = max(score for _, score, _ in scored)
    tied = [(checkpoint, epoch) for checkpoint, score, epoch in scored if score == best]
    return next((checkpoint for checkpoint, epoch in tied if epoch == best_epoch), tied[-1][0])


# ---------------------------------------------------------------------------- ranked table
SET_BY_SEARCH = ("task", "epochs")  # config keys the search sets itself: never searched, never a --set


def varying_parameters(trials: list[TrialRecord]) -> list[str]:
    """Config keys whose value differs between trials (or is absent in some), in the order the
    trials (by id: the order they were created) first set them, so that a table of the same trials
    has the same columns however they were listed (a conditional parameter, set by later trials
    only, comes where its first trial puts it)."""
    keys: list[str] = []
    for trial in sorted(trials, key=lambda trial: trial.trial_id):
        keys.extend(k for k in trial.config if k not in keys and k not in SET_BY_SEARCH)
    return [k for k in keys if len({repr(t.config.get(k)) for t in trials}) > 1]


def rank(trials: list[TrialRecord], metric: str) -> list[tuple[TrialRecord, float | None, int]]:
    """(trial, best value, its epoch), best first; trials without a value last; ties by the
    earlier epoch, then the trial id. Every ranking of trials (the table, the top-k, which
    checkpoints are kept) uses this order."""
    scored = [(trial, *trial.best(metric)) for trial in trials]
    return sorted(scored, key=lambda item: rank_key(item[1], item[2], item[0].trial_id, metric))


def rank_key(value: float | None, epoch: int, trial_id: str, metric: str) -> tuple:
    """The sort key of :func:`rank`, for callers that hold the values without a TrialRecord."""
    sign = -1.0 if metric_mode(metric) == "max" else 1.0
    return (value is None, sign * (value or 0.0), epoch, trial_id)


def best_column(metric: str) -> str:
    """The ranked table's column of a trial's best validation value: ``best_val/acc``."""
    return f"best_{metric}"


# Columns of the ranked table that describe where a trial ran rather than how it did.
PLACEMENT_COLUMNS = ("nodes", "node_ips", "path")


def ranked_table(trials: list[TrialRecord], metric: str, test: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> pd.DataFrame:
    """The ranked table, one schema wherever it is written (``RUN/trials.csv`` and
    ``RUN/analysis/trials.csv``): rank, trial_id, status, best metric and its epoch, epochs,
    compute seconds, the test metrics of the top-k, learnable weights, the parameters that
    vary, and where the trial ran."""
    import pandas as pd

    test = test or {}
    parameters = varying_parameters(trials)
    test_columns = sorted({name for result in test.values() for name in result if name.startswith("test/")})
    rows = []
    for position, (trial, value, epoch) in enumerate(rank(trials, metric), start=1):
        row: dict[str, Any] = {"rank": position, "trial_id": trial.trial_id, "status": trial.status,
                               best_column(metric): value, "best_epoch": epoch or None,
                               "epochs": trial.epochs_trained(), "time_s": round(trial.compute_seconds(), 1)}
        tested = test.get(trial.trial_id) or {}
        row.update({name: tested.get(name) for name in test_columns})
        row["params"] = trial.weights()
        row.update({key: trial.config.get(key) for key in parameters})
        row.update({"nodes": ";".join(trial.nodes(NODE_ID)), "node_ips": ";".join(trial.nodes(NODE_IP)),
                    "path": trial.path})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("best_epoch", "params"):  # whole numbers, blank where unknown
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame
