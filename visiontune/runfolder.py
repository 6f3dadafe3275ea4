"""The one reader of run folders: a search's (``search.json``, the trials, ``trials.json``, the
test results, the checkpoints, ``cv/cv.json``, ``reseed/reseed.json``) and a ``train`` run's.

Analysis, predict, export, the model layer, the selection commands and reproduce read run
folders through this module only; the file names, report keys and statuses it reads are the run
record's (``visiontune.record``). It works on a finished search, on one still running (statuses
then come from Ray Tune's experiment state), and on a folder moved elsewhere (every path is
taken relative to the folder). A damaged file in one trial (a truncated ``result.json``) becomes
a warning for that trial, not a crash; a missing or unreadable summary file is a one-line error.

What a folder holds as a model (a train run's, a search's top K by validation, its
cross-validation's fold ensemble) is :func:`model_members`: the card, each member's
configuration and checkpoint, and the figures the run recorded for them.
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

CV_ENSEMBLE = "cv"  # --ensemble cv: the fold models of the cross-validation's winner


def read_json(path: Path, what: str) -> Any:
    """A JSON file's contents; a one-line :class:`VisiontuneError` naming the file where it is
    missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VisiontuneError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as error:
        raise VisiontuneError(f"{path}: cannot read {what} ({' '.join(str(error).split())})") from None


def _card(data: dict[str, Any] | None, where: Path) -> DatasetCard:
    if not data:
        raise VisiontuneError(f"{where}: no data-set card recorded (a run from before visiontune recorded one)")
    return DatasetCard.from_dict(data)


