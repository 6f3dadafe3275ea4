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
    runs.write_json(out_dir / runs.CONFIG_FILE, dataclasses.replace(config, precision=trainer.precision).to_dict(compact=True))
    runs.write_json(out_dir / runs.DATA_FILE, splits.describe())
    log = runs.MetricsLog(out_dir / runs.METRICS_FILE)
    progress(f"training {config.model_name()} ({trainer.num_parameters:,} weights) on {splits.task} "
             f"[{splits.sizes()['train']} train / {splits.sizes()['val']} val / {splits.sizes()['test']} test] "
             f"on {info['device']} ({trainer.precision}), {config.epochs} epochs")

    best_value, best_epoch, status, started = float("-inf"), 0, "finished", time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        try:
            train_metrics = trainer.fit_epoch()
        except TrainingDiverged as error:
            status = "diverged"
            progress(f"warning: {error}; keeping the best epoch so far")
            break
        val_metrics = trainer.evaluate("val")
        seconds = time.perf_counter() - epoch_start
        log.append({"epoch": epoch, **train_metrics, **val_metrics, "time_s": round(seconds, 3)})
        if val_metrics[metric] > best_value:
            best_value, best_epoch = val_metrics[metric], epoch
            runs.save_checkpoint(out_dir / runs.BEST_CHECKPOINT, trainer.model.state_dict())
        progress(f"epoch {epoch:>3}/{config.epochs}  {format_metrics(train_metrics, ['train/loss'])}  "
                 f"{format_metrics(val_metrics, ['val/loss', metric])}  best {best_value:.4f} @{best_epoch}  "
                 f"{seconds:.1f}s")
    if best_epoch == 0:
        raise VisiontuneError(f"training diverged in its first epoch (loss not finite); try a smaller --lr. "
                              f"Partial run folder: {out_dir}")

    trainer.model.load_state_dict(runs.load_checkpoint(out_dir / runs.BEST_CHECKPOINT, trainer.device))
    test_metrics = trainer.evaluate("test")  # the one and only look at the test split
    result = {
        "task": splits.task,
        "status": status,
        **test_metrics,
        "best_epoch": best_epoch,
        f"best_{metric}": best_value,
        "epochs_trained": trainer.epoch,
        "params": trainer.num_parameters,
        "precision": trainer.precision,
        "time_s": round(time.perf_counter() - started, 2),
        "data": splits.describe(),
        **info,
    }
    runs.write_json(out_dir / runs.RESULT_FILE, result)
    progress(f"best epoch {best_epoch} ({metric} {best_value:.4f}); test: "
             f"{format_metrics(test_metrics, [trainer.spec.test_metric, 'test/loss'])}")
    return result
