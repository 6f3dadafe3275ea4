"""Command-line front: ``visiontune train | search | analyze | data``.

Errors a user can fix print one line (``visiontune: error: ...``) and exit 1, without a
traceback; argparse's own usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from visiontune import __version__
from visiontune.errors import SearchInterrupted, VisiontuneError
from visiontune.options import add_options, given_options
from visiontune.selection import DEFAULT_FOLDS, QUICK_EPOCH_SHARE, QUICK_TOP
from visiontune.tasks import TASKS

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------ shared options
TASK_HELP = (f"a built-in task ({', '.join(TASKS)}) or your own data set: a folder, a .zip or a dataset.yaml "
             "(README: Your own data)")

def add_data_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The data options (``data.options.DataOptions``), the same for every command that loads data."""
    from visiontune.data.options import DataOptions

    add_options(parser, DataOptions, only=only)


def data_options_from_args(args: argparse.Namespace):
    """The :class:`DataOptions` a command was given (defaults for the rest)."""
    from visiontune.data.options import DataOptions

    return DataOptions(**given_options(DataOptions, args))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field, help text from the field's comment."""
    from visiontune.config import TrainConfig

    add_options(parser, TrainConfig, exclude=("task", "cv_fold"),
                group="training configuration (defaults in brackets; see also --config)")


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
    values.update(given_options(TrainConfig, args, exclude=("task", "cv_fold")))
    return config_from_dict(values, where)


# ----------------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> int:
    """Train one configuration and write its run folder."""
    from visiontune import runs
    from visiontune.data import task_label
    from visiontune.train import train_one

    config = config_from_args(args.task, args)  # the checks that need no data, before loading it
    if args.out:
        runs.prepare_out_dir(Path(args.out))
    from visiontune.data.placement import plan_for

    options = data_options_from_args(args)
    splits = options.load_splits(args.task)
    config.validate(splits.card)  # the checks that depend on the data set, before anything is written
    placement = plan_for(splits, options, gpus_per_trial=None if args.device in ("auto", "cuda") else 0.0)
    out = Path(args.out) if args.out else Path("runs") / runs.default_run_name(
        "train", task_label(args.task), config.model_name(splits.card.kind))
    result = train_one(config, splits, out, device=args.device, threads=args.threads,
                       progress=(lambda line: None) if args.quiet else print, placement=placement)
    print(f"run folder: {out}")
    return 0 if result["status"] == "finished" else EXIT_ERROR


def command_data(args: argparse.Namespace) -> int:
    """Check that a task's data set loads, and show where it came from and its split."""
    from visiontune.data import resolve_data_dir

    if args.action == "download":
        from visiontune.data.mnist import download_mnist

        if args.task != "mnist":
            raise VisiontuneError("only mnist can be downloaded; WARWICK comes from the course (WARWICK.zip)")
        folder = download_mnist(resolve_data_dir(data_options_from_args(args).data_dir) / "mnist")
        print(f"MNIST downloaded and verified in {folder}")
        return 0
    from visiontune.data.card import summary_lines
    from visiontune.data.placement import plan_for

    options = data_options_from_args(args)
    splits = options.load_splits(args.task)
    print("\n".join(summary_lines(splits.card)))
    print(plan_for(splits, options).line())
    return 0


def _folds(cv: int | None) -> int:
    """The number of folds ``--cv`` asks for (0: none)."""
    if cv is not None and cv != 0 and cv < 2:
        raise VisiontuneError(f"--cv needs at least 2 folds, not {cv}")
    return cv or 0


def ensemble_choice(text: str) -> int | str:
    """``--ensemble``: a number of trials, or ``cv`` (the cross-validation's fold models)."""
    if text == "cv":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of trials or 'cv', not {text!r}") from None


def command_predict(args: argparse.Namespace) -> int:
    """Predict images with a trained model; write the predictions into --out."""
    from visiontune import runs
    from visiontune.predict import SCORES_FILE, predict_files, prediction_lines, table_file
    from visiontune.trained import load_model

    out = runs.prepare_out_dir(Path(args.out))
    model = load_model(args.model, device=args.device, ensemble=args.ensemble)
    counts = predict_files(model, args.inputs, out, batch_size=args.batch_size, overlay=args.overlay)
    if counts["predicted"]:
        print("\n".join(prediction_lines(out, model)))
    print(f"{counts['predicted']} images predicted with {model.source} ({model.card.kind}, "
          f"{model.card.num_classes} classes) -> {out / table_file(model)}"
          + (f"; {counts['errors']} unreadable (errors.csv)" if counts["errors"] else "")
          + (f"; {counts['skipped']} non-image files skipped" if counts["skipped"] else ""))
    if "scores" in counts:
        shown = {k: v for k, v in counts["scores"].items() if k in ("acc", "balanced_acc", "macro_f1", "dice",
                                                                      "dice_pooled")}
        print("scored against the folder's labels: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
              + f" -> {out / SCORES_FILE}")
    if counts["errors"]:
        print(f"visiontune: {counts['errors']} files could not be read; listed in {out / 'errors.csv'}",
              file=sys.stderr)
    return 0 if counts["predicted"] else EXIT_ERROR


