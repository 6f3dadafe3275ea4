"""Command-line front: ``visiontune train | search | analyze | data``.

Errors a user can fix print one line (``visiontune: error: ...``) and exit 1, without a
traceback; argparse's own usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from visiontune import __version__
from visiontune.errors import VisiontuneError
from visiontune.tasks import TASKS

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------ shared options
def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose the data and the split (same for train, search and reproduce)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data-dir", metavar="DIR",
                       help="folder (or .zip) holding the data sets; default $VISIONTUNE_DATA, else ~/.cache/visiontune")
    group.add_argument("--synthetic", action="store_true",
                       help="use the task's tiny generated stand-in data set instead (offline smoke runs)")
    group.add_argument("--val-size", type=int, metavar="N",
                       help="validation samples carved from the training set (default mnist 5000, warwick 17)")
    group.add_argument("--split-seed", type=int, default=0, metavar="S",
                       help="seed of the train/validation split, fixed across runs (default 0)")
    group.add_argument("--train-limit", type=int, metavar="N",
                       help="train on a seeded subset of N samples (quick runs)")
    group.add_argument("--no-download", action="store_true", help="never download a missing data set")


def load_data_from_args(task: str, args: argparse.Namespace):
    """``load_splits`` with the data options of ``args``."""
    from visiontune.data import load_splits

    return load_splits(task, data_dir=args.data_dir, synthetic=args.synthetic, val_size=args.val_size,
                       split_seed=args.split_seed, train_limit=args.train_limit, download=not args.no_download)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field, help text from the field's comment."""
    from visiontune.config import FIELD_TYPES, TrainConfig

    group = parser.add_argument_group("training configuration (defaults in brackets; see also --config)")
    for spec in dataclasses.fields(TrainConfig):
        if spec.name == "task":
            continue
        hint = FIELD_TYPES[spec.name]
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        flag = "--" + spec.name.replace("_", "-")
        default_text = "" if spec.default is None else f" [{spec.default}]"
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=spec.metadata["help"])
        else:
            group.add_argument(flag, type=base, default=argparse.SUPPRESS, metavar=spec.name.upper(),
                               help=spec.metadata["help"] + default_text)


def config_from_args(task: str, args: argparse.Namespace):
    """Defaults, then ``--config FILE``, then explicit options: the validated TrainConfig."""
    from visiontune.config import TrainConfig, config_from_dict, load_config_file

    values: dict[str, Any] = {}
    where = "options"
    if args.config:
        values = load_config_file(args.config)
        where = str(args.config)
        if values.get("task", task) != task:
            raise VisiontuneError(f"{args.config}: is a config for task {values['task']!r}, not {task!r}")
    values["task"] = task
    for spec in dataclasses.fields(TrainConfig):
        if spec.name in vars(args) and spec.name != "task":
            values[spec.name] = getattr(args, spec.name)
    return config_from_dict(values, where)


# ----------------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> int:
    """Train one configuration and write its run folder."""
    from visiontune import runs
    from visiontune.train import train_one

    config = config_from_args(args.task, args)
    out = Path(args.out) if args.out else Path("runs") / runs.default_run_name("train", args.task, config.model_name())
    runs.prepare_out_dir(out)  # fail before loading data, not after
    splits = load_data_from_args(args.task, args)
    result = train_one(config, splits, out, device=args.device, threads=args.threads,
                       progress=(lambda line: None) if args.quiet else print)
    print(f"run folder: {out}")
    return 0 if result["status"] == "finished" else EXIT_ERROR


