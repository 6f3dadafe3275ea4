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
from visiontune.data.placement import Placement, place
from visiontune.data.splits import DataSplits
from visiontune.engine import Trainer
from visiontune.errors import VisiontuneError
from visiontune.fit import BestSoFar, EpochEnd, fit_epochs
from visiontune.trained import TrainedModel
from visiontune.record import (BEST_CHECKPOINT, BEST_EPOCH, CONFIG_FILE, DATA_FILE, EPOCH, METRICS_FILE, PARAMS,
                               PRECISION, RESULT_FILE, best_column)


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
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Train ``config`` on ``splits``, write the run folder ``out_dir``, return ``result.json``'s dict.

    ``placement`` (``data.placement.plan``) says where the data are kept; default: the trainer's.
    """
    out_dir = runs.prepare_out_dir(Path(out_dir))
    if placement is not None:
        splits = place(splits, placement, local=True)
        progress(placement.line())
    trainer = Trainer(config, splits, device=device, threads=threads,
                      placement=placement.where if placement else None)
    metric = trainer.kind.val_metric
    out_dir.mkdir(parents=True, exist_ok=True)
    info = runs.provenance(trainer.device)
    # Recorded with the precision "auto" resolved to, so that --config repeats the run exactly.
    runs.write_json(out_dir / CONFIG_FILE,
                    dataclasses.replace(config, precision=trainer.precision).to_dict(compact=True))
    runs.write_json(out_dir / DATA_FILE, splits.describe())
    log = runs.MetricsLog(out_dir / METRICS_FILE)
    progress(f"training {config.model_name(trainer.card.kind)} ({trainer.num_parameters:,} weights) on {splits.task} "
             f"[{splits.sizes()['train']} train / {splits.sizes()['val']} val / {splits.sizes()['test']} test] "
             f"on {info['device']} ({trainer.precision}), {config.epochs} epochs")
    started = time.perf_counter()
    best = BestSoFar()
    best_state: dict[str, Any] = {}  # weights of the best epoch, on the CPU

    def on_epoch(end: EpochEnd) -> None:
        log.append({EPOCH: end.epoch, **end.train_metrics, **end.val_metrics, "time_s": round(end.seconds, 3)})
        if end.improved:
            best_state.clear()
            best_state.update({k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()})
            runs.save_checkpoint(out_dir / BEST_CHECKPOINT, trainer.model.state_dict())
        progress(f"epoch {end.epoch:>3}/{config.epochs}  {format_metrics(end.train_metrics, ['train/loss'])}  "
                 f"{format_metrics(end.val_metrics, ['val/loss', metric])}  "
                 f"best {best.value:.4f} @{best.epoch}  {end.seconds:.1f}s")

    status = fit_epochs(trainer, config.epochs, best, on_epoch,
                        lambda error: progress(f"warning: {error}; keeping the best epoch so far"))
    if not best_state:
        raise VisiontuneError(f"training diverged in its first epoch (loss not finite); try a smaller --lr. "
                              f"Partial run folder: {out_dir}")
    # The one and only look at the test split, by the model layer: what predict and export run.
    model = TrainedModel.from_weights(splits.card, [(config, best_state, trainer.use_bf16)], trainer.device)
    test_metrics = model.evaluate(splits.test, "test").metrics
    result = {
        "task": splits.task,
        "status": status,
        **test_metrics,
        BEST_EPOCH: best.epoch,
        best_column(metric): best.value,
        "epochs_trained": trainer.epoch,
        PARAMS: trainer.num_parameters,
        PRECISION: trainer.precision,
        "time_s": round(time.perf_counter() - started, 2),
        "data": splits.describe(),
        **info,
    }
    runs.write_json(out_dir / RESULT_FILE, result)
    progress(f"best epoch {best.epoch} ({metric} {best.value:.4f}); test: "
             f"{format_metrics(test_metrics, [trainer.kind.test_metric, 'test/loss'])}")
    return result
