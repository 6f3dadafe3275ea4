"""``visiontune`` with Ray Tune's experiment state frozen once it names a trial's checkpoint.

Ray saves that state (which checkpoint each trial resumes from) a moment after each report, so a
driver killed just after a report leaves a state one report behind the trial folders. This driver
holds that gap open: after the first save that names a checkpoint it saves nothing more, and the
trials go on reporting and checkpointing until the test kills it.

Usage: python frozen_state_driver.py search ...   (the arguments of ``visiontune``)
"""

from __future__ import annotations

import sys

from ray.tune.execution.tune_controller import TuneController

from visiontune.cli import main

_save_state = TuneController.checkpoint


def _checkpoint_until_a_trial_has_one(self, force: bool = False, wait: bool = False) -> None:
    if getattr(self, "_visiontune_frozen", False):
        return
    if any(trial.checkpoint is not None for trial in self._trials):
        _save_state(self, force=True, wait=True)  # on storage before anything else happens
        self._visiontune_frozen = True
    else:
        _save_state(self, force=force, wait=wait)


TuneController.checkpoint = _checkpoint_until_a_trial_has_one

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
