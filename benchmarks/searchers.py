"""Searchers compared on several tasks: trial-epochs (and seconds) until a search first holds a
model at each task's test target, median over seeds, and the anytime curve.

Methods (searchers and schedulers read validation only; the test figure is this benchmark's
measurement, as in ``search_efficiency.py``, whose monitored trial loop it uses):

- ``random``: random search, every trial trained to the end (the baseline);
- ``random+asha``: random search, ASHA stopping weak trials;
- ``tpe+asha``: TPE with ASHA (visiontune's default before the portfolio);
- ``one-epoch``: every candidate trained one epoch, the three best by validation then trained
  from scratch to the end (Egele et al. 2023);
- ``portfolio``: ``--searcher portfolio``, the default since this benchmark: the best
  configurations of *other* tasks of the same kind first (leave-one-task-out: the portfolio
  file's entries of the task being measured are never used), then TPE, with ASHA.

Tasks (``TASKS``): WARWICK over its full ``warwick`` space, MNIST on a 2,000-image training
subset over ``mnist``, and two data sets made from scikit-image's texture photographs
(``own_tasks.py``): ``textures`` (classification) and ``texture-seg`` (segmentation).

A search "first holds" a model at the target at the end of the first epoch at which some trial's
best-by-validation model scores at least the target on test; the figure is the number of
trial-epochs the whole search had completed by then. A search ends there, unless
``--full-searches``. The anytime curve is the test figure of the search's best-by-validation
model (over all its trials) against trial-epochs; after a search has ended, its last value is
carried on.

``--fit-portfolio`` runs one TPE + ASHA search per task (seed 1000, not among the benchmark's
seeds; ``--fit-trials``) and writes each task's two best configurations by validation into
``visiontune/search/portfolio.json``, keeping the other tasks' entries.

    python benchmarks/searchers.py --quick                  # 1 seed, the three small tasks
    python benchmarks/searchers.py --seeds 5 --tasks mnist-small,textures,texture-seg
    python benchmarks/searchers.py --fit-portfolio --tasks mnist-small,textures,texture-seg
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_efficiency  # noqa: E402
from common import RESULTS_DIR, describe, git_revision, machine  # noqa: E402
from own_tasks import write_task  # noqa: E402
from search_efficiency import MONITOR, monitored_trial  # noqa: E402

METHODS = ("random", "random+asha", "tpe+asha", "one-epoch", "portfolio")
ONE_EPOCH_KEEP = 3  # one-epoch: candidates trained to the end
PORTFOLIO_SEED = 1000  # --fit-portfolio's search seed: not one of the benchmark's
PORTFOLIO_PER_TASK = 2


@dataclass(frozen=True)
class Task:
    """One benchmark task: its data, space, target and search budget."""

    source: str  # a built-in task, or an own_tasks name (written into a temporary folder)
    threshold: float  # the test figure a search must first hold
    trials: int
    epochs: int
    space: str | None = None  # default: the data set's full space
    data: dict[str, Any] = field(default_factory=dict)  # data options (train_limit, val_size)
    own: bool = False
    quick: tuple[int, int] | None = None  # (trials, epochs) of --quick


TASKS = {
    "warwick": Task("warwick", 0.83, trials=24, epochs=60, space="warwick", quick=(12, 30)),
    "mnist-small": Task("mnist", 0.93, trials=16, epochs=6, space="mnist",
                        data={"train_limit": 2000, "val_size": 1000}),
    "textures": Task("textures", 0.50, trials=16, epochs=10, own=True, data={"val_size": 300}),
    "texture-seg": Task("texture-seg", 0.45, trials=16, epochs=15, own=True, data={"val_size": 60}),
}
QUICK_TASKS = ("mnist-small", "textures", "texture-seg")


class EpochLimit:
    """A Tune stopper: every trial ends after ``epochs`` epochs (the one-epoch screen); with
    ``threshold``, the whole search ends once a trial's best model reaches it on test."""

    def __init__(self, epochs: int | None, threshold: float | None):
        self.epochs, self.threshold, self.reached = epochs, threshold, False

    def __call__(self, trial_id, result):
        if self.threshold is not None and result.get(MONITOR, float("-inf")) >= self.threshold:
            self.reached = True
        return self.epochs is not None and result.get("training_iteration", 0) >= self.epochs

    def stop_all(self):
        return self.reached


