"""Trainables that fail on purpose, for the fault-tolerance tests.

Ray pickles these by value (the test registers this module with cloudpickle), so worker
processes need not import the tests. A retried trial runs in a fresh process, so attempts are
counted with marker files in ``MARKER_DIR``, which the test sets before the search starts.
"""

from __future__ import annotations

from pathlib import Path

from visiontune.trainables import run_trial

MARKER_DIR = "/nonexistent"
FLAKY_LR = 0.003  # raises once, in epoch 2, then succeeds when retried from its checkpoint
BROKEN_LR = 0.004  # raises in epoch 2 every time


def flaky_trainable(config, data, max_epochs, deadline=None, metric=None):
    """Runs the real trial loop, but stops with an error in epoch 2 as configured above."""
    from ray import tune

    markers = Path(MARKER_DIR)
    markers.mkdir(parents=True, exist_ok=True)
    attempt = len([p for p in markers.glob(f"{config['lr']}-*") if "resumed" not in p.name])
    (markers / f"{config['lr']}-{attempt}").touch()
    checkpoint = tune.get_checkpoint()
    (markers / f"{config['lr']}-{attempt}-resumed-{checkpoint is not None}").touch()
    if config["lr"] == BROKEN_LR or (config["lr"] == FLAKY_LR and attempt == 0):
        if checkpoint is None:
            run_trial(config, data, 1, deadline)  # one good epoch, checkpointed, then the failure
        raise RuntimeError(f"injected failure (attempt {attempt})")
    run_trial(config, data, max_epochs, deadline, metric)
