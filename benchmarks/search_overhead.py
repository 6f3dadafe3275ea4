"""Search overhead: the fraction of worker time a search spends inside training and evaluation.

A fixed 16-trial MNIST grid (CNN blocks x width x Adam lr x batch size, no early stopping) runs
with 2 workers of one CPU each, four ways:

- visiontune (`visiontune search --searcher grid`): data in the object store once, trials reuse
  their worker processes;
- visiontune with a fresh worker process per trial (`--fresh-worker-per-trial`);
- a plain Ray Tune script, the usual way: each trial loads MNIST from its files itself, trains
  with a DataLoader, checkpoints every epoch, and gets a new worker process;
- plain Optuna, the single-machine tool a user would otherwise pick: one process,
  `study.optimize(n_jobs=2)` (two threads), TPE with the grid's points enqueued so the same
  trials run, Optuna's own pruner (successive halving, asked after every epoch), the data
  loaded once and kept in memory, the same DataLoader loop as the plain Ray Tune script.

Useful time is the time each trial spends in its training and validation passes (what the
trial would cost with zero overhead); the fraction is useful time / (wall time of the trials'
phase x 2 workers).

    python benchmarks/search_overhead.py --quick      # 8 trials on 10,000 images, a few minutes
    python benchmarks/search_overhead.py              # 16 trials on the full 55,000, ~15 minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# A local Ray keeps to loopback only with this set before ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, git_revision, machine, save  # noqa: E402

WORKERS = 2
GRID = {"blocks": [2, 3], "width": [8, 16], "lr": [1e-3, 3e-3], "batch_size": [32, 64]}
QUICK_GRID = {"blocks": [2, 3], "width": [8, 16], "lr": [1e-3, 3e-3], "batch_size": [64]}


def useful_seconds(run: Path) -> tuple[float, int]:
    """Sum of every trial's epoch_time_s (training + validation) and the number of epochs (an
    epoch repeated after a retry counts once: the run record's per-epoch frames)."""
    from visiontune.runfolder import load_search

    trials = load_search(run).trials
    return sum(trial.compute_seconds() for trial in trials), sum(len(trial.epochs) for trial in trials)


def run_visiontune(grid: dict, epochs: int, train_limit: int | None, data_dir: str | None, storage: Path,
                   reuse: bool) -> dict:
    from visiontune.search import SearchOptions, run_search

    space = storage / f"grid-{reuse}.json"
    space.write_text(json.dumps({"description": "overhead benchmark grid",
                                 "params": {"model": "cnn", "optimizer": "adam", **grid}}))
    name = "visiontune" if reuse else "visiontune-fresh-workers"
    options = SearchOptions(task="mnist", space=str(space), searcher="grid", scheduler="none", max_epochs=epochs,
                            cpus_per_trial=1, storage=str(storage), name=name, report=False, top_k=1,
                            data_dir=data_dir, train_limit=train_limit, fresh_worker_per_trial=not reuse,
                            fixed={"precision": "fp32"})
    started = time.perf_counter()
    summary = run_search(options, progress=lambda line: None)
    command_s = time.perf_counter() - started
    useful, count = useful_seconds(storage / name)
    return {"fit_s": summary["fit_s"], "command_s": command_s, "useful_s": useful, "epochs": count,
            "fraction": useful / (summary["fit_s"] * WORKERS)}