def command_data(args: argparse.Namespace) -> int:
    """Check that a task's data set loads, and show where it came from and its split."""
    from visiontune.data import resolve_data_dir

    if args.action == "download":
        from visiontune.data.mnist import download_mnist

        if args.task != "mnist":
            raise VisiontuneError("only mnist can be downloaded; WARWICK comes from the course (WARWICK.zip)")
        folder = download_mnist(resolve_data_dir(args.data_dir) / "mnist")
        print(f"MNIST downloaded and verified in {folder}")
        return 0
    splits = load_data_from_args(args.task, args)
    train = splits.train.images
    print(f"{args.task}: {splits.source}")
    print(f"  images {tuple(train.shape[1:])} uint8; split seed {splits.split_seed}; "
          + ", ".join(f"{name} {count}" for name, count in splits.sizes().items()))
    return 0


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs -> dict; values parse as JSON where they can (16, 0.5, true)."""
    import json

    fixed: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise VisiontuneError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set precision=bf16")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        fixed[key.strip().replace("-", "_")] = value
    return fixed


def command_search(args: argparse.Namespace) -> int:
    """Run, resume, or list the spaces of, a hyperparameter search."""
    if args.list_spaces:
        from visiontune.search_spaces import list_spaces

        rows = list_spaces(args.task)
        width = max(len(name) for name, *_ in rows)
        for name, task, description in rows:
            print(f"{name:<{width}}  {task:<8} {description}")
        return 0
    from visiontune.search import SearchOptions, run_search

    if args.resume:
        if not args.name:
            raise VisiontuneError("--resume needs --name NAME of the search to continue")
        options = SearchOptions(task=args.task or "", name=args.name, storage=args.storage, address=args.address,
                                time_budget=args.time_budget)
        run_search(options, resume=True)
        return 0
    if not args.task:
        raise VisiontuneError("search needs a TASK (mnist or warwick), or --list-spaces")
    options = SearchOptions(
        task=args.task, space=args.space, trials=args.trials, max_epochs=args.max_epochs,
        grace_period=args.grace_period, reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, concurrency=args.concurrency,
        seed=args.seed, name=args.name, storage=args.storage, address=args.address, searcher=args.searcher,
        scheduler=args.scheduler, time_budget=args.time_budget, warm_start=args.warm_start,
        objectives=args.objectives, optuna_storage=args.optuna_storage, max_failures=args.max_failures,
        top_k=args.top_k, report=not args.no_report, fixed=parse_set_options(args.set),
        reuse_actors=not args.fresh_worker_per_trial,
        data_dir=args.data_dir, synthetic=args.synthetic, val_size=args.val_size, split_seed=args.split_seed,
        train_limit=args.train_limit, download=not args.no_download,
    )
    run_search(options)
    return 0


def add_search_parser(commands) -> None:
    """The ``search`` sub-command and its options."""
    search = commands.add_parser(
        "search", help="hyperparameter search with Ray Tune, Optuna and ASHA",
        description="Search a space of configurations: Optuna proposes trials (TPE by default), ASHA stops weak "
                    "ones early on the validation metric, Ray runs them in parallel on CPUs or GPU fractions. "
                    "The top-k trials by validation are evaluated once on the test split.")
    search.add_argument("task", nargs="?", choices=list(TASKS), help="mnist or warwick")
    search.add_argument("--list-spaces", action="store_true", help="list the named search spaces and exit")
    what = search.add_argument_group("what to search")
    what.add_argument("--space", metavar="NAME|FILE", help="named space (see --list-spaces) or a YAML/JSON file; "
                                                           "default: the task's full space")
    what.add_argument("--trials", type=int, metavar="N", help="number of trials (default 16; grid: every point)")
    what.add_argument("--max-epochs", type=int, default=10, metavar="N", help="epochs of a trial that is never stopped [10]")
    what.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="fix a setting for every trial, e.g. --set precision=bf16 (repeatable)")
    what.add_argument("--searcher", choices=["tpe", "random", "grid"], default="tpe", help="proposal method [tpe]")
    what.add_argument("--scheduler", choices=["asha", "none"], default="asha", help="early stopping [asha]")
    what.add_argument("--grace-period", type=int, metavar="N",
                      help="ASHA: epochs before a trial can be stopped (default: a tenth of --max-epochs, at least 1)")
    what.add_argument("--reduction-factor", type=int, default=3, metavar="N", help="ASHA: keep 1/N at each rung [3]")
    what.add_argument("--seed", type=int, default=0, help="seed of the searcher [0]")
    what.add_argument("--warm-start", metavar="report|FILE",
                      help="evaluate these configurations first: 'report' (the report's best) or a YAML/JSON list")
    what.add_argument("--objectives", metavar="METRIC,params",
                      help="two objectives, e.g. val/acc,params: accuracy against learnable weights (Pareto front)")
    what.add_argument("--time-budget", metavar="DURATION", help="no new trial after this (e.g. 30m, 2h); running "
                                                                  "trials end at their next epoch")
    what.add_argument("--top-k", type=int, default=3, metavar="K", help="evaluate the K best trials on test [3]")
    what.add_argument("--no-report", action="store_true",
                      help="skip the analysis report (tables, figures, HTML) at the end; see visiontune analyze")
    where = search.add_argument_group("where it runs")
    where.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N", help="CPUs per trial [1]")
    where.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="F",
                       help="GPU share per trial: 0.25 packs four trials on one GPU [0]")
    where.add_argument("--concurrency", type=int, metavar="N", help="at most N trials at once (default: as resources allow)")
    where.add_argument("--max-failures", type=int, default=2, metavar="N",
                       help="retry a trial that raises N times from its last checkpoint, then record it failed [2]")
    where.add_argument("--fresh-worker-per-trial", action="store_true",
                       help="start a new worker process for every trial instead of reusing one (slower)")
    where.add_argument("--address", metavar="HOST:PORT", help="connect to a running Ray cluster (default: start a "
                                                              "local one, bound to loopback)")
    where.add_argument("--name", metavar="NAME", help="run name (default search-TASK-TIME); with --resume, the search to continue")
    where.add_argument("--storage", default="runs", metavar="DIR|URI", help="where run folders go: a folder or s3://... [runs]")
    where.add_argument("--optuna-storage", metavar="URL", help="keep the Optuna study in this database, e.g. sqlite:///study.db")
    where.add_argument("--resume", action="store_true", help="continue the search --name after an interruption")
    add_data_options(search)
    search.set_defaults(handler=command_search)


def command_analyze(args: argparse.Namespace) -> int:
    """Ranked tables, figures and an HTML report of one search, or a comparison of several."""
    from visiontune.analysis import analyze_run, compare_runs

    if len(args.runs) > 1:
        if args.reseed:
            raise VisiontuneError("--reseed works on one run at a time")
        report = compare_runs(args.runs, out=args.out, metric=args.metric)
    else:
        if args.jobs < 1:
            raise VisiontuneError(f"--jobs must be at least 1, not {args.jobs}")
        report = analyze_run(args.runs[0], out=args.out, top=args.top, metric=args.metric, reseed=args.reseed,
                             data_dir=args.data_dir, jobs=args.jobs)
    print(f"report: {report}")
    return 0


def add_analyze_parser(commands) -> None:
    """The ``analyze`` sub-command."""
    analyze = commands.add_parser(
        "analyze", help="ranked table, figures and HTML report of a search (or compare several)",
        description="Read a search's run folder (finished, running, or moved) and write its ranked table (CSV, "
                    "Markdown, HTML), figures and a self-contained HTML report. With several run folders, compare "
                    "their anytime curves and best trials.")
    analyze.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s), e.g. runs/search-mnist-...")
    analyze.add_argument("--top", type=int, default=3, metavar="K", help="trials shown and plotted [3]")
    analyze.add_argument("--metric", metavar="NAME", help="rank by this metric (default: the task's validation metric)")
    analyze.add_argument("--out", metavar="DIR", help="where to write (default RUN/analysis)")
    analyze.add_argument("--reseed", type=int, default=0, metavar="N",
                         help="retrain the top-K configurations with N further seeds and rank them by the mean")
    analyze.add_argument("--data-dir", metavar="DIR", help="data folder for --reseed (default: as the search had it)")
    analyze.add_argument("--jobs", type=int, default=1, metavar="J",
                         help="--reseed runs at once, each in its own process (several share a GPU; on CPUs "
                              "each gets cores/J threads) [1]")
    analyze.set_defaults(handler=command_analyze)


def command_reproduce(args: argparse.Namespace) -> int:
    """List the report's studies, or run some and write their side-by-side tables."""
    from visiontune.reproduce import ReproduceOptions, reproduce
    from visiontune.studies import STUDIES

    if args.list or not args.studies:
        if not args.list:
            raise VisiontuneError("reproduce needs STUDY names, 'all', or --list")
        width = max(map(len, STUDIES))
        for name, study in STUDIES.items():
            rows = len(study.rows)
            print(f"{name:{width}s}  {study.task:7s}  {study.description} "
                  f"[{rows} setting{'s' if rows > 1 else ''}, {study.epochs} epochs; quick {study.quick_epochs}]")
        return 0
    names = list(STUDIES) if args.studies == ["all"] else args.studies
    index = reproduce(ReproduceOptions(
        studies=names, quick=args.quick, seeds=args.seeds, storage=args.storage, out=args.out,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
        data_dir=args.data_dir, synthetic=args.synthetic))
    print(f"tables: {index}")
    return 0


