"""Resume each trial from the newest checkpoint it completed, whatever Ray's saved state says.

Ray Tune copies its experiment state (which checkpoint each trial resumes from) and the trials'
``result.json`` to storage a moment after each report, in the background, while a trial writes
its checkpoints straight to storage and Ray deletes a superseded one at once. A driver killed in
between leaves storage one report behind the trial folders:

- the checkpoint the state names may be gone, and the trial would then fail on every restore
  ("Could not recover from checkpoint as it does not exist on storage anymore");
- or it is still there, and the trial would train the epochs after it a second time.

The trial loop therefore writes each checkpoint with the trial's reports up to it beside it
(``record.CHECKPOINT_REPORT``, with the size its state file has when complete). On resume, an
unfinished trial whose folder holds a complete checkpoint newer than the one the state names
continues from the newest: Ray's book-keeping of its checkpoints is rebuilt from the folder, the
reports missing from ``result.json`` are restored from the checkpoints, and its next checkpoint
goes into the folder after the newest rather than over it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback

from visiontune.record import (CHECKPOINT_PREFIX, CHECKPOINT_REPORT, EPOCH, RAY_PENDING, REPORTED_CHECKPOINT,
                               RESULT_FILE, STATE_FILE, TRAINING_ITERATION, TRIAL_ID, read_checkpoint_reports,
                               trial_dirname)
from visiontune.runs import atomic_write_text
from visiontune.storage import RunStore

class CheckpointRecovery(Callback):
    """A Tune callback on the driver: before a resumed search starts its trials again, point each
    unfinished one at the newest checkpoint it completed."""

    def __init__(self, store: RunStore, progress: Callable[[str], None]) -> None:
        self.store = store
        self.progress = progress
        self.recovered: dict[str, str] = {}  # trial id -> the checkpoint folder it resumes from
        self._checked = False

    def on_step_begin(self, iteration, trials, **info):
        if self._checked:
            return
        self._checked = True  # the first step comes before any restored trial is started again
        for trial in trials:
            if trial.status != RAY_PENDING:
                continue
            name = self.recover(trial)
            if name:
                self.recovered[trial.trial_id] = name
                self.progress(f"trial {trial.trial_id} resumes from {name} (epoch {trial.last_result.get(EPOCH)}), "
                              f"the newest checkpoint it wrote; Ray's saved state was behind it")

    def complete_checkpoints(self, trial_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """(folder name, the trial's reports up to it) for each checkpoint still complete in the
        trial's folder, oldest first."""
        folder = trial_dirname(trial_id)
        complete = []
        for name in self.store.list_dir(folder):
            if not name.startswith(CHECKPOINT_PREFIX):
                continue
            try:
                reports, state_bytes = read_checkpoint_reports(
                    self.store.read_text(f"{folder}/{name}/{CHECKPOINT_REPORT}"))
                _index(name)
            except (OSError, ValueError):  # cut short, or from before checkpoints held reports
                continue
            if reports and self.store.file_size(f"{folder}/{name}/{STATE_FILE}") == state_bytes:
                complete.append((name, reports))  # (a state file of another size: its copy was cut short)
        return sorted(complete, key=lambda item: _index(item[0]))

    @staticmethod
    def ray_report(trial_id: str, report: dict[str, Any], number: int) -> dict[str, Any]:
        """Report ``number`` (from 1) as Ray writes it: with its checkpoint folder and report count.
        Every report but a trial's last (a divergence, a skip) comes with a checkpoint, in order,
        so report N came with checkpoint folder N - 1."""
        return {**report, REPORTED_CHECKPOINT: f"{CHECKPOINT_PREFIX}{number - 1:06d}",
                TRAINING_ITERATION: number, TRIAL_ID: trial_id}

    def recover(self, trial) -> str | None:
        """Continue ``trial`` from its newest complete checkpoint if Ray's saved state names an
        older one (or one that is gone, or none); returns that checkpoint's folder, or None."""
        from ray.train import Checkpoint
        from ray.train._internal.checkpoint_manager import _CheckpointManager, _TrainingResult

        complete = self.complete_checkpoints(trial.trial_id)
        if not complete:
            return None
        newest, history = complete[-1]
        self._restore_reports(trial, history, _index(newest) + 1)  # the state may be right, result.json behind
        named = trial.checkpoint
        if named is not None and named.path.rstrip("/").rsplit("/", 1)[-1] == newest:
            return None
        storage = trial.storage
        manager = _CheckpointManager(checkpoint_config=trial.run_metadata.checkpoint_manager.checkpoint_config)
        for name, reports in complete:  # in order, so that Ray keeps and deletes as it did while the trial ran
            manager.register_checkpoint(_TrainingResult(
                checkpoint=Checkpoint(path=f"{storage.trial_fs_path}/{name}", filesystem=storage.storage_filesystem),
                metrics=self.ray_report(trial.trial_id, reports[-1], _index(name) + 1)))
        trial.run_metadata.checkpoint_manager = manager
        trial.update_last_result(self.ray_report(trial.trial_id, history[-1], _index(newest) + 1))
        # Ray's index of a trial's newest checkpoint folder: a trial adds one before it writes the
        # next, which therefore goes after the newest rather than over it.
        storage.current_checkpoint_index = _index(newest)
        trial.invalidate_json_state()
        return newest

    def _restore_reports(self, trial, history: list[dict[str, Any]], last_number: int) -> None:
        """Add to the trial's ``result.json`` the reports of ``history`` (its last is report
        ``last_number``) after the file's last line.

        Both copies: the one on storage, which Ray's logger copies back when the trial starts
        again, and the driver's staging copy, which Ray copies over the one on storage before
        that (the staging folder outlives a killed driver within one Ray session)."""
        relative = f"{trial_dirname(trial.trial_id)}/{RESULT_FILE}"
        lines: list[str] = []
        try:
            for line in self.store.read_text(relative).splitlines():
                try:
                    json.loads(line)
                except ValueError:  # a line cut short by the kill: nothing after it was copied
                    break
                lines.append(line)
        except OSError:
            pass
        # History starts at report 1, or later after a resume from a checkpoint without reports.
        first_number = last_number - len(history) + 1
        missing = [json.dumps(self.ray_report(trial.trial_id, history[number - first_number], number))
                   for number in range(max(len(lines) + 1, first_number), last_number + 1)]
        if not missing:
            return
        text = "".join(line + "\n" for line in lines + missing)
        self.store.write_text(relative, text)
        staging = Path(trial.storage.trial_driver_staging_path)
        staging.mkdir(parents=True, exist_ok=True)
        atomic_write_text(staging / RESULT_FILE, text)


def _index(checkpoint_folder: str) -> int:
    """The number of a checkpoint folder: 3 for checkpoint_000003."""
    return int(checkpoint_folder.removeprefix(CHECKPOINT_PREFIX))
