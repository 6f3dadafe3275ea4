"""Bounded disk for long searches: delete the checkpoints of trials that can no longer matter.

Every trial keeps its best and its latest checkpoint while it runs (resume and retries need
the latest; the top-k test evaluation needs the best). Once a trial has ended and at least
``top_k`` ended trials rank before it (``record.rank``'s order: best validation value, then the
earlier epoch, then the id), it can never be among the top-k that are evaluated on test, so its
checkpoints go; its reports and configuration stay. A 200-trial search thus keeps checkpoints
for at most ``top_k`` ended trials plus those still running.
"""

from __future__ import annotations

from ray.tune import Callback

from visiontune.record import BEST_EPOCH, CHECKPOINT_PREFIX, EPOCH, RAY_ERROR, RAY_TERMINATED, best_name, rank_key, \
    trial_dirname
from visiontune.storage import RunStore


class CheckpointRetention(Callback):
    """A Tune callback on the driver that deletes checkpoints no top-k evaluation can need."""

    def __init__(self, store: RunStore, metric: str, top_k: int) -> None:
        self.store = store
        self.metric = metric
        self.top_k = top_k
        # Ended trials: those whose end this run saw, and those restored as ended on --resume.
        # Tune's clean-up after Ctrl-C marks running trials TERMINATED without an end callback;
        # those resume later and must keep their checkpoints, so status alone is not enough.
        self.ended: set[str] = set()
        self.pruned: set[str] = set()
        self.deleted = 0  # checkpoints deleted in this run
        self._restored_seen = False

    def on_step_begin(self, iteration, trials, **info):
        if not self._restored_seen:
            self._restored_seen = True
            self.ended |= {t.trial_id for t in trials if t.status in (RAY_TERMINATED, RAY_ERROR)}
            self.prune(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        self.prune(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        self.prune(trials)

    def _standing(self, trial) -> tuple:
        """The trial's rank key from its last report (the best-so-far it carries)."""
        report = trial.last_result or {}
        epoch = int(report.get(BEST_EPOCH) or 0) if report.get(EPOCH) else 0
        value = report.get(best_name(self.metric)) if epoch else None
        return rank_key(None if value is None else float(value), epoch, trial.trial_id, self.metric)

    def prune(self, trials) -> None:
        """Delete the checkpoints of every ended trial that ``top_k`` ended trials rank before."""
        ended = sorted((self._standing(t), t.trial_id) for t in trials if t.trial_id in self.ended)
        for position, (key, trial_id) in enumerate(ended):
            without_value = key[0]
            if trial_id in self.pruned or (position < self.top_k and not without_value):
                continue
            folder = trial_dirname(trial_id)
            for name in self.store.list_dir(folder):
                if name.startswith(CHECKPOINT_PREFIX):
                    self.store.delete_dir(f"{folder}/{name}")
                    self.deleted += 1
            self.pruned.add(trial_id)
