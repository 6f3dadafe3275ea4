"""The search service (``visiontune search``): Optuna proposes, ASHA stops, Ray Tune runs.

Anything that trains many configurations goes through :func:`run_search` (a search, the retrains
of ``analyze --reseed``, the fold trainings of ``analyze --cv``, the report's studies), so GPU fractions, clusters, retries, resume and
bounded disk apply to all of them. Its modules, one concern each:

- ``options``: :class:`SearchOptions` (the CLI is generated from it) and the checks that make a
  :class:`SearchPlan` before Ray starts;
- ``session``: a local Ray on loopback or ``--address``; resource checks;
- ``tuner``: the Ray Tune ``Tuner`` (searcher, scheduler, trainable, storage, its restoration);
  ``algorithms``: visiontune's subclasses of Ray Tune's searcher and scheduler;
- ``progress``: the live display; ``retention``: deleting checkpoints no one can need;
- ``recovery``: on resume, each trial goes on from the newest checkpoint it completed;
- ``finish``: ranking, the one look at test for the top-k (through the model layer,
  ``trained``), the run folder's summary files.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from visiontune import runs
from visiontune.data import task_label
from visiontune.errors import ConfigError, SearchInterrupted
from visiontune.data.placement import Placement, by_key, place
from visiontune.record import CACHED_DATA_DIR, SEARCH_FILE
from visiontune.search.options import (REPORT_BEST, RESUME_OPTIONS, SearchOptions, SearchPlan, TrialResources,
                                       check_numbers, check_options, load_recorded_options, load_warm_start, parse_duration,
                                       search_record)
from visiontune.search.session import check_resources, ray_session, warn_local_storage_on_cluster
from visiontune.storage import RunStore


def print_now(line: str) -> None:
    """Print and flush at once, so progress shows live when output goes to a file or a pipe."""
    print(line, flush=True)


def _run_folder(options: SearchOptions, resume: bool) -> tuple[SearchOptions, RunStore]:
    """The options and run folder of a new search, or of the one to resume (options as recorded)."""
    if resume:
        store = RunStore(options.storage, options.name or "")
        recorded = load_recorded_options(store)
        recorded.address, recorded.storage = options.address, options.storage
        recorded.time_budget = options.time_budget or None
        return recorded, store
    options.name = options.name or runs.default_run_name("search", task_label(options.task))
    store = RunStore(options.storage, options.name)
    if store.exists():
        raise ConfigError(f"{store.location} already exists; continue it with --resume --name {options.name} "
                          "or choose another --name")
    return options, store


def run_search(options: SearchOptions, resume: bool = False, progress: Callable[[str], None] = print_now,
               trial_function: Callable | None = None, status_interval_s: float = 20.0,
               stopper=None, data=None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search; returns its summary. The analysis report
    (``options.report``) is the caller's to write: ``visiontune search`` runs ``analysis`` on the
    run folder afterwards; the search service itself renders nothing.

    ``trial_function`` replaces the task's trainable (tests use it to inject faults; the
    search-efficiency benchmark to measure). ``stopper`` (a ``ray.tune.Stopper``) can end a new
    search early; the benchmark ends its searches once it has what it measures. ``data`` (a
    ``DataSplits``) replaces loading the task's data: the GPU placement benchmark searches a
    generated set larger than a quarter of a GPU's memory, which no folder could be decoded into
    in its time.
    """
    options, store = _run_folder(options, resume)
    check_numbers(options)  # what needs no data, before loading it
    splits = options.load_splits(options.task) if data is None else data
    if options.cv_folds:  # a fold search: train+validation pooled and dealt into folds; no test images
        from visiontune.data.folds import pooled_for_cv, refit_splits

        splits = pooled_for_cv(splits, options.cv_folds, options.split_seed)
        if options.cv_refit:
            splits = refit_splits(splits)
    plan = check_options(options, splits.card)  # everything checked before Ray starts or a file is written
    with ray_session(options.address, progress):
        from visiontune.search import finish, tuner
        from visiontune.search.progress import ProgressPrinter
        from visiontune.search.recovery import CheckpointRecovery
        from visiontune.search.retention import CheckpointRetention

        check_resources(options.cpus_per_trial, options.gpus_per_trial, bool(options.address), progress)
        warn_local_storage_on_cluster(options.address, options.storage, progress)
        placement = _place(options, plan, splits, store, progress)
        splits = dataclasses.replace(place(splits, placement, local=not options.address),
                                     placement=placement.where, storage=(store.storage_path, store.name))
        if options.address:  # each node maps its own copy of a cached data set, copied once from the storage
            ship_cache_entries(splits, store)
            trial_splits = by_key(splits)
        else:
            trial_splits = splits
        plan.start_clock()
        printer = ProgressPrinter(plan.metric, plan.total_trials, options.max_epochs, status_interval_s, progress)
        retention = CheckpointRetention(store, plan.metric, options.top_k)
        # Recovery first: on resume it corrects the checkpoints trials restart from before any starts.
        relay = tuner.register_callbacks(options.name, [CheckpointRecovery(store, progress), printer, retention])
        trainable = tuner.wrapped_trainable(options, plan, trial_splits, trial_function)
        if resume:
            search = tuner.restore_tuner(store, trainable, tuner.grid_param_space(options, plan))
            progress(f"resuming search {options.name} ({store.location})")
        else:
            store.write_text(SEARCH_FILE, runs.json_text({**search_record(options, plan, splits, store),
                                                           "placement": placement.to_dict()}))
            search = tuner.build_tuner(options, plan, trainable, store, relay, stopper)
            progress(_start_line(options, plan, splits, store))
            if plan.portfolio:
                progress(_portfolio_line(plan))
        try:
            started = time.perf_counter()
            result_grid = tuner.fit(search)
            fit_seconds = time.perf_counter() - started
        finally:
            tuner.unregister_callbacks(options.name)
        if printer.unfinished and not (stopper is not None and stopper.stop_all()):  # Ctrl-C: state saved
            raise SearchInterrupted(f"search interrupted with {len(printer.unfinished)} trials unfinished; "
                                    f"continue it with: visiontune search --resume --name {options.name} "
                                    f"--storage {options.storage}")
        summary = finish.finish_search(result_grid, options, plan, splits, store, retention.deleted, progress)
        summary["fit_s"] = fit_seconds  # the trials' phase alone, without data loading and the test look
    return summary


