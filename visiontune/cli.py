"""Command-line front: ``visiontune train | data`` (search, analyze and reproduce build on these).

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
        print(f"visiontune: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("visiontune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
