"""Train one configuration end to end and write its run folder (``visiontune train``).

The run: build the trainer (bad data or config fail here, before anything is written), train
epoch by epoch keeping the best epoch by the validation metric, then evaluate that best epoch
once on the test split. The folder holds::

    config.json   the TrainConfig (feed it back with --config to repeat the run)
    data.json     data source, split sizes and split seed
    metrics.csv   one row per epoch: train and validation loss and metric, seconds
    best.pt       state dict of the best epoch (torch.load(..., weights_only=True))
    result.json   test metrics of the best epoch, the epoch, split sizes, versions, command
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from visiontune import runs
from visiontune.config import TrainConfig
from visiontune.data.splits import DataSplits
from visiontune.engine import Trainer, TrainingDiverged
from visiontune.errors import VisiontuneError


def format_metrics(values: dict[str, float], keys: list[str]) -> str:
    """``key value`` pairs for a progress line, four decimals."""
    return "  ".join(f"{key} {values[key]:.4f}" for key in keys if key in values)


@dataclass
class FitOutcome:
    """What a training run ended with: the best validation epoch, its weights, how it ended."""

    best_value: float
    best_epoch: int
    best_state: dict[str, Any] | None  # weights of the best epoch, on the CPU
    status: str  # "finished" or "diverged"


def fit_keeping_best(trainer: Trainer, epochs: int,
                     on_epoch: Callable[[int, dict, dict, float, bool], None] | None = None,
                     on_diverged: Callable[[TrainingDiverged], None] | None = None) -> FitOutcome:
    """Train up to ``epochs`` epochs, keeping the weights of the best validation epoch.

    ``on_epoch(epoch, train_metrics, val_metrics, seconds, improved)`` is called after each
    epoch. A diverging loss ends training early with status ``diverged``.
    """
    metric = trainer.spec.val_metric
    best = FitOutcome(float("-inf"), 0, None, "finished")
    while trainer.epoch < epochs:
        started = time.perf_counter()
        try:
            train_metrics = trainer.fit_epoch()
        except TrainingDiverged as error:
            best.status = "diverged"
            if on_diverged:
                on_diverged(error)
            break
        val_metrics = trainer.evaluate("val")
        improved = val_metrics[metric] > best.best_value
        if improved:
            best.best_value, best.best_epoch = val_metrics[metric], trainer.epoch
            best.best_state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        if on_epoch:
            on_epoch(trainer.epoch, train_metrics, val_metrics, time.perf_counter() - started, improved)
    return best


def train_one(
    config: TrainConfig,
    splits: DataSplits,
    out_dir: Path,
    device: str = "auto",
    threads: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``config`` on ``splits``, write the run folder ``out_dir``, return ``result.json``'s dict."""
    out_dir = runs.prepare_out_dir(Path(out_dir))
    trainer = Trainer(config, splits, device=device, threads=threads)
    metric = trainer.spec.val_metric
    out_dir.mkdir(parents=True, exist_ok=True)
    info = runs.provenance(trainer.device)
    # Recorded with the precision "auto" resolved to, so that --config repeats the run exactly.
    runs.write_json(out_dir / runs.CONFIG_FILE,
                    dataclasses.replace(config, precision=trainer.precision).to_dict(compact=True))
    runs.write_json(out_dir / runs.DATA_FILE, splits.describe())
    log = runs.MetricsLog(out_dir / runs.METRICS_FILE)
    progress(f"training {config.model_name()} ({trainer.num_parameters:,} weights) on {splits.task} "
             f"[{splits.sizes()['train']} train / {splits.sizes()['val']} val / {splits.sizes()['test']} test] "
             f"on {info['device']} ({trainer.precision}), {config.epochs} epochs")
    started = time.perf_counter()
    best_so_far = [float("-inf"), 0]

    def on_epoch(epoch: int, train_metrics: dict, val_metrics: dict, seconds: float, improved: bool) -> None:
        log.append({"epoch": epoch, **train_metrics, **val_metrics, "time_s": round(seconds, 3)})
        if improved:
            best_so_far[:] = [val_metrics[metric], epoch]
            runs.save_checkpoint(out_dir / runs.BEST_CHECKPOINT, trainer.model.state_dict())
        progress(f"epoch {epoch:>3}/{config.epochs}  {format_metrics(train_metrics, ['train/loss'])}  "
                 f"{format_metrics(val_metrics, ['val/loss', metric])}  "
                 f"best {best_so_far[0]:.4f} @{best_so_far[1]}  {seconds:.1f}s")

    outcome = fit_keeping_best(trainer, config.epochs, on_epoch,
                               lambda error: progress(f"warning: {error}; keeping the best epoch so far"))
    if outcome.best_state is None:
        raise VisiontuneError(f"training diverged in its first epoch (loss not finite); try a smaller --lr. "
                              f"Partial run folder: {out_dir}")
    trainer.model.load_state_dict(outcome.best_state)
    test_metrics = trainer.evaluate("test")  # the one and only look at the test split
    result = {
        "task": splits.task,
        "status": outcome.status,
        **test_metrics,
        "best_epoch": outcome.best_epoch,
        f"best_{metric}": outcome.best_value,
        "epochs_trained": trainer.epoch,
        "params": trainer.num_parameters,
        "precision": trainer.precision,
        "time_s": round(time.perf_counter() - started, 2),
        "data": splits.describe(),
        **info,
    }
    runs.write_json(out_dir / runs.RESULT_FILE, result)
    progress(f"best epoch {outcome.best_epoch} ({metric} {outcome.best_value:.4f}); test: "
             f"{format_metrics(test_metrics, [trainer.spec.test_metric, 'test/loss'])}")
    return result