# ------------------------------------------------------------------------------- checkpoints
def _reports(trial_folder: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Every report of a trial from Ray's result.json (one JSON object per line)."""
    path = trial_folder / record.RESULT_FILE
    if not path.is_file():
        progress = trial_folder / record.PROGRESS_FILE
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
            warnings.append(f"{path}: line {number} is truncated or corrupt; kept the {len(rows)} epochs before it")
            break
    return rows


def best_checkpoint(trial_folder: Path, metric: str, best_epoch: int) -> Path | None:
    """The state file of the kept checkpoint with the trial's best validation ``metric``
    (``record.choose_checkpoint``, the rule the top-k's test evaluation used); None where none is
    kept (deleted as outside the top-k, or the search still running)."""
    kept = []
    for report in _reports(trial_folder, []):
        name = report.get(record.REPORTED_CHECKPOINT)
        if name and (trial_folder / name / record.STATE_FILE).is_file():
            kept.append((name, report.get(metric), report.get(record.EPOCH)))
    chosen = record.choose_checkpoint(kept, best_epoch)
    return trial_folder / chosen / record.STATE_FILE if chosen else None


def last_checkpoint(trial_folder: Path, epoch: int) -> Path:
    """The state file of a trial's checkpoint of ``epoch`` (a refit's last: nothing chose one)."""
    for report in reversed(_reports(trial_folder, [])):
        name = report.get(record.REPORTED_CHECKPOINT)
        if report.get(record.EPOCH) == epoch and name and (trial_folder / name / record.STATE_FILE).is_file():
            return trial_folder / name / record.STATE_FILE
    raise VisiontuneError(f"{trial_folder}: no checkpoint of epoch {epoch}")


# ----------------------------------------------------------------------------------- searches
@dataclass
class MemberRef:
    """One member of a model as a run folder holds it: its configuration (as it trained) and the
    checkpoint with its weights (a trial's full state, or a train run's ``best.pt``)."""

    config: dict[str, Any]
    checkpoint: Path


@dataclass
class SearchRun:
    """A search's run folder, read."""

    folder: Path
    search: dict[str, Any]  # search.json
    trials: list[TrialRecord]
    test: dict[str, dict[str, Any]]  # test_results.json's trials
    ensemble_test: dict[str, Any]  # test_results.json's ensemble of the top-k: members and test figures
    pareto: list[dict[str, Any]]
    complete: bool  # the search ended and wrote its summary
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.search.get("name") or self.folder.name)

    @property
    def task(self) -> str:
        return str(self.search["task"])

    @property
    def card(self) -> DatasetCard:
        """The card of the data set searched on, as the search recorded it (``search.json``)."""
        recorded = (self.search.get("data") or {}).get("card")
        if recorded is None:
            raise VisiontuneError(f"{self.folder}: {record.SEARCH_FILE} holds no data-set card (a search from "
                                  "before visiontune recorded one); rerun the search to analyse it")
        return DatasetCard.from_dict(recorded)

    @property
    def metric(self) -> str:
        return str(self.search["metric"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.search.get("options") or {})

    @property
    def max_epochs(self) -> int:
        return int(self.options.get("max_epochs") or 0)

    @property
    def space_name(self) -> str | None:
        return (self.search.get("space") or {}).get("name")

    def data_options(self, data_dir: str | None = None):
        """The data options the search loaded its data with (``data.options.DataOptions``), never
        downloading; ``data_dir`` where the data now lie elsewhere."""
        from visiontune.data.options import DataOptions
        from visiontune.options import known_values

        options = known_values(DataOptions, self.options)
        options.update(download=False, **({"data_dir": data_dir} if data_dir else {}))
        return DataOptions(**options)

    def override_data_options(self, **values: Any) -> None:
        """Change data options for what retrains this search's configurations (``analyze
        --data-memory-gb``); the run folder's ``search.json`` stays as it is."""
        self.search["options"] = {**self.options, **values}

    def load_splits(self, data_dir: str | None = None):
        """The search's data, loaded and split as it was."""
        return self.data_options(data_dir).load_splits(self.task)

    def ranked(self, metric: str | None = None) -> list[tuple[TrialRecord, float, int]]:
        """Trials with a value of ``metric`` (default the search's), best first (``record.rank``)."""
        return [(t, v, e) for t, v, e in record.rank(self.trials, metric or self.metric) if v is not None]

    def trial(self, trial_id: str) -> TrialRecord:
        """The trial of that id."""
        for trial in self.trials:
            if trial.trial_id == trial_id:
                return trial
        raise VisiontuneError(f"{self.folder}: no trial {trial_id}")

    def checkpoint(self, trial: TrialRecord, metric: str | None = None) -> Path:
        """The state file of ``trial``'s best epoch by ``metric`` (default the search's)."""
        metric = metric or self.metric
        value, epoch = trial.best(metric)
        found = best_checkpoint(self.folder / trial.path, metric, epoch) if value is not None else None
        if found is None:
            raise VisiontuneError(f"{self.folder / trial.path}: no checkpoint of trial {trial.trial_id}'s best epoch "
                                  "(deleted as outside the top-k, or the search is still running)")
        return found

    def prediction_file(self, trial_id: str) -> Path | None:
        """The saved test predictions of a top-k trial."""
        path = self.folder / record.PREDICTIONS_DIR / f"{trial_id}.npz"
        return path if path.is_file() else None

    def cv(self) -> dict[str, Any] | None:
        """The latest cross-validation's record (``cv/cv.json``), or None where there is none."""
        path = self.folder / record.CV_DIR / record.CV_FILE
        return read_json(path, "the cross-validation record") if path.is_file() else None

    def reseed(self) -> dict[str, Any] | None:
        """The latest reseeding's record (``reseed/reseed.json``), or None where there is none."""
        path = self.folder / record.RESEED_DIR / record.RESEED_FILE
        return read_json(path, "the reseeding record") if path.is_file() else None

    def top_members(self, count: int) -> list[MemberRef]:
        """The ``count`` best trials by validation, each at its best epoch's checkpoint."""
        ranked = self.ranked()
        if len(ranked) < count:
            raise VisiontuneError(f"{self.folder}: {len(ranked)} trials with a validation result, fewer than the "
                                  f"{count} asked for")
        return [MemberRef(trial.trained_config(), self.checkpoint(trial)) for trial, _, _ in ranked[:count]]

    def cv_members(self) -> list[MemberRef]:
        """The fold models of the latest cross-validation's winner."""
        summary = self.cv()
        if summary is None:
            raise VisiontuneError(f"{self.folder}: no cross-validation yet "
                                  f"({self.folder / record.CV_DIR / record.CV_FILE} missing); run visiontune analyze "
                                  f"{self.folder} --cv 5 first")
        try:
            winner = summary["ranking"][0]
            members = []
            for member in winner["members"]:
                found = best_checkpoint(self.folder / member["path"], summary["metric"], member["best_epoch"])
                if found is None:
                    raise VisiontuneError(f"{self.folder / member['path']}: the fold model's checkpoint is missing")
                members.append(MemberRef(dict(winner["config"]), found))
            return members
        except (KeyError, IndexError, TypeError) as error:
            raise VisiontuneError(f"{self.folder / record.CV_DIR / record.CV_FILE}: not a cross-validation record "
                                  f"({type(error).__name__}: {error})") from None

    def recorded_figures(self, count: int) -> dict[str, Any]:
        """What the search recorded about its ``count`` best trials: how they were chosen, and
        their validation and test figures."""
        ranked = sorted(self.test.values(), key=lambda entry: entry["rank"])[:count]
        members = [{key: value for key, value in entry.items() if key != "config"} for entry in ranked]
        figures = {"selection": f"trials ranked by their best {self.metric} (validation); the epoch of each chosen "
                                "on validation; test evaluated once, after the search, for the top-k",
                   "members": members}
        if count == 1 and members:
            figures["test"] = {k: v for k, v in members[0].items() if k.startswith("test/")}
        elif len(self.ensemble_test.get("members", [])) == count:  # the top-k's ensemble, as the search tested it
            figures["test"] = {k: v for k, v in self.ensemble_test.items() if k.startswith("test/")}
        return figures

    def cv_figures(self) -> dict[str, Any]:
        """What the latest cross-validation recorded about its winner's fold ensemble."""
        summary = self.cv() or {}
        winner = summary["ranking"][0]
        return {"selection": summary["selection"], "folds": summary["folds"], "images": summary["images"],
                "members": winner["members"],
                "out_of_fold": {k: v for k, v in winner.items() if k.startswith("oof/")},
                "fold_mean": winner["fold_mean"], "fold_std": winner["fold_std"],
                "validation_one_split": winner["val_one_split"], "test": winner.get("ensemble_test", {})}


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


def _trial_config(trial_folder: Path, reports: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    path = trial_folder / record.PARAMS_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            warnings.append(f"{path}: unreadable; configuration unknown")
    if reports and isinstance(reports[0].get("config"), dict):
        return reports[0]["config"]
    return {}


def _trial(trial_folder: Path, final: dict[str, Any], ray_statuses: dict[str, str], max_epochs: int) -> TrialRecord:
    """One trial of a search folder: its reports, configuration and how it stands."""
    trial_id = trial_folder.name.removeprefix(record.TRIAL_PREFIX)
    warnings: list[str] = []
    reports = _reports(trial_folder, warnings)
    config = _trial_config(trial_folder, reports, warnings)
    if trial_id in final:
        config = final[trial_id].get("config") or config
        status, error = final[trial_id]["status"], final[trial_id].get("error", "")
    else:  # the search has not ended: where Ray's state is unknown, an error file without reports failed
        ray_status = ray_statuses.get(trial_id)
        errored = ray_status is None and (trial_folder / record.ERROR_FILE).is_file() and not reports
        status = record.trial_status(reports[-1] if reports else None, max_epochs=max_epochs, errored=errored,
                                     ray_status=ray_status)
        error = ""
    return TrialRecord(trial_id, trial_folder.name, config, record.epochs_frame(reports), status, error, warnings)


def load_search(folder: str | Path) -> SearchRun:
    """Read a search's run folder; a :class:`VisiontuneError` if it is not one."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VisiontuneError(f"{folder}: no such run folder")
    if not (folder / record.SEARCH_FILE).is_file():
        raise VisiontuneError(f"{folder}: not a visiontune search folder (no {record.SEARCH_FILE})")
    search = read_json(folder / record.SEARCH_FILE, "the search's record")
    max_epochs = int((search.get("options") or {}).get("max_epochs") or 0)
    final = {}
    if (folder / record.TRIALS_JSON).is_file():
        final = {str(t["trial_id"]): t for t in read_json(folder / record.TRIALS_JSON, "the trial summaries")}
    ray_statuses = {} if final else _ray_statuses(folder)
    trials = [_trial(trial_folder, final, ray_statuses, max_epochs)
              for trial_folder in sorted(p for p in folder.glob(f"{record.TRIAL_PREFIX}*") if p.is_dir())]
    warnings = [f"trial {trial.trial_id}: {warning}" for trial in trials for warning in trial.warnings]
    tested = read_json(folder / record.TEST_FILE, "the test results") if (folder / record.TEST_FILE).is_file() else {}
    pareto = read_json(folder / record.PARETO_FILE, "the Pareto front") if (folder / record.PARETO_FILE).is_file() else []
    return SearchRun(folder, search, trials, tested.get("trials", {}), tested.get("ensemble", {}), pareto,
                     complete=bool(final), warnings=warnings)


# -------------------------------------------------------------------------------- train runs
@dataclass
class TrainRun:
    """A ``visiontune train`` run folder, read."""

    folder: Path
    config: dict[str, Any]  # config.json: as it trained (precision resolved)
    data: dict[str, Any]  # data.json

    @property
    def card(self) -> DatasetCard:
        return _card(self.data.get("card"), self.folder / record.DATA_FILE)

    def members(self) -> list[MemberRef]:
        return [MemberRef(dict(self.config), self.folder / record.BEST_CHECKPOINT)]

    def recorded_figures(self) -> dict[str, Any]:
        """The test figures of the best epoch, as the run recorded them."""
        result = read_json(self.folder / record.RESULT_FILE, "the run's result")
        return {"selection": "the epoch chosen on validation; test evaluated once, after training",
                "members": [{key: value for key, value in result.items() if key.startswith(("test/", "best_"))}],
                "test": {key: value for key, value in result.items() if key.startswith("test/")}}


def load_train(folder: str | Path) -> TrainRun:
    """Read a ``train`` run folder."""
    folder = Path(folder)
    data = read_json(folder / record.DATA_FILE, "the run's data record") or {}
    return TrainRun(folder, read_json(folder / record.CONFIG_FILE, "the run's configuration") or {}, data)


# ---------------------------------------------------------------------------- what is a model
@dataclass
class ModelMembers:
    """What a run folder holds as a model: the card, the members and the figures recorded."""

    card: DatasetCard
    members: list[MemberRef]
    figures: dict[str, Any]
    source: Path


def model_members(folder: str | Path, ensemble: int | str = 1) -> ModelMembers:
    """The model of a train run folder, of a search's ``ensemble`` best trials by validation, or
    (``ensemble="cv"``) of its latest cross-validation's winner's fold models."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VisiontuneError(f"{folder}: not a run folder (a train or search run's, or an exported model's)")
    if ensemble != CV_ENSEMBLE and (not isinstance(ensemble, int) or isinstance(ensemble, bool) or ensemble < 1):
        raise VisiontuneError(f"--ensemble must be a number of trials (at least 1) or 'cv', not {ensemble}")
    if (folder / record.SEARCH_FILE).is_file():
        run = load_search(folder)
        if ensemble == CV_ENSEMBLE:
            return ModelMembers(run.card, run.cv_members(), run.cv_figures(), folder)
        return ModelMembers(run.card, run.top_members(ensemble), run.recorded_figures(ensemble), folder)
    if ensemble == CV_ENSEMBLE:
        raise VisiontuneError(f"{folder}: --ensemble cv needs a search run folder that analyze --cv has "
                              "cross-validated")
    if (folder / record.BEST_CHECKPOINT).is_file():
        if ensemble != 1:
            raise VisiontuneError(f"{folder}: a train run holds one model; --ensemble needs a search run folder")
        run = load_train(folder)
        return ModelMembers(run.card, run.members(), run.recorded_figures(), folder)
    raise VisiontuneError(f"{folder}: holds neither {record.SEARCH_FILE} (a search), {record.BEST_CHECKPOINT} (a train "
                          f"run) nor {record.MODEL_CARD} (an exported model)")


__all__ = ["CV_ENSEMBLE", "MemberRef", "ModelMembers", "SearchRun", "TrainRun", "best_checkpoint", "last_checkpoint",
           "load_search", "load_train", "model_members", "read_json"]
