"""The search service: OptunaSearch + ASHA + resources + storage + resume (``visiontune search``).

``run_search(options)`` checks everything it can before Ray starts (options, the search space
by sampling it, warm-start points, the data), then builds a Ray Tune ``Tuner`` whose trials run
the task's trainable on the data placed once in Ray's object store, and finally ranks the
trials on validation and evaluates the top-k once on the test split. A search killed half-way
continues with ``resume=True`` from its run folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from visiontune import results, runs
from visiontune.config import config_from_dict
from visiontune.errors import ConfigError, VisiontuneError
from visiontune.search_spaces import SearchSpace, check_point_in_space, check_space, resolve_space
from visiontune.search_spaces.declarative import load_data_file
from visiontune.storage import RunStore, is_uri
from visiontune.tasks import get_task

SEARCH_FILE = "search.json"
TRIALS_FILE = "trials.csv"
TRIALS_JSON = "trials.json"
TEST_FILE = "test_results.json"
PARETO_FILE = "pareto.json"
PREDICTIONS_DIR = "predictions"
SEARCHERS = ("tpe", "random", "grid")
SCHEDULERS = ("asha", "none")
PARAMS_OBJECTIVE = "params"

# The report's best configurations (exercise 1.5 for MNIST, 2.2 for WARWICK): --warm-start report.
REPORT_BEST = {
    "mnist": {"model": "cnn", "blocks": 3, "width": 32, "activation": "relu", "pool_first": False,
              "batchnorm": True, "dropout": 0.0, "regularizer": "none", "optimizer": "adam", "lr": 0.001,
              "lr_schedule": "constant", "batch_size": 32, "augment": "none"},
    "warwick": {"model": "fcn2", "depth": 2, "width": 8, "batchnorm": True, "dropout": 0.0, "optimizer": "adam",
                "lr": 0.001, "lr_schedule": "constant", "batch_size": 64, "loss": "ce", "augment": "flip"},
}


@dataclass
class SearchOptions:
    """Everything that defines a search; recorded in ``search.json`` and reused by ``--resume``."""

    task: str
    space: str | None = None  # named space or YAML/JSON file; default: the task's full space
    trials: int | None = None  # default 16 (grid: the number of grid points)
    max_epochs: int = 10
    grace_period: int | None = None  # default: a tenth of max_epochs, at least 1
    reduction_factor: int = 3
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None
    seed: int = 0
    name: str | None = None
    storage: str = "runs"
    address: str | None = None
    searcher: str = "tpe"
    scheduler: str = "asha"
    time_budget: str | None = None
    warm_start: str | None = None
    objectives: str | None = None
    optuna_storage: str | None = None
    max_failures: int = 2
    top_k: int = 3
    report: bool = True  # write the analysis report (tables, figures, HTML) when the search ends
    reuse_actors: bool = True  # run trial after trial in the same worker process (no start-up per trial)
    fixed: dict[str, Any] = field(default_factory=dict)  # --set KEY=VALUE for every trial
    # data
    data_dir: str | None = None
    synthetic: bool = False
    val_size: int | None = None
    split_seed: int = 0
    train_limit: int | None = None
    download: bool = True


def default_grace_period(max_epochs: int) -> int:
    """ASHA's first rung: a tenth of the epochs (at least 1). Segmentation scores are noisy in
    the first epochs (the report saw little progress before epoch 20), so judging a trial
    after one epoch of sixty would stop slow starters that end up best."""
    return max(1, max_epochs // 10)


def parse_duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` -> seconds; a :class:`ConfigError` otherwise."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
    if not match or not any(match.groups()):
        raise ConfigError(f"--time-budget {text!r}: expected a duration such as 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--time-budget {text!r} must be positive")
    return total


def parse_objectives(text: str | None, metric: str) -> list[str] | None:
    """``val/acc,params`` -> the metric names of a two-objective search (None: one objective)."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) != 2 or names[0] != metric or names[1] != PARAMS_OBJECTIVE:
        raise ConfigError(f"--objectives {text!r}: supported is '{metric},{PARAMS_OBJECTIVE}' "
                          "(validation metric against learnable weights)")
    return names


