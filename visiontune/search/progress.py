"""A concise progress display for a search, replacing Ray Tune's verbose tables.

One line when a trial ends (how it ended, its best validation metric) and a status line at most
every ``interval_s`` seconds: trials running / finished / stopped / failed, the best validation
metric so far, and the elapsed time.
"""

from __future__ import annotations

import time
from typing import Callable

from ray.tune import Callback

from visiontune.record import EPOCH, RAY_ERROR, RAY_TERMINATED, Status, best_name, trial_status


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"



class ProgressPrinter(Callback):
    """Emits trial endings and a periodic status line (to standard output by default)."""

    def __init__(self, metric: str, total_trials: int, max_epochs: int, interval_s: float = 20.0,
                 emit: Callable[[str], None] = print) -> None:
        self.emit = emit
        self.metric = metric
        self.total_trials = total_trials
        self.max_epochs = max_epochs
        self.interval_s = interval_s
        self.started = time.time()
        self.last_status = 0.0
        self.last_repeat = 0.0
        self.last_text = ""
        self.unfinished: list[str] = []  # trials left running or pending when the run stopped
        # Trials that really ended in this run. Tune's clean-up after Ctrl-C marks the trials it
        # stops TERMINATED without calling on_trial_complete, so status alone cannot tell a
        # finished trial from an interrupted one.
        self.ended: set[str] = set()
        self.seen: set[str] = set()  # trials that ran in this run (not only restored as finished)

    def setup(self, **info):
        """Called by Tune when the run (or its resumption) starts: begin counting afresh."""
        self.started = time.time()
        self.last_status = self.last_repeat = 0.0
        self.last_text = ""

    def _print(self, line: str) -> None:
        self.emit(f"[{format_duration(time.time() - self.started):>6}] {line}")

    @staticmethod
    def _error_summary(trial) -> str:
        """The last line of a trial's error (the exception and its message)."""
        try:
            error = trial.get_pickled_error()
        except Exception:  # noqa: BLE001 - an unreadable error file must not break the display
            error = None
        if error is None:
            return "see its error.txt"
        cause = getattr(error, "cause", None) or error
        return " ".join(f"{type(cause).__name__}: {cause}".split())[:300]

    def _best_of(self, result: dict) -> float | None:
        value = result.get(best_name(self.metric), result.get(self.metric))
        return None if value is None else float(value)

    def _ending(self, trial) -> str:
        """How a trial that is no longer running ended (record.trial_status)."""
        return trial_status(trial.last_result, max_epochs=self.max_epochs, errored=trial.status == RAY_ERROR)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.seen.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        result = trial.last_result or {}
        epoch = result.get(EPOCH)
        how = {Status.SKIPPED: "ended before its first epoch (time budget)",
               Status.DIVERGED: f"diverged in epoch {epoch}",
               Status.FINISHED: f"finished {epoch} epochs",
               Status.STOPPED: f"stopped after epoch {epoch}",
               Status.BUDGET: f"stopped after epoch {epoch} (time budget)"}[self._ending(trial)]
        value = self._best_of(result)
        shown = f", best {self.metric} {value:.4f}" if value is not None and epoch else ""
        self._print(f"trial {trial.trial_id} {how}{shown}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        self._print(f"trial {trial.trial_id} failed after its retries: {self._error_summary(trial)} "
                    f"(traceback: trial_{trial.trial_id}/error.txt)")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._print(f"trial {trial.trial_id} raised {self._error_summary(trial)}; retrying from its last checkpoint")

    def on_experiment_end(self, trials, **info):
        self.unfinished = [t.trial_id for t in trials
                           if t.status not in (RAY_TERMINATED, RAY_ERROR) or self._stopped_by_cleanup(t)]

    def _stopped_by_cleanup(self, trial) -> bool:
        """A trial this run started that Tune's end-of-run clean-up, not its own end, terminated."""
        return trial.status == RAY_TERMINATED and trial.trial_id in self.seen and trial.trial_id not in self.ended

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self.last_status < self.interval_s:
            return
        self.last_status = now
        # Counted from the trials themselves, so a resumed search shows its earlier trials too.
        running = sum(1 for t in trials if t.status == "RUNNING")
        ended = [self._ending(t) for t in trials if t.status in (RAY_TERMINATED, RAY_ERROR)]
        counts = {kind: ended.count(kind) for kind in
                  (Status.FINISHED, Status.STOPPED, Status.BUDGET, Status.DIVERGED, Status.FAILED)}
        scores = [(self._best_of(t.last_result), t.trial_id) for t in trials
                  if t.last_result and t.last_result.get(EPOCH)]
        scores = [(value, trial_id) for value, trial_id in scores if value is not None]
        best = max(scores) if scores else None
        shown = f"best {self.metric} {best[0]:.4f} ({best[1]})" if best else "no result yet"
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        text = (f"{len(trials)}/{self.total_trials} trials started, {running} running"
                f"{', ' + summary if summary else ''} | {shown}")
        if text == self.last_text and now - self.last_repeat < 6 * self.interval_s:
            return  # nothing new: say it again only now and then, as a sign of life
        self.last_text, self.last_repeat = text, now
        self._print(text)
