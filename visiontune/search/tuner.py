"""The Ray Tune ``Tuner`` of a search: searcher, scheduler, trainable, storage, checkpoints,
retries; and its restoration for ``--resume``.

Callbacks reach the Tuner through a :class:`CallbackRelay`: Ray pickles a search's run
configuration (callbacks included) with its state, and ``Tuner.restore`` brings back those
pickled copies. The relay pickles as a key alone and forwards every hook to the callbacks that
the current driver registered under that key, so a resumed search reports to this run's
progress display, without touching the restored Tuner's private attributes.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from ray import tune
from ray.tune import Callback

from visiontune import record
from visiontune.errors import ConfigError
from visiontune.search.options import SearchOptions, SearchPlan
from visiontune.search_spaces import SearchSpace
from visiontune.storage import RunStore

_LIVE_CALLBACKS: dict[str, list[Callback]] = {}


class CallbackRelay(Callback):
    """Forwards Tune's callback hooks to the callbacks registered for one search (by its key)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _each(self, hook: str, *args, **kwargs) -> None:
        for callback in _LIVE_CALLBACKS.get(self.key, []):
            getattr(callback, hook)(*args, **kwargs)

    def setup(self, *args, **kwargs):
        self._each("setup", *args, **kwargs)

    def on_step_begin(self, *args, **kwargs):
        self._each("on_step_begin", *args, **kwargs)

    def on_step_end(self, *args, **kwargs):
        self._each("on_step_end", *args, **kwargs)

    def on_trial_start(self, *args, **kwargs):
        self._each("on_trial_start", *args, **kwargs)

    def on_trial_restore(self, *args, **kwargs):
        self._each("on_trial_restore", *args, **kwargs)

    def on_trial_save(self, *args, **kwargs):
        self._each("on_trial_save", *args, **kwargs)

    def on_trial_result(self, *args, **kwargs):
        self._each("on_trial_result", *args, **kwargs)

    def on_trial_complete(self, *args, **kwargs):
        self._each("on_trial_complete", *args, **kwargs)

    def on_trial_recover(self, *args, **kwargs):
        self._each("on_trial_recover", *args, **kwargs)

    def on_trial_error(self, *args, **kwargs):
        self._each("on_trial_error", *args, **kwargs)

    def on_checkpoint(self, *args, **kwargs):
        self._each("on_checkpoint", *args, **kwargs)

    def on_experiment_end(self, *args, **kwargs):
        self._each("on_experiment_end", *args, **kwargs)


def register_callbacks(key: str, callbacks: list[Callback]) -> CallbackRelay:
    """Make ``callbacks`` the ones a search's relay (new or restored) forwards to."""
    _LIVE_CALLBACKS[key] = list(callbacks)
    return CallbackRelay(key)


def unregister_callbacks(key: str) -> None:
    """Forget a search's callbacks once it has ended."""
    _LIVE_CALLBACKS.pop(key, None)


class SpaceWithConstants:
    """A define-by-run space plus the search's fixed settings (picklable, for Ray's searcher state)."""

    def __init__(self, space: Callable, constants: dict[str, Any]) -> None:
        self.space = space
        self.constants = constants

    def __call__(self, trial) -> dict[str, Any]:
        return {**(self.space(trial) or {}), **self.constants}


def _trial_dirname(trial) -> str:
    return record.trial_dirname(trial.trial_id)


def grid_trials(space: SearchSpace, fixed: dict) -> list[dict[str, Any]]:
    """Every configuration of a grid search, in order: the space's points plus the fixed settings."""
    return [{**point, **fixed} for point in space.grid_points()]


