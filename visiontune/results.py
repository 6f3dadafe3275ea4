"""Turning a finished search into its record: trial summaries, ranking, test evaluation of the top-k.

The ranking uses the validation metric only (each trial's best epoch); the test split is looked
at once, after the search, for the top-k trials, from their best checkpoints.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontune import runs
from visiontune.config import config_from_dict
from visiontune.data.splits import DataSplits
from visiontune.engine import Trainer
from visiontune.metrics import dice_per_image, segmentation_map
from visiontune.trainables.loop import BUDGET_END, DIVERGED, EPOCH, NODE_ID, PARAMS, STATE_FILE, best_name

FINISHED, STOPPED, BUDGET, DIVERGED_STATUS, FAILED, SKIPPED = (
    "finished", "stopped", "stopped (time budget)", "diverged", "failed", "not started (time budget)")


@dataclass
class TrialSummary:
    """One trial of a search, as the ranked table shows it."""

    trial_id: str
    status: str
    config: dict[str, Any]
    best_value: float | None  # best validation metric over its epochs (None: no finite epoch)
    best_epoch: int
    epochs: int
    time_s: float
    params: int | None
    node_ids: list[str] = field(default_factory=list)
    node_ips: list[str] = field(default_factory=list)  # the nodes' addresses, as Ray Tune records them
    path: str = ""  # trial folder, relative to the run folder
    error: str = ""


def trial_status(result_metrics: dict, error: Any, max_epochs: int, deadline: float | None) -> str:
    """How a trial ended, from its last report and error."""
    if error is not None:
        return FAILED
    if not result_metrics or not result_metrics.get(EPOCH):
        return SKIPPED
    if result_metrics.get(DIVERGED):
        return DIVERGED_STATUS
    if result_metrics[EPOCH] >= max_epochs:
        return FINISHED
    if result_metrics.get(BUDGET_END):
        return BUDGET
    # Runs recorded before BUDGET_END existed: Ray's timestamp, whole seconds.
    recorded_before = BUDGET_END not in result_metrics
    if recorded_before and deadline is not None and result_metrics.get("timestamp", 0) >= int(deadline):
        return BUDGET
    return STOPPED


def summarize(result_grid, metric: str, max_epochs: int, deadline: float | None, run_dir: str) -> list[TrialSummary]:
    """A :class:`TrialSummary` per trial of a Ray Tune ``ResultGrid``."""
    summaries = []
    for result in result_grid:
        metrics = result.metrics or {}
        frame = result.metrics_dataframe
        nodes = sorted(set(frame[NODE_ID].dropna())) if frame is not None and NODE_ID in frame else []
        addresses = sorted(set(frame["node_ip"].dropna())) if frame is not None and "node_ip" in frame else []
        best = metrics.get(best_name(metric))
        best_epoch = int(metrics.get("best_epoch") or 0)
        path = result.path or ""
        summaries.append(TrialSummary(
            trial_id=str(metrics.get("trial_id") or Path(path).name),
            status=trial_status(metrics, result.error, max_epochs, deadline),
            config=dict(result.config or {}),
            best_value=float(best) if best is not None and best_epoch > 0 and math.isfinite(best) else None,
            best_epoch=best_epoch,
            epochs=int(metrics.get(EPOCH) or 0) - (1 if metrics.get(DIVERGED) else 0),
            time_s=float(metrics.get("time_total_s") or 0.0),
            params=metrics.get(PARAMS),
            node_ids=nodes,
            node_ips=[str(address) for address in addresses],
            path=os.path.relpath(path, run_dir) if path and not _is_remote(path) else Path(path).name,
            error=str(result.error).splitlines()[0] if result.error else "",
        ))
    return summaries


def _is_remote(path: str) -> bool:
    return "://" in path


def rank(summaries: list[TrialSummary]) -> list[TrialSummary]:
    """Best validation metric first; trials without one last; ties by earlier epoch, then id."""
    return sorted(summaries, key=lambda s: (s.best_value is None, -(s.best_value or 0.0), s.best_epoch, s.trial_id))


def varying_params(summaries: list[TrialSummary], exclude: tuple[str, ...] = ("task", "epochs")) -> list[str]:
    """Config keys whose value differs between trials (or is missing in some), in first-seen order."""
    keys: list[str] = []
    for summary in summaries:
        keys.extend(k for k in summary.config if k not in keys and k not in exclude)
    return [k for k in keys if len({repr(s.config.get(k)) for s in summaries}) > 1]


def trials_frame(ranked: list[TrialSummary], metric: str, test: dict[str, dict] | None = None) -> pd.DataFrame:
    """The ranked table: rank, id, status, varying parameters, best metric, epoch, epochs, time, test metrics."""
    columns = varying_params(ranked)
    rows = []
    for position, summary in enumerate(ranked, start=1):
        row = {"rank": position, "trial_id": summary.trial_id, "status": summary.status}
        row.update({key: summary.config.get(key) for key in columns})
        row.update({f"best_{metric}": summary.best_value, "best_epoch": summary.best_epoch,
                    "epochs": summary.epochs, "time_s": round(summary.time_s, 1), "params": summary.params,
                    "nodes": ";".join(summary.node_ids), "node_ips": ";".join(summary.node_ips),
                    "path": summary.path})
        for name, value in ((test or {}).get(summary.trial_id) or {}).items():
            if name.startswith("test/"):
                row[name] = value
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_front(summaries: list[TrialSummary]) -> list[TrialSummary]:
    """Trials not dominated in (best validation metric: higher, learnable weights: fewer)."""
    scored = [s for s in summaries if s.best_value is not None and s.params is not None]
    front = []
    for s in scored:
        dominated = any(o.best_value >= s.best_value and o.params <= s.params
                        and (o.best_value > s.best_value or o.params < s.params) for o in scored)
        if not dominated:
            front.append(s)
    return sorted(front, key=lambda s: s.params)


def best_checkpoint(result, metric: str):
    """The checkpoint of a trial's best validation epoch (Ray keeps it beside the latest)."""
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if m.get(metric) is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda pair: pair[1][metric])[0]