def load_warm_start(spec: str | None, task: str) -> list[dict[str, Any]]:
    """Warm-start configurations: ``report`` (the report's best) or a YAML/JSON list of configs."""
    if not spec:
        return []
    if spec == "report":
        return [dict(REPORT_BEST[task])]
    data = load_data_file(spec)
    if isinstance(data, dict):
        data = data.get("configs", data.get("points"))
    if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
        raise ConfigError(f"{spec}: a warm-start file holds a non-empty list of configurations (mappings)")
    return data


class SpaceWithConstants:
    """A define-by-run space plus the search's fixed settings (picklable, for Ray's searcher state)."""

    def __init__(self, space: Callable, constants: dict[str, Any]) -> None:
        self.space = space
        self.constants = constants

    def __call__(self, trial) -> dict[str, Any]:
        return {**(self.space(trial) or {}), **self.constants}


def check_options(options: SearchOptions) -> tuple[SearchSpace, dict[str, Any], list[dict], float | None]:
    """Validate every option; returns (space, fixed settings, warm-start points, budget seconds)."""
    spec = get_task(options.task)
    if options.grace_period is None:
        options.grace_period = default_grace_period(options.max_epochs)
    positive_ints = {"max_epochs": options.max_epochs, "grace_period": options.grace_period,
                     "top_k": options.top_k}
    if options.trials is not None:
        positive_ints["trials"] = options.trials
    if options.concurrency is not None:
        positive_ints["concurrency"] = options.concurrency
    for name, value in positive_ints.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of at least 1, not {value}")
    if options.grace_period > options.max_epochs:
        raise ConfigError(f"--grace-period {options.grace_period} exceeds --max-epochs {options.max_epochs}")
    if options.reduction_factor < 2:
        raise ConfigError(f"--reduction-factor must be at least 2, not {options.reduction_factor}")
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures must be 0 or more, not {options.max_failures}")
    if not options.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be positive, not {options.cpus_per_trial}")
    gpus = options.gpus_per_trial
    if gpus < 0 or (gpus > 1 and not float(gpus).is_integer()):
        raise ConfigError(f"--gpus-per-trial must be a fraction of one GPU (0.25, 0.5) or a whole number, not {gpus}")
    if options.searcher not in SEARCHERS:
        raise ConfigError(f"--searcher must be one of {', '.join(SEARCHERS)}, not {options.searcher!r}")
    if options.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {options.scheduler!r}")
    budget = parse_duration(options.time_budget)
    objectives = parse_objectives(options.objectives, spec.val_metric)
    if objectives and options.searcher == "grid":
        raise ConfigError("--objectives needs the tpe or random searcher, not grid")
    if options.optuna_storage and options.searcher == "grid":
        raise ConfigError("--optuna-storage records an Optuna study; use the tpe or random searcher")

    space = resolve_space(options.task, options.space)
    for key in options.fixed:
        if key in ("task", "epochs"):
            raise ConfigError(f"--set {key}=...: {key} is set by the search itself")
    fixed = {"task": options.task, "epochs": options.max_epochs, **options.fixed}
    if space.has_rows and options.searcher != "grid":
        raise ConfigError(f"space {space.name!r} lists rows of settings: run it with --searcher grid")
    check_space(space, fixed)
    configs = space.grid_points() if space.has_rows else space.sample(32, options.seed)
    searched = {key for config in configs for key in config}
    clash = sorted(set(options.fixed) & searched)
    if clash:
        raise ConfigError(f"--set {', '.join(clash)}: the space {space.name!r} already sets or searches it; remove it from --set")
    if options.searcher == "grid":
        grid_size = len(space.grid_points())
        if options.trials not in (None, grid_size):
            raise ConfigError(f"a grid search runs every point of {space.name!r}: {grid_size} trials; "
                              f"drop --trials or give --trials {grid_size}")
    points = load_warm_start(options.warm_start, options.task)
    if points and options.searcher == "grid":
        raise ConfigError("--warm-start needs the tpe or random searcher; a grid runs fixed points")
    for index, point in enumerate(points):
        try:
            config_from_dict({**point, **fixed}, f"warm-start point {index + 1}")
            check_point_in_space(space, point, fixed)
        except ConfigError as error:
            raise ConfigError(f"--warm-start {options.warm_start}: point {index + 1}: {error}") from None
    return space, fixed, points, budget