def _stopper(epochs: int | None, threshold: float | None):
    from ray import tune

    # Tune wants a subclass of its Stopper; made here so that importing this script needs no ray.
    return type("BenchmarkStopper", (EpochLimit, tune.Stopper), {})(epochs, threshold)


def task_path(name: str, folder: Path) -> str:
    """What ``visiontune search`` is given for the task: a built-in name or the own set's folder."""
    task = TASKS[name]
    return str(write_task(task.source, folder)) if task.own else task.source


def run_method(method: str, task_name: str, seed: int, budget: tuple[int, int], folder: Path,
               data_dir: str | None, stop_at: float | None, name_prefix: str = "") -> list[Path]:
    """Run one method on one task with one seed; its run folders, in the order they ran."""
    from visiontune.search import SearchOptions, run_search

    task = TASKS[task_name]
    trials, epochs = budget
    common = dict(task=task_path(task_name, folder), space=task.space, cpus_per_trial=1, storage=str(folder / "runs"),
                  report=False, top_k=1, data_dir=data_dir, seed=seed, max_epochs=epochs, **task.data)
    name = f"{name_prefix}{task_name}-{method}-seed{seed}"

    def search(options: SearchOptions, epoch_limit: int | None = None) -> bool:
        stopper = _stopper(epoch_limit, stop_at)
        run_search(options, progress=lambda line: None, trial_function=monitored_trial, stopper=stopper)
        return stopper.reached

    if method == "one-epoch":
        from visiontune.runfolder import load_search

        screen = folder / "runs" / f"{name}-screen"
        if search(SearchOptions(searcher="random", scheduler="none", trials=trials, name=screen.name, **common),
                  epoch_limit=1):
            return [screen]
        ranked = load_search(screen).ranked()[:ONE_EPOCH_KEEP]
        points = folder / f"{name}-keep.json"
        points.write_text(json.dumps([{k: v for k, v in t.config.items() if k not in ("task", "epochs")}
                                      for t, _, _ in ranked]))
        search(SearchOptions(searcher="random", scheduler="none", trials=len(ranked), warm_start=str(points),
                             name=f"{name}-keep", **common))
        return [screen, folder / "runs" / f"{name}-keep"]
    searcher, scheduler = {"random": ("random", "none"), "random+asha": ("random", "asha"),
                           "tpe+asha": ("tpe", "asha"), "portfolio": ("portfolio", "asha")}[method]
    search(SearchOptions(searcher=searcher, scheduler=scheduler, trials=trials, name=name, **common))
    return [folder / "runs" / name]


def measure(runs: list[Path], threshold: float) -> dict[str, Any]:
    """Trial-epochs and seconds until the searches (one after another) first held a model at
    ``threshold`` on test, and their anytime curve, from their run folders."""
    from visiontune.runfolder import load_search

    rows, metric = [], None  # every epoch of every trial: (timestamp, trial, validation, monitor)
    for run in runs:
        searched = load_search(run)
        metric = searched.metric
        for trial in searched.trials:
            for row in trial.epochs.to_dict("records"):
                rows.append((row["timestamp"], f"{run.name}/{trial.trial_id}", row.get(metric), row.get(MONITOR)))
    return {"metric": metric, **reach_and_curve(rows, threshold)}


def _number(value) -> float | None:
    return None if value is None or value != value else float(value)