def command_export(args: argparse.Namespace) -> int:
    """Export a trained model and its model card."""
    from visiontune.export import export_model

    out = export_model(args.run, args.format, args.out, args.ensemble)
    print(f"exported {args.run} as {args.format} -> {out} (model.json: the model card)")
    return 0


def command_search(args: argparse.Namespace) -> int:
    """Run, resume, or list the spaces of, a hyperparameter search; then (--cv) cross-validate its
    top-k and write its report."""
    if args.list_spaces:
        from visiontune.data import kind_of
        from visiontune.search_spaces import list_spaces

        rows = list_spaces(kind_of(args.task) if args.task else None)
        width = max(len(name) for name, *_ in rows)
        for name, task, description in rows:
            print(f"{name:<{width}}  {task:<8} {description}")
        return 0
    from visiontune.search import RESUME_OPTIONS, SearchOptions, run_search

    given = given_options(SearchOptions, args, exclude=("task",))
    folds = _folds(args.cv)  # checked before the search starts
    if args.resume:
        if not args.name:
            raise VisiontuneError("--resume needs --name NAME of the search to continue")
        ignored = sorted(set(given) - set(RESUME_OPTIONS))
        if ignored or args.task:
            shown = ", ".join(["TASK"] * bool(args.task) + ["--" + name.replace("_", "-") for name in ignored])
            raise VisiontuneError(f"--resume continues a search with its recorded options; {shown} cannot change "
                                  f"(only {', '.join('--' + n.replace('_', '-') for n in RESUME_OPTIONS)} apply)")
        summary = run_search(SearchOptions(**given), resume=True)
    else:
        if not args.task:
            raise VisiontuneError(f"search needs a TASK ({', '.join(TASKS)}) or the PATH of a data set, or "
                                  "--list-spaces")
        options = SearchOptions(task=args.task, **given)
        if args.show_space:
            from visiontune.search.options import check_options
            from visiontune.search_spaces import describe_space

            card = options.load_splits(options.task).card
            print("\n".join(describe_space(check_options(options, card).space)))  # as searched: --set applied
            return 0
        summary = run_search(options)
    return _after_search(summary, folds)


def _after_search(summary: dict, folds: int) -> int:
    """What follows a search on this machine: ``--cv`` cross-validates its top-k on its resources;
    the report (unless ``--no-report``) renders the run folder."""
    from visiontune.runfolder import load_search

    folder = Path(summary["location"])
    local = "://" not in summary["location"] and folder.is_dir()
    if folds and not local:
        raise VisiontuneError(f"--cv needs the run folder on this machine; fetch {summary['location']} and run "
                              f"visiontune analyze on it with --cv {folds}")
    if not local:
        if summary["report"]:
            print(f"report: fetch {summary['location']} and run visiontune analyze on it", flush=True)
        return 0
    run = load_search(folder)
    top = int(run.options.get("top_k") or 3)
    if folds:
        from visiontune.selection.crossval import cross_validate

        cross_validate(run, folds=folds, top=top)
    if folds or summary["report"]:
        from visiontune.analysis import analyze_run

        report = analyze_run(folder, top=top, progress=(print if folds else lambda line: None))
        print(f"report: {report}", flush=True)
    return 0


def add_search_parser(commands) -> None:
    """The ``search`` sub-command and its options."""
    search = commands.add_parser(
        "search", help="hyperparameter search with Ray Tune, Optuna and ASHA",
        description="Search a space of configurations: the configurations that searched best on other data sets "
                    "go first, then Optuna's TPE proposes (--searcher), ASHA stops weak ones early on the "
                    "validation metric, Ray runs them in parallel on CPUs or GPU fractions. "
                    "The top-k trials by validation are evaluated once on the test split.")
    search.add_argument("task", nargs="?", metavar="TASK|PATH", help=TASK_HELP)
    search.add_argument("--list-spaces", action="store_true", help="list the named search spaces and exit")
    search.add_argument("--show-space", action="store_true",
                        help="print the space this search would run, fitted to the data set, and exit")
    search.add_argument("--resume", action="store_true", help="continue the search --name after an interruption")
    search.add_argument("--cv", type=int, nargs="?", const=DEFAULT_FOLDS, metavar="K",
                        help="when the search ends, cross-validate its --top-k on K folds (five when left out), as "
                             "analyze RUN --cv K")
    from visiontune.search.options import SearchOptions

    add_options(search, SearchOptions, exclude=("task",))
    search.set_defaults(handler=command_search)