def plain_training(config: dict, splits, report) -> None:
    """The loop a user writes by hand: DataLoader batches, Adam, one validation pass per epoch.

    ``report(epoch, val_acc, useful_seconds, model, optimizer)`` is called after every epoch and
    may return True to stop (a pruner).
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from visiontune.models import build_model

    train = TensorDataset(splits.train.images.float().div(255.0), splits.train.targets.long())
    val = TensorDataset(splits.val.images.float().div(255.0), splits.val.targets.long())
    train_loader = DataLoader(train, batch_size=config["batch_size"], shuffle=True)
    val_loader = DataLoader(val, batch_size=1000)
    torch.manual_seed(0)
    model = build_model("cnn", "classification", blocks=config["blocks"], width=config["width"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, config["epochs"] + 1):
        started = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
        if report(epoch, correct / len(val), time.perf_counter() - started, model, optimizer):
            return


def plain_trainable(config: dict) -> None:
    """A plain Ray Tune trial: load the data, DataLoader loop, checkpoint every epoch."""
    import torch
    from ray import tune

    from visiontune.data import load_splits
    from visiontune.record import EPOCH, EPOCH_TIME

    torch.set_num_threads(1)
    splits = load_splits("mnist", data_dir=config["data_dir"], train_limit=config["train_limit"], download=False)

    def report(epoch, accuracy, useful, model, optimizer):
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                       os.path.join(folder, "state.pt"))
            tune.report({"val/acc": accuracy, EPOCH: epoch, EPOCH_TIME: useful},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    plain_training(config, splits, report)


def run_optuna(grid: dict, epochs: int, train_limit: int | None, data_dir: str | None) -> dict:
    """Plain Optuna: study.optimize(n_jobs=2) in this process, TPE, successive-halving pruning."""
    import itertools

    import optuna
    import torch

    from visiontune.data import load_splits

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # two trials at once, one core each, as the other three runs
    splits = load_splits("mnist", data_dir=data_dir, train_limit=train_limit, download=False)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.SuccessiveHalvingPruner())
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    for point in points:
        study.enqueue_trial(point)  # the same trials as the grid runs
    useful: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        config = {"blocks": trial.suggest_categorical("blocks", grid["blocks"]),
                  "width": trial.suggest_categorical("width", grid["width"]),
                  "lr": trial.suggest_categorical("lr", grid["lr"]),
                  "batch_size": trial.suggest_categorical("batch_size", grid["batch_size"]), "epochs": epochs}
        best = [0.0]

        def report(epoch, accuracy, seconds, model, optimizer):
            useful.append(seconds)
            best[0] = max(best[0], accuracy)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()  # Optuna's way: the trial ends here, recorded as pruned

        plain_training(config, splits, report)
        return best[0]

    started = time.perf_counter()
    study.optimize(objective, n_trials=len(points), n_jobs=WORKERS)
    fit_s = time.perf_counter() - started
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {"fit_s": fit_s, "command_s": fit_s, "useful_s": sum(useful), "epochs": len(useful),
            "fraction": sum(useful) / (fit_s * WORKERS), "pruned": pruned}


def run_plain(grid: dict, epochs: int, train_limit: int | None, data_dir: str | None, storage: Path) -> dict:
    from ray import tune

    param_space = {key: tune.grid_search(values) for key, values in grid.items()}
    param_space.update(epochs=epochs, train_limit=train_limit,
                       data_dir=data_dir or os.environ.get("VISIONTUNE_DATA"))
    tuner = tune.Tuner(tune.with_resources(plain_trainable, {"cpu": 1}), param_space=param_space,
                       run_config=tune.RunConfig(name="plain", storage_path=str(storage), verbose=0),
                       tune_config=tune.TuneConfig(metric="val/acc", mode="max",
                                                   trial_dirname_creator=lambda t: f"trial_{t.trial_id}"))
    started = time.perf_counter()
    tuner.fit()
    fit_s = time.perf_counter() - started
    useful, count = useful_seconds(storage / "plain")
    return {"fit_s": fit_s, "command_s": fit_s, "useful_s": useful, "epochs": count,
            "fraction": useful / (fit_s * WORKERS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 trials on 10,000 training images")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial [2]")
    parser.add_argument("--data-dir", help="data folder (default $VISIONTUNE_DATA)")
    args = parser.parse_args(argv)
    import ray

    grid = QUICK_GRID if args.quick else GRID
    train_limit = 10_000 if args.quick else None
    trials = 1
    for values in grid.values():
        trials *= len(values)
    info = machine()
    print(f"search overhead on {describe(info)}: {trials} MNIST trials x {args.epochs} epochs, "
          f"{WORKERS} workers of 1 CPU{' (quick: 10,000 training images)' if args.quick else ''}")
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    rows = {}
    try:
        with tempfile.TemporaryDirectory(prefix="vt-overhead-") as folder:
            storage = Path(folder)
            for name, run in (("visiontune", lambda: run_visiontune(grid, args.epochs, train_limit, args.data_dir,
                                                                     storage, reuse=True)),
                              ("visiontune, fresh worker per trial",
                               lambda: run_visiontune(grid, args.epochs, train_limit, args.data_dir, storage,
                                                      reuse=False)),
                              ("plain Ray Tune script", lambda: run_plain(grid, args.epochs, train_limit,
                                                                          args.data_dir, storage)),
                              ("plain Optuna, n_jobs=2", lambda: run_optuna(grid, args.epochs, train_limit,
                                                                            args.data_dir))):
                rows[name] = run()
                row = rows[name]
                print(f"  {name:36s} trials phase {row['fit_s']:6.1f} s, useful {row['useful_s']:6.1f} s over "
                      f"{row['epochs']} epochs -> fraction {row['fraction']:.2f}"
                      + (f" ({row['pruned']} trials pruned)" if "pruned" in row else ""), flush=True)
    finally:
        ray.shutdown()
    path = save(f"search_overhead{'-quick' if args.quick else ''}",
                {"machine": info, "revision": git_revision(), "trials": trials, "epochs": args.epochs,
                 "train_limit": train_limit, "grid": grid, "rows": rows})
    ours, plain = rows["visiontune"], rows["plain Ray Tune script"]
    optuna_row = rows["plain Optuna, n_jobs=2"]
    print(f"SUMMARY search overhead: useful fraction visiontune {ours['fraction']:.2f}, plain Ray Tune "
          f"{plain['fraction']:.2f}, plain Optuna {optuna_row['fraction']:.2f}; trials phase {ours['fit_s']:.0f} s, "
          f"{plain['fit_s']:.0f} s, {optuna_row['fit_s']:.0f} s ({optuna_row['epochs']} of {ours['epochs']} epochs run "
          f"by Optuna, {optuna_row['pruned']} trials pruned) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
