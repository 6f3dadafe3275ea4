"""Search efficiency: trial-epochs until a search first holds a WARWICK model with test Dice >= 0.83.

Three ways of searching, each over several seeds:

- grid: the report's exercise 2.2 as it was run by hand: FCN2 with flips, batch sizes 8-128
  (report table 1), then Adam learning rates 1e-2 to 1e-5 (table 2), every point trained in full;
- random: random search over visiontune's WARWICK U-Net space ``warwick-unet`` (or ``--space``),
  no early stopping;
- tpe+asha: visiontune's default, TPE proposing and ASHA stopping weak trials early, same space.

The searches use ``warwick-unet`` rather than the task's full space ``warwick``: FCNs, which
cannot reach 0.83 here, take most of the full space's early trials (``--space warwick`` measures
it).

How it is measured: each trial runs visiontune's own trial loop, and whenever its validation
Dice improves, the model that just became its best is also scored on test (``monitor/test_dice``,
this benchmark's measurement only: searchers and ASHA read validation alone). A search "first
holds" a qualifying model at the end of the first epoch at which some trial's best-by-validation
model scores at least 0.83 on test; the figure is the number of trial-epochs the whole search had
completed by then (and seconds of its wall time), read from the trials' timestamps. A search
ends once it holds one (``--full-searches`` runs every search to its end instead).

``--from-run`` measures a finished search that ran without the monitor: it scores each trial's
final best checkpoint on test and counts up to the epoch that checkpoint came from, which is
later than (or the same as) the moment above: an upper bound. It needs every trial's
checkpoints, which a search deletes once a trial can no longer be in its top-k: run such a
search with ``--top-k`` equal to its number of trials.

    python benchmarks/search_efficiency.py --quick      # 1 seed, shorter trials: about 11 minutes on 2 CPUs
    python benchmarks/search_efficiency.py --seeds 3    # the full comparison: about 40 minutes on 2 CPUs
    python benchmarks/search_efficiency.py --from-run runs/NAME   # measure an existing search
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
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, git_revision, machine, save  # noqa: E402

from visiontune.runfolder import load_search  # noqa: E402

THRESHOLD = 0.83  # the report's best FCN2 (chosen on test there)
VAL_METRIC, TEST_METRIC = "val/dice", "test/dice"
DEFAULT_SPACE = "warwick-unet"
MONITOR = "monitor/test"  # the test figure of a trial's best-by-validation model so far (Dice or accuracy)


def test_metric_of(val_metric: str) -> str:
    """The test figure that corresponds to a validation metric: val/acc -> test/acc."""
    return "test/" + val_metric.split("/", 1)[1]


def monitored_trial(config, data, max_epochs, deadline=None, metric=None):
    """visiontune's trial loop, also scoring each new best-by-validation model on test (the test
    figure of the validation ``metric``).

    Defined in this script, so Ray ships it to the workers by value.
    """
    from visiontune.trainables.loop import run_trial
    from visiontune.trained import TrainedModel

    test_metric = test_metric_of(metric or data.card.kind_spec.val_metric)

    def score_on_test(trainer) -> dict:
        model = TrainedModel.from_weights(data.card, [(trainer.config, trainer.model.state_dict(), trainer.use_bf16)],
                                          trainer.device)
        return {MONITOR: model.evaluate(data.test, "test").metrics[test_metric]}

    run_trial(config, data, max_epochs, deadline, metric, on_new_best=score_on_test)


def reach_stopper(threshold: float = THRESHOLD):
    """A Tune stopper that ends the whole search once a trial's best model reaches ``threshold``."""
    from ray import tune

    class StopAtReach(tune.Stopper):
        def __init__(self):
            self.reached = False

        def __call__(self, trial_id, result):
            self.reached = self.reached or result.get(MONITOR, float("-inf")) >= threshold
            return False

        def stop_all(self):
            return self.reached

    return StopAtReach()


def first_reach(run: Path, splits, threshold: float = THRESHOLD) -> dict:
    """Trial-epochs and seconds until the search first held a model scoring ``threshold`` on test.

    From the monitor in the trials' reports where the search ran with it, else (``--from-run``)
    from each trial's final best checkpoint (the one its search tested), scored on test now by
    the model layer: an upper bound.
    """
    from visiontune.errors import VisiontuneError
    from visiontune.trained import TrainedModel

    searched = load_search(run)
    rows_of = [(trial, trial.epochs.to_dict("records")) for trial in searched.trials]  # an epoch counted once
    if any(MONITOR in row for _, rows in rows_of for row in rows):
        return _first_reach_monitored(rows_of, threshold)
    timeline, reached, tested = [], [], {}
    for trial, rows in rows_of:
        timeline.extend(row["timestamp"] for row in rows)
        try:
            checkpoint = searched.checkpoint(trial, VAL_METRIC)
        except VisiontuneError:  # no checkpoint kept: outside the top-k, or no epoch ended
            continue
        model = TrainedModel.from_checkpoints(splits.card, [(trial.trained_config(), checkpoint)])
        score = model.evaluate(splits.test, "test").metrics[TEST_METRIC]
        tested[trial.trial_id] = score
        if score >= threshold:
            best_epoch = trial.best(VAL_METRIC)[1]
            reached.append(next(row for row in rows if row["epoch"] == best_epoch)["timestamp"])
    return _summarise(timeline, reached, tested, "final best checkpoint (upper bound)")