def command_analyze(args: argparse.Namespace) -> int:
    """Ranked tables, figures and an HTML report of one search (after retraining its top
    configurations with --reseed or --cv), or a comparison of several."""
    from visiontune.analysis import analyze_run, compare_runs

    if len(args.runs) > 1:
        if args.reseed or args.cv:
            raise VisiontuneError("--reseed and --cv work on one run at a time")
        report = compare_runs(args.runs, out=args.out, metric=args.metric)
    else:
        from visiontune.runfolder import load_search
        from visiontune.search import TrialResources

        resources = given_options(TrialResources, args)
        folds = _folds(args.cv)
        if resources and not (args.reseed or folds):
            raise VisiontuneError("--cpus-per-trial, --gpus-per-trial and the other trial options apply to --reseed "
                                  "and --cv")
        if (args.refit or args.quick or args.cv_epochs) and not folds:
            raise VisiontuneError("--refit, --quick and --cv-epochs apply to --cv")
        if args.data_memory_gb is not None and not (args.reseed or folds):
            raise VisiontuneError("--data-memory-gb applies to --reseed and --cv (the data they retrain on)")
        run = load_search(args.runs[0])
        if args.data_memory_gb is not None:
            run.override_data_options(data_memory_gb=args.data_memory_gb)
        metric = args.metric or run.metric
        if folds and metric != run.metric:
            raise VisiontuneError(f"--cv ranks by the search's own metric ({run.metric}); leave out --metric {metric}")
        top = args.top or (QUICK_TOP if args.quick else 3)
        if args.reseed:
            from visiontune.selection.reseed import reseed_top

            ranked = [trial for trial, _, _ in run.ranked(metric)][:top]
            reseed_top(run, ranked, args.reseed, data_dir=args.data_dir, resources=resources)
        if folds:
            from visiontune.selection.crossval import cross_validate

            epochs = args.cv_epochs or (max(1, run.max_epochs // QUICK_EPOCH_SHARE) if args.quick else None)
            cross_validate(run, folds=folds, top=top, epochs=epochs, refit=args.refit, data_dir=args.data_dir,
                           resources=resources)
        report = analyze_run(args.runs[0], out=args.out, top=top, metric=args.metric)
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
    analyze.add_argument("--top", type=int, metavar="K", help="trials shown and plotted, reseeded or cross-validated "
                                                               "[3; --quick: 2]")
    analyze.add_argument("--metric", metavar="NAME", help="rank by this metric (default: the task's validation metric)")
    analyze.add_argument("--out", metavar="DIR", help="where to write (default RUN/analysis)")
    analyze.add_argument("--reseed", type=int, default=0, metavar="N",
                         help="retrain the top-K configurations with N further seeds and rank them by the mean")
    analyze.add_argument("--cv", type=int, nargs="?", const=DEFAULT_FOLDS, default=0, metavar="K",
                         help="cross-validate the top configurations on K folds of train+validation (nnU-Net's protocol "
                              "and its five folds when K is left out), rank them by the out-of-fold metric, and "
                              "evaluate each one's fold ensemble once on test")
    analyze.add_argument("--refit", action="store_true", help="--cv: also train the winner on all train+validation for "
                                                              "the median of its folds' best epochs; test it beside "
                                                              "the ensemble")
    analyze.add_argument("--cv-epochs", type=int, metavar="N", help="--cv: epochs of each fold training (default: the "
                                                                    "search's --max-epochs)")
    analyze.add_argument("--quick", action="store_true", help="--cv: the top 2 for a third of the epochs")
    analyze.add_argument("--data-dir", metavar="DIR", help="data folder for --reseed and --cv (default: as the search "
                                                           "had it)")
    analyze.add_argument("--data-memory-gb", type=float, metavar="GB",
                         help="--reseed and --cv: memory the decoded data may take on each machine before they are "
                              "served from disk (default: as the search had it)")
    from visiontune.search.options import TrialResources

    add_options(analyze, TrialResources, group="where the --reseed and --cv retrains run, as trials of the search "
                                               "service (default: as the search's trials ran, on a local Ray)")
    analyze.set_defaults(handler=command_analyze)


def command_reproduce(args: argparse.Namespace) -> int:
    """List the report's studies, or run some and write their side-by-side tables."""
    from visiontune.data.options import DataOptions
    from visiontune.selection.reproduce import ReproduceOptions, reproduce
    from visiontune.selection.studies import STUDIES

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
        **given_options(DataOptions, args, only=("data_dir", "synthetic"))))
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
    add_data_options(parser, only=("data_dir", "synthetic"))
    parser.set_defaults(handler=command_reproduce)