def reach_and_curve(rows: list[tuple], threshold: float) -> dict[str, Any]:
    """From every epoch of a search, ``(timestamp, trial, validation figure, monitor)``, where the
    monitor is the test figure of that trial's best-by-validation model so far: the trial-epochs
    and seconds until some trial's model first scored ``threshold`` (``trial_epochs_to_reach``,
    absent if never), and the anytime curve ``[trial-epochs, seconds, test figure]`` of the
    search's best-by-validation model over all its trials."""
    rows = sorted(rows, key=lambda row: row[0])
    start = rows[0][0] if rows else 0.0
    best_of: dict[str, tuple[float, float]] = {}  # trial -> (its best validation, its best model's test figure)
    curve, tested, reached_at = [], [], None
    for count, (stamp, trial, val, test) in enumerate(rows, start=1):
        val, test = _number(val), _number(test)
        if test is None:
            continue
        tested.append([count, round(stamp - start, 1), round(test, 4)])  # the reach at a lower target, later
        best_val = max(best_of.get(trial, (float("-inf"),))[0], val if val is not None else float("-inf"))
        best_of[trial] = (best_val, test)
        if reached_at is None and test >= threshold:
            reached_at = (count, stamp - start)
        curve.append([count, round(stamp - start, 1), max(best_of.values(), key=lambda pair: pair[0])[1]])
    result = {"trial_epochs_total": len(rows), "trials": len(best_of),
              "best_test": max((test for _, test in best_of.values()), default=None), "curve": curve,
              "tested": tested, "best_by_val_test": curve[-1][2] if curve else None}
    if reached_at:
        result["trial_epochs_to_reach"], result["seconds_to_reach"] = reached_at[0], round(reached_at[1], 1)
    return result


def median_curve(curves: list[list], step: int, end: int) -> list[list[float]]:
    """The median over seeds of the anytime curves, every ``step`` trial-epochs up to ``end``
    (a search that ended earlier carries its last value on)."""
    points = []
    for at in range(step, end + 1, step):
        values = []
        for curve in curves:
            before = [value for count, _, value in curve if count <= at]
            if before:
                values.append(before[-1])
        if values:
            points.append([at, statistics.median(values)])
    return points


def fit_portfolio(task_names: list[str], folder: Path, data_dir: str | None, quick: bool,
                  trials: int | None = None) -> Path:
    """Search each task once (TPE + ASHA, seed PORTFOLIO_SEED, ``trials`` trials, validation only)
    and write its best configurations into the portfolio file, keeping other tasks' entries."""
    from visiontune.runfolder import load_search
    from visiontune.search.portfolio import PORTFOLIO_FILE, PORTFOLIO_VERSION, load_entries, portfolio_entry

    entries = load_entries() if PORTFOLIO_FILE.exists() else []
    for task_name in task_names:
        task = TASKS[task_name]
        budget = task.quick if quick and task.quick else (task.trials, task.epochs)
        budget = (trials or budget[0], budget[1])
        [run] = run_method("tpe+asha", task_name, PORTFOLIO_SEED, budget, folder, data_dir, stop_at=None,
                           name_prefix="portfolio-")
        searched = load_search(run)
        best = searched.ranked()[:PORTFOLIO_PER_TASK]
        entries = [e for e in entries if e["task"] != searched.card.name]
        entries += [portfolio_entry(searched.card.name, searched.card.kind, trial.config, round(value, 4),
                                    f"benchmarks/searchers.py --fit-portfolio: task {task_name}, TPE+ASHA seed "
                                    f"{PORTFOLIO_SEED}, {budget[0]} trials of <= {budget[1]} epochs, "
                                    f"{searched.metric} {value:.4f} at epoch {epoch}")
                    for trial, value, epoch in best]
        print(f"  portfolio {task_name}: " + "; ".join(f"{v:.4f} {t.config.get('model')}" for t, v, _ in best),
              flush=True)
    PORTFOLIO_FILE.write_text(json.dumps({"visiontune_portfolio": PORTFOLIO_VERSION, "entries": entries},
                                         indent=2) + "\n")
    return PORTFOLIO_FILE