def evaluate_on_test(config: dict[str, Any], state: dict[str, Any], data: DataSplits,
                     device: str = "auto") -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Test metrics of a saved model, and the predictions analysis needs (confusion, per-image Dice)."""
    trainer = Trainer(config_from_dict(dict(config), "trial config"), data, device=device)
    trainer.model.load_state_dict(state["trainer"]["model"])
    metrics = trainer.evaluate("test")
    logits = trainer.predict("test")
    targets = data.test.targets
    if trainer.spec.kind == "classification":
        predicted = logits.argmax(1)
        wrong = (predicted != targets).nonzero().flatten()
        arrays = {"predicted": predicted.numpy().astype(np.uint8), "target": targets.numpy().astype(np.uint8),
                  "wrong_index": wrong.numpy(), "wrong_images": data.test.images[wrong].numpy()}
    else:
        masks = segmentation_map(logits)
        arrays = {"dice": dice_per_image(masks, targets).numpy(), "predicted": masks.numpy().astype(np.uint8),
                  "target": targets.numpy().astype(np.uint8), "images": data.test.images.numpy()}
    return metrics, arrays


def evaluate_top_k(result_grid, ranked: list[TrialSummary], metric: str, data: DataSplits, top_k: int,
                   progress=print) -> tuple[dict[str, dict], dict[str, bytes]]:
    """Evaluate the ``top_k`` best trials once on the test split, from their best checkpoints.

    Returns ``{trial_id: {"rank", "best_epoch", "test/...", "config"}}`` and, per trial, the
    predictions as ``.npz`` bytes.
    """
    by_id = {}
    for result in result_grid:
        trial_id = str((result.metrics or {}).get("trial_id") or Path(result.path or "").name)
        by_id[trial_id] = result
    evaluated, predictions = {}, {}
    candidates = [s for s in ranked if s.best_value is not None][:top_k]
    for position, summary in enumerate(candidates, start=1):
        checkpoint = best_checkpoint(by_id[summary.trial_id], metric)
        if checkpoint is None:
            progress(f"warning: trial {summary.trial_id} has no checkpoint to evaluate on test; skipped")
            continue
        with checkpoint.as_directory() as folder:
            state = runs.load_checkpoint(Path(folder) / STATE_FILE)
        test_metrics, arrays = evaluate_on_test(summary.config, state, data)
        evaluated[summary.trial_id] = {"rank": position, "best_epoch": int(state["best_epoch"]),
                                       f"best_{metric}": summary.best_value, **test_metrics,
                                       "config": summary.config}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        predictions[summary.trial_id] = buffer.getvalue()
    return evaluated, predictions


def summaries_as_dicts(summaries: list[TrialSummary]) -> list[dict[str, Any]]:
    """Plain dicts for JSON."""
    return [asdict(s) for s in summaries]