def _first_reach_monitored(rows_of: list, threshold: float) -> dict:
    timeline, reached, tested = [], [], {}
    for trial, rows in rows_of:
        timeline.extend(row["timestamp"] for row in rows)
        scores = [row[MONITOR] for row in rows if MONITOR in row and row[MONITOR] == row[MONITOR]]
        if scores:
            tested[trial.trial_id] = scores[-1]  # the trial's last best-by-validation model
        first = next((row for row in rows if row.get(MONITOR, float("-inf")) >= threshold), None)
        if first is not None:
            reached.append(first["timestamp"])
    return _summarise(timeline, reached, tested, "best-by-validation model at each epoch")


def _summarise(timeline: list[float], reached: list[float], tested: dict, measure: str) -> dict:
    timeline.sort()
    start = min(timeline) if timeline else 0.0
    result = {"measure": measure, "trial_epochs_total": len(timeline), "trials": len(tested),
              "best_test": max(tested.values(), default=None), "qualifying_trials": len(reached)}
    if reached:
        moment = min(reached)
        result["trial_epochs_to_reach"] = sum(1 for stamp in timeline if stamp <= moment)
        # Counted from the end of the search's first epoch (the earliest timestamp Ray records).
        result["seconds_to_reach"] = moment - start
    return result


def grid_space_file(folder: Path, seed: int) -> list[Path]:
    """The report's two grids of exercise 2.2, as space files with the training seed fixed."""
    from visiontune.search_spaces.grids import GRIDS

    files = []
    for name in ("warwick-report-batch", "warwick-report-lr"):
        grid = dict(GRIDS[name])
        path = folder / f"{name}-seed{seed}.json"
        path.write_text(json.dumps({"description": grid["description"], "params": {**grid["params"], "seed": seed}}))
        files.append(path)
    return files


METHODS = ("grid", "random", "tpe+asha")


def run_method(method: str, seed: int, settings: dict, storage: Path, data_dir: str | None,
               space: str = DEFAULT_SPACE, fixed: dict | None = None, stop_at_reach: bool = True) -> list[Path]:
    """Run one method with one seed; the run folders, in the order they ran."""
    from visiontune.search import SearchOptions, run_search

    common = dict(task="warwick", cpus_per_trial=1, storage=str(storage), report=False, top_k=1,
                  data_dir=data_dir, seed=seed)

    def search(options: SearchOptions) -> bool:
        """Run one search; True if it reached the threshold (and so was ended there)."""
        stopper = reach_stopper() if stop_at_reach else None
        run_search(options, progress=lambda line: None, trial_function=monitored_trial, stopper=stopper)
        return bool(stopper and stopper.reached)

    if method == "grid":
        folders = []
        for index, space_file in enumerate(grid_space_file(storage, seed)):
            name = f"grid-seed{seed}-{index}"
            folders.append(storage / name)
            if search(SearchOptions(space=str(space_file), searcher="grid", scheduler="none", name=name,
                                    max_epochs=settings["grid_epochs"], **common)):
                break  # the report's second table would run after the first: no need
        return folders
    name = f"{method}-seed{seed}"
    search(SearchOptions(space=space, fixed=dict(fixed or {}), searcher="random" if method == "random" else "tpe",
                         scheduler="none" if method == "random" else "asha", trials=settings["trials"],
                         max_epochs=settings["epochs"], name=name, **common))
    return [storage / name]