def make_searcher(options: SearchOptions, plan: SearchPlan):
    """OptunaSearch (TPE or random, seeded; the portfolio searcher is TPE after its portfolio) over the space plus the fixed settings; for a grid, Ray
    Tune's variant generator listing every point in order (a product of lists and rows of settings
    that belong together alike, which ``tune.grid_search`` cannot express)."""
    if options.searcher == "grid":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=grid_trials(plan.space, plan.fixed))
    import optuna

    from visiontune.search.algorithms import VisiontuneOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if options.searcher in ("tpe", "portfolio"):
        # Start modelling after a quarter of the budget (Optuna's default waits for 10 random
        # trials, most of a 16-trial search); multivariate TPE with groups models the
        # conditional branches (FNN/CNN, SGD/Adam) jointly; constant liar spreads the trials
        # proposed while others are still running.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/group are flagged experimental
            sampler = optuna.samplers.TPESampler(
                seed=options.seed, constant_liar=True, multivariate=True, group=True,
                n_startup_trials=max(4, min(10, plan.total_trials // 4)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=options.seed)
    storage = None
    if options.optuna_storage:
        try:
            storage = optuna.storages.RDBStorage(options.optuna_storage)
        except Exception as error:  # noqa: BLE001 - sqlalchemy raises many kinds for a bad URL
            raise ConfigError(f"--optuna-storage {options.optuna_storage}: {' '.join(str(error).split())}") from None
    return VisiontuneOptunaSearch(
        space=SpaceWithConstants(plan.space.define_by_run, dict(plan.fixed)),
        metric=plan.objectives or plan.metric, mode=["max", "min"] if plan.objectives else "max",
        points_to_evaluate=[*plan.points, *plan.portfolio] or None, sampler=sampler, seed=options.seed,
        storage=storage, study_name=options.name, max_epochs=options.max_epochs, deadline=plan.deadline,
    )


def make_scheduler(options: SearchOptions, plan: SearchPlan):
    """ASHA on the validation metric (replacing the report's epsilon rule), or FIFO.

    Warm-start points are protected from early stopping (see ``algorithms.WarmStartASHA``).
    """
    from ray.tune.schedulers import FIFOScheduler

    from visiontune.search.algorithms import WarmStartASHA

    if options.scheduler == "none":
        return FIFOScheduler()
    return WarmStartASHA(plan.points, time_attr="training_iteration", metric=plan.metric, mode="max",
                         max_t=options.max_epochs, grace_period=plan.grace_period,
                         reduction_factor=options.reduction_factor)


def wrapped_trainable(options: SearchOptions, plan: SearchPlan, data, trial_function: Callable | None = None):
    """The task's trainable with the data in the object store (once) and the trial's resources."""
    from visiontune.trainables import run_trial

    function = trial_function or run_trial
    with_data = tune.with_parameters(function, data=data, max_epochs=options.max_epochs, deadline=plan.deadline,
                                     metric=plan.metric)
    return tune.with_resources(with_data, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})


def grid_param_space(options: SearchOptions, plan: SearchPlan) -> dict[str, Any]:
    """The parameter space Ray checks a grid's listed points against: every key with the values
    it takes (every point sets the same keys, so nothing is ever sampled); empty for the other
    searchers, whose space is their own."""
    if options.searcher != "grid":
        return {}
    grid = grid_trials(plan.space, plan.fixed)
    param_space: dict[str, Any] = {}
    for key in grid[0]:
        values: list = []
        for point in grid:
            if point[key] not in values:
                values.append(point[key])
        param_space[key] = tune.choice(values)
    return param_space


def build_tuner(options: SearchOptions, plan: SearchPlan, trainable, store: RunStore, relay: CallbackRelay,
                stopper=None) -> tune.Tuner:
    """A new Ray Tune ``Tuner`` for the search."""
    tune_config = tune.TuneConfig(
        search_alg=make_searcher(options, plan),
        scheduler=make_scheduler(options, plan),
        num_samples=plan.total_trials,
        max_concurrent_trials=options.concurrency,
        trial_dirname_creator=_trial_dirname,
        # A new worker process per trial costs seconds (process start, importing torch); the
        # trial loop keeps no state between trials, so the next trial can reuse the process.
        reuse_actors=not options.fresh_worker_per_trial,
    )
    run_config = tune.RunConfig(
        name=options.name,
        storage_path=store.storage_path,
        verbose=0,
        callbacks=[relay],
        stop=stopper,
        # Ray keeps the best checkpoint by the validation metric, and always the latest one
        # too (resume needs it); search.retention deletes both once a trial has ended and can
        # no longer be among the top-k.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=plan.metric,
                                                checkpoint_score_order="max"),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
    )
    return tune.Tuner(trainable, param_space=grid_param_space(options, plan), tune_config=tune_config,
                      run_config=run_config)


def restore_tuner(store: RunStore, trainable, param_space: dict[str, Any] | None = None) -> tune.Tuner:
    """The Tuner of an interrupted search, from its run folder: unfinished trials resume from their
    last checkpoint; finished and failed ones stay as they ended. A grid search passes its
    ``param_space`` again: Ray does not bring it back, and a grid interrupted before it had
    listed every point would fail its check of the points still to come (KeyError)."""
    if not tune.Tuner.can_restore(store.location):
        raise ConfigError(f"{store.location}: Ray Tune has no experiment state to resume from")
    return tune.Tuner.restore(store.location, trainable, resume_unfinished=True, resume_errored=False,
                              param_space=param_space or None)


def fit(tuner: tune.Tuner):
    """Run the trials; returns Ray Tune's ``ResultGrid``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuner.fit()
