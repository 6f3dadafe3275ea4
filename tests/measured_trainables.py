"""A trainable that measures with ``run_trial``'s ``on_new_best`` hook, for the search tests.

Ray pickles it by value (the test registers this module with cloudpickle), so worker processes
need not import the tests.
"""

from __future__ import annotations

from visiontune.trainables import run_trial

MONITOR = "monitor/epoch_of_best"


def monitored_trainable(config, data, max_epochs, deadline=None, metric=None):
    """The real trial loop; each new best model reports the epoch it came from."""
    run_trial(config, data, max_epochs, deadline, metric, on_new_best=lambda trainer: {MONITOR: float(trainer.epoch)})