def plot(result: dict[str, Any], path: Path) -> None:
    """Anytime curves, one panel per task: median best-by-validation model's test figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["tasks"])
    # One colour per method across panels, whichever methods each task ran.
    colour_of = {method: f"C{index}" for index, method in enumerate(METHODS)}
    figure, axes = plt.subplots(1, len(tasks), figsize=(max(5.6, 4.2 * len(tasks)), 3.4), squeeze=False)
    for axis, task_name in zip(axes[0], tasks):
        summary = result["tasks"][task_name]
        for method, curve in summary["median_curves"].items():
            if curve:
                axis.plot([c for c, _ in curve], [v for _, v in curve], label=method, color=colour_of.get(method),
                          linewidth=2.2 if method == "portfolio" else 1.2)
        axis.axhline(summary["threshold"], color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"{task_name} (target {summary['threshold']})", fontsize=10)
        axis.set_xlabel("trial-epochs")
        axis.set_ylabel("test figure of the best-by-validation model")
        low = min((v for curve in summary["median_curves"].values() for _, v in curve), default=0.0)
        axis.set_ylim(max(0.0, min(low, summary["threshold"]) - 0.05), None)
    # The legend lists every method drawn in any panel, once.
    handles = {line.get_label(): line for axis in axes[0] for line in axis.get_lines() if line.get_label() in colour_of}
    axes[0][0].legend([handles[m] for m in METHODS if m in handles], [m for m in METHODS if m in handles], fontsize=8)
    figure.suptitle("median over seeds; searches end once at target (last value carried on)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=None, help=f"comma-separated, of {', '.join(TASKS)} "
                                                      f"[default {','.join(QUICK_TASKS)}]")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--seeds", type=int, help="seeds per method and task (default 5; quick 1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 seed; WARWICK at 12 trials of <= 30 epochs")
    parser.add_argument("--full-searches", action="store_true", help="run every search to its end")
    parser.add_argument("--fit-portfolio", action="store_true", help="fit the portfolio file instead")
    parser.add_argument("--fit-trials", type=int, help="trials of each --fit-portfolio search [the task's]")
    parser.add_argument("--data-dir", help="data folder (default $VISIONTUNE_DATA)")
    parser.add_argument("--name", default=None, help="result file name [searchers or searchers-quick]")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="only merge earlier result files (their rows, task by task) into --name, with the figure")
    parser.add_argument("--address", help="run on this running Ray instance (default: start a local one)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder of the result files [%(default)s]")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.name or "searchers", args.out)
    task_names = [t.strip() for t in (args.tasks or ",".join(QUICK_TASKS)).split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    for given, known, what in ((task_names, TASKS, "--tasks"), (methods, METHODS, "--methods")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{what}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    import ray

    name = args.name or ("searchers-quick" if args.quick else "searchers")
    info = machine()
    if args.address:
        ray.init(address=args.address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="vt-searchers-") as temporary:
            folder = Path(temporary)
            if args.fit_portfolio:
                path = fit_portfolio(task_names, folder, args.data_dir, args.quick, args.fit_trials)
                print(f"SUMMARY portfolio fitted on {', '.join(task_names)} -> {path}")
                return 0
            seeds = list(range(args.first_seed, args.first_seed + (args.seeds or (1 if args.quick else 5))))
            print(f"searchers on {describe(info)}: tasks {', '.join(task_names)}; methods {', '.join(methods)}; "
                  f"seeds {seeds}", flush=True)
            result: dict[str, Any] = {"machine": info, "revision": git_revision(), "seeds": seeds, "tasks": {}}
            for task_name in task_names:
                task = TASKS[task_name]
                budget = task.quick if args.quick and task.quick else (task.trials, task.epochs)
                rows = []
                for method in methods:
                    for seed in seeds:
                        started = time.perf_counter()
                        runs = run_method(method, task_name, seed, budget, folder, args.data_dir,
                                          stop_at=None if args.full_searches else task.threshold)
                        measured = measure(runs, task.threshold)
                        measured.update(method=method, seed=seed, wall_s=round(time.perf_counter() - started, 1))
                        rows.append(measured)
                        save(args.out, f"{name}-partial", {**result, "rows_so_far": {task_name: rows}})
                        reach = measured.get("trial_epochs_to_reach")
                        print(f"  {task_name} {method:11s} seed {seed}: "
                              f"{'reached after %d of' % reach if reach else 'not reached in'} "
                              f"{measured['trial_epochs_total']} trial-epochs; best test {measured['best_test']:.3f}; "
                              f"{measured['wall_s']:.0f} s", flush=True)
                result["tasks"][task_name] = summarise(task, budget, methods, rows)
    finally:
        ray.shutdown()
    path = save(args.out, name, result)
    (args.out / f"{name}-partial.json").unlink(missing_ok=True)
    plot(result, args.out / f"{name}.png")
    for task_name, summary in result["tasks"].items():
        parts = [f"{m} {v['median_trial_epochs']}" for m, v in summary["methods"].items()]
        print(f"SUMMARY {task_name}: median trial-epochs to test >= {summary['threshold']}: {', '.join(parts)}")
    print(f"-> {path}")
    return 0


def save(folder: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write a result file ``folder/NAME.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def combine(files: list[str], name: str, out: Path = RESULTS_DIR) -> int:
    """Merge the rows of earlier runs of this benchmark (other methods, same tasks and seeds) into
    one result, summarised and drawn as one run's would be."""
    merged: dict[str, Any] = {"combined_from": [], "tasks": {}}
    rows_of: dict[str, list[dict]] = {}
    budgets: dict[str, tuple[int, int]] = {}
    for file in files:
        earlier = json.loads(Path(file).read_text())
        merged["combined_from"].append({"file": Path(file).name, "revision": earlier.get("revision"),
                                        "machine": earlier.get("machine"), "seeds": earlier.get("seeds")})
        for task_name, summary in earlier["tasks"].items():
            rows_of.setdefault(task_name, []).extend(summary["rows"])
            budgets[task_name] = (summary["trials"], summary["max_epochs"])
    for task_name, rows in rows_of.items():
        methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
        merged["tasks"][task_name] = summarise(TASKS[task_name], budgets[task_name], methods, rows)
    path = save(out, name, merged)
    plot(merged, out / f"{name}.png")
    print(f"SUMMARY combined {len(files)} result files -> {path}")
    return 0