def combine(parts: list[dict]) -> dict:
    """Several runs done one after another (the grid's two tables) as one search."""
    if len(parts) == 1:
        return dict(parts[0])
    total, combined = 0, {"measure": parts[0]["measure"]}
    for part in parts:
        if "trial_epochs_to_reach" in part and "trial_epochs_to_reach" not in combined:
            combined["trial_epochs_to_reach"] = total + part["trial_epochs_to_reach"]
        total += part["trial_epochs_total"]
    combined["trial_epochs_total"] = total
    combined["best_test"] = max((p["best_test"] for p in parts if p["best_test"] is not None), default=None)
    combined["qualifying_trials"] = sum(p["qualifying_trials"] for p in parts)
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 seed; grid points 30 epochs, searches 12 trials of at most 30 epochs")
    parser.add_argument("--seeds", type=int, help="seeds per method (default 3; quick 1)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seed of each method's first run [0]: continue an earlier comparison with new seeds")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--from-run", metavar="RUN", help="only measure an existing WARWICK run folder")
    parser.add_argument("--data-dir", help="data folder (default $VISIONTUNE_DATA)")
    parser.add_argument("--space", default=DEFAULT_SPACE,
                        help=f"search space of random and tpe+asha (the grid is always the report's) [{DEFAULT_SPACE}]")
    parser.add_argument("--full-searches", action="store_true",
                        help="run every search to its end (default: end a search once it holds a qualifying model)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="fixed",
                        help="fix a setting in every random and tpe+asha trial, e.g. tta=d4 (repeatable)")
    args = parser.parse_args(argv)
    if args.first_seed < 0:
        parser.error("--first-seed must be 0 or more")
    from visiontune.options import parse_set_options
    from visiontune.data import load_splits
    from visiontune.errors import VisiontuneError
    from visiontune.search_spaces import check_space, resolve_space

    try:  # bad --space, --set or data: a one-line error now, not a traceback after Ray has started
        fixed = parse_set_options(args.fixed)
        card = load_splits("warwick", synthetic=True).card  # the kind and shape only
        check_space(resolve_space(card, args.space), {"task": "warwick", **fixed}, card)
        splits = load_splits("warwick", data_dir=args.data_dir, download=False)
    except VisiontuneError as error:
        parser.error(str(error))
    if args.from_run:
        run = Path(args.from_run)
        measured = first_reach(run, splits)
        search = load_search(run).search
        path = save(f"search_efficiency-run-{run.name}",
                    {"machine": machine(), "revision": git_revision(), "threshold": THRESHOLD, "run": str(run),
                     "options": search.get("options"), "command": search.get("command"), **measured})
        print(json.dumps(measured, indent=2))
        print(f"SUMMARY search efficiency of {run.name}: "
              + (f"first test Dice >= {THRESHOLD} after {measured['trial_epochs_to_reach']} of "
                 f"{measured['trial_epochs_total']} trial-epochs" if "trial_epochs_to_reach" in measured
                 else f"never reached in {measured['trial_epochs_total']} trial-epochs") + f" -> {path}")
        return 0
    import ray

    settings = ({"grid_epochs": 30, "trials": 12, "epochs": 30} if args.quick
                else {"grid_epochs": 100, "trials": 24, "epochs": 60})
    seeds = args.seeds or (1 if args.quick else 3)
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    info = machine()
    print(f"search efficiency on {describe(info)}: first test Dice >= {THRESHOLD} on WARWICK, "
          f"{seeds} seed(s), {settings}, space {args.space}{' with ' + str(fixed) if fixed else ''}")
    ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="vt-efficiency-") as folder:
            for method in methods:
                for seed in range(args.first_seed, args.first_seed + seeds):
                    started = time.perf_counter()
                    folders = run_method(method, seed, settings, Path(folder), args.data_dir, args.space, fixed,
                                         stop_at_reach=not args.full_searches)
                    measured = combine([first_reach(run, splits) for run in folders])
                    measured.update(method=method, seed=seed, wall_s=time.perf_counter() - started)
                    rows.append(measured)
                    reach = measured.get("trial_epochs_to_reach")
                    print(f"  {method:9s} seed {seed}: {'reached after %d of' % reach if reach else 'not reached in'} "
                          f"{measured['trial_epochs_total']} trial-epochs; best test Dice "
                          f"{measured['best_test']:.3f}; {measured['wall_s'] / 60:.1f} min", flush=True)
    finally:
        ray.shutdown()

    def median_reach(method: str) -> float | None:
        values = [r.get("trial_epochs_to_reach") for r in rows if r["method"] == method]
        if not values or any(v is None for v in values):
            return None
        return statistics.median(values)

    suffix = f"-seeds{args.first_seed}-{args.first_seed + seeds - 1}" if args.first_seed else ""
    if args.space != DEFAULT_SPACE or fixed:
        suffix += f"-{Path(args.space).stem}" + "".join(f"-{k}-{v}" for k, v in sorted(fixed.items()))
    path = save(f"search_efficiency{'-quick' if args.quick else ''}{suffix}",
                {"machine": info, "revision": git_revision(), "threshold": THRESHOLD,
                 "settings": {**settings, "space": args.space, "fixed": fixed,
                              "stop_at_reach": not args.full_searches},
                 "seeds": seeds, "rows": rows})
    parts = []
    for method in methods:
        value = median_reach(method)
        total = max((r["trial_epochs_total"] for r in rows if r["method"] == method), default=0)
        parts.append(f"{method} {value:.0f}" if value is not None else f"{method} >{total} (not reached in every seed)")
    grid, tpe = median_reach("grid"), median_reach("tpe+asha")
    grid_total = max((r["trial_epochs_total"] for r in rows if r["method"] == "grid"), default=None)
    if tpe is not None and (grid or grid_total):
        reference = grid or grid_total
        verdict = (f"tpe+asha / grid = {tpe / reference:.2f}{'' if grid else ' at most (grid never reached it)'}; "
                   f"target 0.10: {'met' if tpe / reference <= 0.1 else 'NOT met'}")
    else:
        verdict = "no ratio: tpe+asha or grid missing"
    print(f"SUMMARY search efficiency: median trial-epochs to test Dice >= {THRESHOLD}: {', '.join(parts)}; "
          f"{verdict} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