# ---------------------------------------------------------------------------------------- Ray
class SearchInterrupted(VisiontuneError):
    """The search stopped before its trials ended (Ctrl-C); its state is saved for --resume."""


def quiet_ray_environment() -> None:
    """Ray Tune's own tables and advisory warnings off; visiontune prints its own progress.

    Read by Ray at import time, so this runs before ``import ray``; explicit settings win.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every epoch checkpoints, which forces an experiment-state snapshot: wanted (it is what
    # makes --resume exact), so the warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


class _TransientSyncRaceFilter(logging.Filter):
    """Drop Ray's report of a sync that raced with a temporary file being renamed.

    Ray stages experiment state in a local folder and copies it to storage in a background
    thread; a copy that lists a ``*-tmp-*`` file just before it is renamed fails with
    FileNotFoundError and is retried by the next snapshot. Other sync failures still show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


def start_or_connect_ray(options: SearchOptions, progress: Callable[[str], None]) -> bool:
    """Connect to ``--address`` or start a local Ray bound to loopback; True if we started it."""
    # Ray binds its ports to the machine's external address unless told it is a local-only
    # node; a local search needs no network, so keep every port on 127.0.0.1. Must be set
    # before ray is first imported (ray reads it at import time).
    if not options.address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    quiet_ray_environment()
    import ray

    logging.getLogger("ray.tune.execution.experiment_state").addFilter(_TransientSyncRaceFilter())
    # Ray logs every trial error with its traceback; the progress display names the error and
    # its error.txt instead, and the traceback stays in the run folder.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            if options.address:
                ray.init(address=options.address, **kwargs)
            else:
                ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = options.address or "a local Ray instance"
            raise VisiontuneError(f"cannot start or reach Ray at {where}: {' '.join(str(error).split())}") from None
    if not options.address:
        from ray.util import get_node_ip_address

        address = get_node_ip_address()
        if not address.startswith("127."):
            progress(f"warning: the local Ray node is on {address}, not loopback; "
                     "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting Python to keep it local")
    return True


def check_resources(options: SearchOptions, progress: Callable[[str], None]) -> None:
    """Refuse trials that can never be placed on a local machine; warn on a cluster."""
    import ray

    available = ray.cluster_resources()
    cpus, gpus = available.get("CPU", 0), available.get("GPU", 0)
    problems = []
    if options.cpus_per_trial > cpus:
        problems.append(f"--cpus-per-trial {options.cpus_per_trial} but Ray has {cpus:g} CPUs")
    if options.gpus_per_trial > gpus:
        problems.append(f"--gpus-per-trial {options.gpus_per_trial} but Ray has {gpus:g} GPUs")
    if not problems:
        return
    if options.address:
        progress(f"warning: {'; '.join(problems)}: trials wait until the autoscaler adds such nodes")
    else:
        raise ConfigError("; ".join(problems) + " on this machine")


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def grid_trials(space: SearchSpace, fixed: dict) -> list[dict[str, Any]]:
    """Every configuration of a grid search, in order: the space's points plus the fixed settings."""
    return [{**point, **fixed} for point in space.grid_points()]