def summarise(task: Task, budget: tuple[int, int], methods: list[str], rows: list[dict]) -> dict[str, Any]:
    """Per method: the median trial-epochs and seconds to the target (None where a seed never
    reached it: then the figure is at least the most trial-epochs it spent), and the median curve."""
    summary: dict[str, Any] = {"threshold": task.threshold, "trials": budget[0], "max_epochs": budget[1],
                               "space": task.space or "full (default)", "data": task.data, "methods": {},
                               "median_curves": {}, "rows": rows}
    end = max((r["trial_epochs_total"] for r in rows), default=0)
    step = max(1, end // 60)
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        reaches = [r.get("trial_epochs_to_reach") for r in mine]
        # A seed that never reached the target counts as infinitely many trial-epochs: the median
        # stands while most seeds reached it, and is "> the most spent" otherwise.
        ranked = sorted(mine, key=lambda r: r.get("trial_epochs_to_reach") or float("inf"))
        middle = ranked[(len(ranked) - 1) // 2] if ranked else {}
        summary["methods"][method] = {
            "trial_epochs": reaches,
            "median_trial_epochs": middle.get("trial_epochs_to_reach") or
            f">{max((r['trial_epochs_total'] for r in mine), default=0)} (not reached in most seeds)",
            "median_seconds": middle.get("seconds_to_reach"),
            "reached": sum(value is not None for value in reaches), "seeds": len(mine),
        }
        summary["median_curves"][method] = median_curve([r["curve"] for r in mine], step, end)
    return summary


if __name__ == "__main__":
    from ray import cloudpickle

    # The monitored trial lives in a sibling script: ship it to Ray's workers by value.
    cloudpickle.register_pickle_by_value(search_efficiency)
    sys.exit(main())