# ------------------------------------------------------------------------------------- parser
def add_train_parser(commands) -> None:
    """The ``train`` sub-command."""
    train = commands.add_parser("train", help="train one configuration and evaluate it on the test split",
                                description="Train one configuration: keep the best epoch by the validation "
                                            "metric, evaluate it once on the test split, write a run folder.")
    train.add_argument("task", metavar="TASK|PATH", help=TASK_HELP)
    train.add_argument("--config", metavar="FILE", help="JSON file of settings (e.g. a run's config.json); "
                                                         "options given on the command line override it")
    train.add_argument("--out", metavar="DIR", help="run folder to create (default runs/train-TASK-MODEL-TIME)")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 [auto]")
    train.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    add_config_options(train)
    add_data_options(train)
    train.set_defaults(handler=command_train)


MODEL_HELP = "a train run folder, a search run folder, or a folder visiontune export wrote"
ENSEMBLE_HELP = ("a search's K best trials by validation, their class probabilities averaged; cv: the fold models "
                 "of its cross-validation's winner (analyze --cv) [1]")


def add_predict_parser(commands) -> None:
    """The ``predict`` sub-command."""
    predict = commands.add_parser(
        "predict", help="predict new images with a trained model",
        description="Apply a train run's model, a search's best trial by validation (or its K best, or its "
                    "cross-validation's fold ensemble), or an exported model, to image files, folders "
                    "(recursively) or zips, preprocessing them exactly as training did (the run's data-set card). "
                    "Classification writes predictions.csv (class and every class's probability); segmentation "
                    "a mask PNG per image at its own size (class indices) and areas.csv.")
    predict.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or .zip files")
    predict.add_argument("--out", required=True, metavar="DIR", help="folder to write the predictions into (new)")
    predict.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda [auto]")
    predict.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per batch [256]")
    predict.add_argument("--overlay", action="store_true",
                         help="segmentation: also write each image with its predicted classes painted over it")
    predict.add_argument("--ensemble", type=ensemble_choice, default=1, metavar="K|cv", help=ENSEMBLE_HELP)
    predict.set_defaults(handler=command_predict)


def add_export_parser(commands) -> None:
    """The ``export`` sub-command."""
    from visiontune.model_formats import FORMATS

    export = commands.add_parser(
        "export", help="export a trained model (pt2, TorchScript or ONNX) with its model card",
        description="Write a train run's network, or a search's best trial (or its K best, or its cross-validation's "
                    "fold ensemble, as one graph averaging them), as a torch.export program (pt2), TorchScript or "
                    "ONNX, with model.json: kind, classes, input and preprocessing, how to load the file, "
                    "configuration, validation and test figures, the training data's fingerprint, versions.")
    export.add_argument("run", metavar="RUN", help="a train run folder or a search run folder")
    export.add_argument("--format", required=True, choices=list(FORMATS),
                        help="pt2 (torch.export; plain torch loads it), torchscript (torch.jit.load), or onnx (needs "
                             "pip install 'visiontune[export]')")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write (new)")
    export.add_argument("--ensemble", type=ensemble_choice, default=1, metavar="K|cv", help=ENSEMBLE_HELP)
    export.set_defaults(handler=command_export)


def add_data_parser(commands) -> None:
    """The ``data`` sub-command."""
    data = commands.add_parser("data", help="check a data set (or download MNIST)",
                               description="Load a data set as training would (a built-in task, or a folder, .zip "
                                           "or dataset.yaml of your own images) and print its fingerprint: kind, "
                                           "classes, split, class balance, sizes, channels, normalisation, skipped "
                                           "files and every choice made; or download MNIST into the data folder.")
    data.add_argument("action", choices=["check", "download"], help="check: load and summarise; download: fetch MNIST")
    data.add_argument("task", metavar="TASK|PATH", help=TASK_HELP)
    add_data_options(data)
    data.set_defaults(handler=command_data)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser: one sub-command each."""
    parser = argparse.ArgumentParser(
        prog="visiontune",
        description="Hyperparameter search for image-analysis deep learning: classification and segmentation "
                    "of your own folders of images, or of the built-in data sets (MNIST, WARWICK glands, "
                    "Fashion-MNIST, KMNIST, CIFAR-10).",
    )
    parser.add_argument("--version", action="version", version=f"visiontune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_train_parser, add_search_parser, add_analyze_parser, add_predict_parser, add_export_parser,
                add_reproduce_parser, add_data_parser):
        add(commands)
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
    except SearchInterrupted as error:
        print(f"visiontune: {one_line(error)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VisiontuneError as error:
        print(f"visiontune: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("visiontune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