def add_reproduce_parser(commands) -> None:
    """The ``reproduce`` sub-command."""
    parser = commands.add_parser(
        "reproduce", help="run the report's experiments as studies, side by side with its numbers",
        description="Each study is one of the report's experiments, run as a grid through the search service "
                    "(every setting x seed, no early stopping, epochs chosen on validation, test evaluated once). "
                    "Writes a Markdown table per study: the report's number beside ours (mean ± std over the seeds) "
                    "and the compute used.")
    parser.add_argument("studies", nargs="*", metavar="STUDY", help="study names (see --list), or 'all'")
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs and, for MNIST, 5,000 training images: every study on 2 CPUs in well "
                             "under an hour; tables labelled as such")
    parser.add_argument("--seeds", type=int, default=3, metavar="N", help="training seeds per setting [3]")
    parser.add_argument("--storage", default="runs", metavar="DIR", help="where the studies' run folders go [runs]")
    parser.add_argument("--out", default="reproduction", metavar="DIR",
                        help="where the tables go: DIR/quick or DIR/full [reproduction]")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N", help="CPUs per trial [1]")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="F", help="GPU share per trial [0]")
    parser.add_argument("--address", metavar="HOST:PORT", help="connect to a running Ray cluster")
    parser.add_argument("--data-dir", metavar="DIR", help="data folder (default $VISIONTUNE_DATA, else the cache)")
    parser.add_argument("--synthetic", action="store_true", help="tiny generated data sets (smoke runs)")
    parser.set_defaults(handler=command_reproduce)


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="visiontune",
        description="Hyperparameter search for image-analysis deep learning (MNIST classification, "
                    "WARWICK gland segmentation).",
    )
    parser.add_argument("--version", action="version", version=f"visiontune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train one configuration and evaluate it on the test split",
                                description="Train one configuration: keep the best epoch by the validation "
                                            "metric, evaluate it once on the test split, write a run folder.")
    train.add_argument("task", choices=list(TASKS), help="mnist or warwick")
    train.add_argument("--config", metavar="FILE", help="JSON file of settings (e.g. a run's config.json); "
                                                         "options given on the command line override it")
    train.add_argument("--out", metavar="DIR", help="run folder to create (default runs/train-TASK-MODEL-TIME)")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 [auto]")
    train.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    add_config_options(train)
    add_data_options(train)
    train.set_defaults(handler=command_train)

    add_search_parser(commands)
    add_analyze_parser(commands)
    add_reproduce_parser(commands)

    data = commands.add_parser("data", help="check a data set (or download MNIST)",
                               description="Load a task's data set as training would and show its split, "
                                           "or download MNIST into the data folder.")
    data.add_argument("action", choices=["check", "download"], help="check: load and summarise; download: fetch MNIST")
    data.add_argument("task", choices=list(TASKS))
    add_data_options(data)
    data.set_defaults(handler=command_data)
    return parser


def one_line(message: str) -> str:
    """Collapse whitespace so an error always prints as one line."""
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visiontune`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except VisiontuneError as error:
        if type(error).__name__ == "SearchInterrupted":
            print(f"visiontune: {one_line(error)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"visiontune: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("visiontune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