def make_searcher(options: SearchOptions, space: SearchSpace, fixed: dict, points: list[dict], metric: str,
                  objectives: list[str] | None, deadline: float | None):
    """OptunaSearch (TPE or random, seeded) over the space plus the fixed settings; for a grid, Ray
    Tune's variant generator listing every point in order (a product of lists and rows of settings
    that belong together alike, which ``tune.grid_search`` cannot express)."""
    if options.searcher == "grid":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=grid_trials(space, fixed))
    import optuna

    from visiontune.tuning import VisiontuneOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if options.searcher == "tpe":
        # Start modelling after a quarter of the budget (Optuna's default waits for 10 random
        # trials, most of a 16-trial search); multivariate TPE with groups models the
        # conditional branches (FNN/CNN, SGD/Adam) jointly; constant liar spreads the trials
        # proposed while others are still running.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/group are flagged experimental
            sampler = optuna.samplers.TPESampler(
                seed=options.seed, constant_liar=True, multivariate=True, group=True,
                n_startup_trials=max(4, min(10, (options.trials or 16) // 4)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=options.seed)
    storage = None
    if options.optuna_storage:
        try:
            storage = optuna.storages.RDBStorage(options.optuna_storage)
        except Exception as error:  # noqa: BLE001 - sqlalchemy raises many kinds for a bad URL
            raise ConfigError(f"--optuna-storage {options.optuna_storage}: {' '.join(str(error).split())}") from None
    return VisiontuneOptunaSearch(
        space=SpaceWithConstants(space.define_by_run, dict(fixed)),
        metric=objectives or metric, mode=["max", "min"] if objectives else "max",
        points_to_evaluate=points or None, sampler=sampler, seed=options.seed,
        storage=storage, study_name=options.name, max_epochs=options.max_epochs, deadline=deadline,
    )


def make_scheduler(options: SearchOptions, metric: str, points: list[dict]):
    """ASHA on the validation metric (replacing the report's epsilon rule), or FIFO.

    Warm-start points are protected from early stopping (see ``tuning.WarmStartASHA``).
    """
    from ray.tune.schedulers import FIFOScheduler

    from visiontune.tuning import WarmStartASHA

    if options.scheduler == "none":
        return FIFOScheduler()
    return WarmStartASHA(points, time_attr="training_iteration", metric=metric, mode="max",
                         max_t=options.max_epochs, grace_period=options.grace_period,
                         reduction_factor=options.reduction_factor)


def wrapped_trainable(options: SearchOptions, data, deadline: float | None, trial_function: Callable | None = None):
    """The task's trainable with the data in the object store (once) and the trial's resources."""
    from ray import tune

    from visiontune.trainables import trainable_for

    function = trial_function or trainable_for(get_task(options.task).kind)
    with_data = tune.with_parameters(function, data=data, max_epochs=options.max_epochs, deadline=deadline)
    return tune.with_resources(with_data, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})


def build_tuner(options: SearchOptions, space: SearchSpace, fixed: dict, points: list[dict], trainable,
                store: RunStore, deadline: float | None, callbacks: list, stopper=None):
    """A new Ray Tune ``Tuner`` for the search."""
    from ray import tune

    metric = get_task(options.task).val_metric
    objectives = parse_objectives(options.objectives, metric)
    searcher = make_searcher(options, space, fixed, points, metric, objectives, deadline)
    param_space: dict[str, Any] = {}
    num_samples = options.trials or 16
    if options.searcher == "grid":
        grid = grid_trials(space, fixed)
        num_samples = len(grid)
        # Ray checks each listed point against the parameter space: declare every key with
        # the values it takes (every point sets the same keys, so nothing is ever sampled).
        for key in grid[0]:
            values: list = []
            for point in grid:
                if point[key] not in values:
                    values.append(point[key])
            param_space[key] = tune.choice(values)
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=make_scheduler(options, metric, points),
        num_samples=num_samples,
        max_concurrent_trials=options.concurrency,
        trial_dirname_creator=_trial_dirname,
        # A new worker process per trial costs seconds (process start, importing torch); the
        # trial loop keeps no state between trials, so the next trial can reuse the process.
        reuse_actors=options.reuse_actors,
    )
    run_config = tune.RunConfig(
        name=options.name,
        storage_path=store.storage_path,
        verbose=0,
        callbacks=callbacks,
        stop=stopper,
        # Ray keeps the best checkpoint by the validation metric, and always the latest one
        # too (resume needs it): at most two per trial, whatever the length of the search.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                checkpoint_score_order="max"),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _record(options: SearchOptions, space: SearchSpace, splits, store: RunStore) -> dict[str, Any]:
    spec = get_task(options.task)
    return {
        "visiontune_search": 1,
        "name": options.name,
        "task": options.task,
        "metric": spec.val_metric,
        "space": {"name": space.name, "description": space.description},
        "options": asdict(options),
        "data": splits.describe(),
        **runs.provenance(),
        "location": store.location,
    }


def load_recorded_options(store: RunStore) -> SearchOptions:
    """The options a search was started with, from its ``search.json``."""
    if not store.exists(SEARCH_FILE):
        raise ConfigError(f"{store.location}: no search to resume here (no {SEARCH_FILE}); check --name and --storage")
    try:
        recorded = json.loads(store.read_text(SEARCH_FILE))["options"]
    except (ValueError, KeyError) as error:
        raise ConfigError(f"{store.location}/{SEARCH_FILE}: unreadable search record ({error})") from None
    known = {f.name for f in fields(SearchOptions)}
    return SearchOptions(**{k: v for k, v in recorded.items() if k in known})


def print_now(line: str) -> None:
    """Print and flush at once, so progress shows live when output goes to a file or a pipe."""
    print(line, flush=True)


def run_search(options: SearchOptions, resume: bool = False, progress: Callable[[str], None] = print_now,
               trial_function: Callable | None = None, status_interval_s: float = 20.0,
               stopper=None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search; returns its summary.

    ``trial_function`` replaces the task's trainable (tests use it to inject faults; the
    search-efficiency benchmark to measure). ``stopper`` (a ``ray.tune.Stopper``) can end a new
    search early; the benchmark ends its searches once it has what it measures.
    """
    from visiontune.data import load_splits

    if resume:
        store = RunStore(options.storage, options.name or "")
        recorded = load_recorded_options(store)
        recorded.address, recorded.storage = options.address, options.storage
        recorded.time_budget = options.time_budget or None
        options = recorded
    else:
        options.name = options.name or runs.default_run_name("search", options.task)
        store = RunStore(options.storage, options.name)
        if store.exists():
            raise ConfigError(f"{store.location} already exists; continue it with --resume --name {options.name} "
                              "or choose another --name")
    space, fixed, points, budget = check_options(options)
    splits = load_splits(options.task, data_dir=options.data_dir, synthetic=options.synthetic,
                         val_size=options.val_size, split_seed=options.split_seed,
                         train_limit=options.train_limit, download=options.download)
    started_ray = start_or_connect_ray(options, progress)
    import ray
    from ray import tune

    from visiontune.progress import ProgressPrinter

    try:
        check_resources(options, progress)
        _warn_local_storage_on_cluster(options, progress)
        metric = get_task(options.task).val_metric
        deadline = time.time() + budget if budget else None
        trainable = wrapped_trainable(options, splits, deadline, trial_function)
        total = (len(space.grid_points()) if options.searcher == "grid"
                 else options.trials or 16)
        printer = ProgressPrinter(metric, total, options.max_epochs, interval_s=status_interval_s, emit=progress)
        if resume:
            if not tune.Tuner.can_restore(store.location):
                raise ConfigError(f"{store.location}: Ray Tune has no experiment state to resume from")
            tuner = tune.Tuner.restore(store.location, trainable, resume_unfinished=True, resume_errored=False)
            tuner._local_tuner._run_config.callbacks = [printer]  # fresh progress, not the pickled one
            progress(f"resuming search {options.name} ({store.location})")
        else:
            store.write_text(SEARCH_FILE, json.dumps(_record(options, space, splits, store), indent=2, default=str))
            tuner = build_tuner(options, space, fixed, points, trainable, store, deadline, [printer], stopper)
            progress(f"search {options.name}: {total} trials of space {space.name!r} on {options.task} "
                     f"[{splits.sizes()['train']}/{splits.sizes()['val']}/{splits.sizes()['test']}], "
                     f"{options.searcher} + {options.scheduler}, up to {options.max_epochs} epochs, "
                     f"{options.cpus_per_trial:g} CPU / {options.gpus_per_trial:g} GPU per trial -> {store.location}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_started = time.perf_counter()
            result_grid = tuner.fit()
            fit_seconds = time.perf_counter() - fit_started
        stopped_by_request = stopper is not None and stopper.stop_all()
        if printer.unfinished and not stopped_by_request:  # Ctrl-C: Tune saved its state and returned early
            raise SearchInterrupted(f"search interrupted with {len(printer.unfinished)} trials unfinished; "
                                    f"continue it with: visiontune search --resume --name {options.name} "
                                    f"--storage {options.storage}")
        summary = finish_search(result_grid, options, splits, store, metric, deadline, progress)
        summary["fit_s"] = fit_seconds  # the trials' phase alone, without data loading and the test look
    finally:
        if started_ray:
            ray.shutdown()
    if options.report:
        summary["report"] = write_report(store, options, progress)
    return summary


def write_report(store: RunStore, options: SearchOptions, progress: Callable[[str], None]) -> str | None:
    """The analysis report of a finished search, where its run folder is on this machine."""
    if store.local_dir is None:
        progress(f"report: fetch {store.location} and run visiontune analyze on it")
        return None
    from visiontune.analysis import analyze_run

    report = analyze_run(store.local_dir, top=options.top_k, progress=lambda line: None)
    progress(f"report: {report}")
    return str(report)


def _warn_local_storage_on_cluster(options: SearchOptions, progress: Callable[[str], None]) -> None:
    """On a cluster of several nodes, a local --storage path must be visible to every node."""
    import ray

    if options.address and not is_uri(options.storage):
        alive = [node for node in ray.nodes() if node.get("Alive")]
        if len(alive) > 1:
            progress(f"note: {len(alive)} nodes share this search: every node must see --storage "
                     f"{options.storage} (an NFS mount or one machine's folder); on cloud clusters use "
                     "--storage s3://... (README: Cluster runbook)")


def finish_search(result_grid, options: SearchOptions, splits, store: RunStore, metric: str,
                  deadline: float | None, progress: Callable[[str], None]) -> dict[str, Any]:
    """Rank the trials, evaluate the top-k on test once, write the run folder's summary files."""
    summaries = results.summarize(result_grid, metric, options.max_epochs, deadline, store.root)
    ranked = results.rank(summaries)
    test, predictions = results.evaluate_top_k(result_grid, ranked, metric, splits, options.top_k, progress)
    frame = results.trials_frame(ranked, metric, test)
    store.write_text(TRIALS_FILE, frame.to_csv(index=False))
    store.write_text(TRIALS_JSON, json.dumps(results.summaries_as_dicts(ranked), indent=2, default=str))
    store.write_text(TEST_FILE, json.dumps({"metric": metric, "split": splits.describe(), "trials": test},
                                           indent=2, default=str))
    for trial_id, data in predictions.items():
        store.write_bytes(f"{PREDICTIONS_DIR}/{trial_id}.npz", data)
    objectives = parse_objectives(options.objectives, metric)
    front = results.pareto_front(summaries) if objectives else []
    if objectives:
        store.write_text(PARETO_FILE, json.dumps(
            [{"trial_id": s.trial_id, metric: s.best_value, "params": s.params, "config": s.config} for s in front],
            indent=2))
    counts: dict[str, int] = {}
    for summary in summaries:
        counts[summary.status] = counts.get(summary.status, 0) + 1
    summary = {"name": options.name, "location": store.location, "trials": len(summaries), "status": counts,
               "metric": metric, "top": test, "pareto": [s.trial_id for s in front]}
    _print_ranking(frame, metric, options.top_k, counts, store.location, progress)
    return summary


def _print_ranking(frame, metric: str, top_k: int, counts: dict[str, int], location: str,
                   progress: Callable[[str], None]) -> None:
    import pandas as pd

    shown = frame.drop(columns=[c for c in ("path", "nodes", "node_ips", "params") if c in frame]).head(max(top_k, 5))
    with pd.option_context("display.max_columns", None, "display.width", 160, "display.float_format",
                           lambda v: f"{v:.4g}"):
        table = shown.to_string(index=False)
    progress(f"\n{sum(counts.values())} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    progress(f"top trials by {metric} (validation; test metrics once, for the top {top_k}):\n{table}")
    progress(f"run folder: {location}")