def trials_per_node(options: SearchOptions, plan: SearchPlan) -> int:
    """The most trials one node runs at once: its CPUs and GPUs over a trial's, at most the
    concurrency and the number of trials (the largest node of a cluster)."""
    import ray

    most = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        fits = int(resources.get("CPU", 0) // options.cpus_per_trial)
        if options.gpus_per_trial:
            fits = min(fits, int(resources.get("GPU", 0) // options.gpus_per_trial))
        most = max(most, fits)
    return max(1, min(most or 1, options.concurrency or plan.total_trials, plan.total_trials))


def _place(options: SearchOptions, plan: SearchPlan, splits, store: RunStore, progress) -> Placement:
    """Where the trials keep the data (``data.placement``), checked against the memory of a node
    before any trial starts, and printed."""
    from visiontune.data.placement import plan_for

    chosen = plan_for(splits, options, trials_per_node(options, plan), options.gpus_per_trial)
    progress(chosen.line())
    return chosen


def ship_cache_entries(splits, store: RunStore) -> None:
    """On a cluster, copy the cache entries the trials map into the run's storage (once), where
    each node copies them from once (``data.placement.received``)."""
    from pathlib import Path

    from visiontune.data.placement import stores

    for part in stores(splits):
        if part.folder is not None:
            store.upload_folder(Path(part.folder), f"{CACHED_DATA_DIR}/{Path(part.folder).name}")


def _start_line(options: SearchOptions, plan: SearchPlan, splits, store: RunStore) -> str:
    sizes = splits.sizes()
    return (f"search {options.name}: {plan.total_trials} trials of space {plan.space.name!r} on {options.task} "
            f"[{sizes['train']}/{sizes['val']}/{sizes['test']}], {options.searcher} + {options.scheduler}, "
            f"up to {options.max_epochs} epochs, {options.cpus_per_trial:g} CPU / {options.gpus_per_trial:g} GPU "
            f"per trial -> {store.location}")


def _portfolio_line(plan: SearchPlan) -> str:
    count = len(plan.portfolio)
    return (f"portfolio: {count} configuration{'s' if count > 1 else ''} that searched best on other data sets "
            f"{'go' if count > 1 else 'goes'} first (listed in {SEARCH_FILE})")


__all__ = ["REPORT_BEST", "RESUME_OPTIONS", "SearchInterrupted", "SearchOptions", "SearchPlan", "TrialResources",
           "check_options", "load_warm_start", "parse_duration", "run_search"]
