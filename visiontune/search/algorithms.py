"""visiontune's subclasses of Ray Tune's searcher and scheduler.

Imported only once Ray's environment is set (``search.session.start_or_connect_ray``), since importing
this module imports ray. Both classes live at module level so that Ray can pickle them into
the experiment state that ``--resume`` restores.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from visiontune.record import DIVERGED, EPOCH, PARAMS, best_name

logger = logging.getLogger(__name__)


class VisiontuneOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna what a visiontune trial really achieved.

    - a trial's value is its *best* validation metric, not its last epoch's;
    - a trial stopped early (ASHA, time budget) is told as pruned, keeping its intermediate
      values, so TPE does not take a short trial's score for a finished one's;
    - with two objectives, the values are (best metric, learnable weights);
    - no new trial is proposed once the time budget's ``deadline`` has passed.
    """

    def __init__(self, *args, max_epochs: int, deadline: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.deadline = deadline

    def suggest(self, trial_id: str):
        if self.deadline is not None and time.time() >= self.deadline:
            return Searcher.FINISHED
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        metric = self.metric[0] if isinstance(self.metric, list) else self.metric
        result = result or {}
        best = result.get(best_name(metric))
        if error or best is None or not result.get(EPOCH):
            state, values = TrialState.FAIL, None
        elif isinstance(self.metric, list):
            state, values = TrialState.COMPLETE, [best, result.get(PARAMS)]
        elif result[EPOCH] < self.max_epochs and not result.get(DIVERGED):
            state, values = TrialState.PRUNED, None
        else:
            state, values = TrialState.COMPLETE, best
        try:
            self._ot_study.tell(self._ot_trials[trial_id], values, state=state)
        except Exception as exc:  # noqa: BLE001 - a tell that Optuna refuses must not stop the search
            logger.warning("optuna refused the result of trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)


def matches(config: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a trial's config is the warm-start ``point`` (every key the point sets agrees)."""
    return all(config.get(key) == value for key, value in point.items() if key in config)


class WarmStartASHA(ASHAScheduler):
    """ASHA that lets warm-start trials (the report's best, say) run to the end.

    A warm start is there so that a search can only improve on it; stopping it at the first
    rung would defeat that. Its results still enter the rungs and so shape the cut-offs.
    """

    def __init__(self, protected: list[dict[str, Any]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.protected = protected

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t \
                and any(matches(trial.config, point) for point in self.protected):
            return TrialScheduler.CONTINUE
        return action
