"""The figures of an analysis, drawn with matplotlib's object API (no global pyplot state).

Every function returns a :class:`matplotlib.figure.Figure` of a fixed size; :func:`save` writes it
as a PNG at 100 dpi, so a figure of ``figsize=(10, 4)`` is 1000 x 400 pixels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import cm, colors
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from visiontune.colours import PALETTE, class_colour, colour
from visiontune.image_files import IGNORE_LABEL, stretched

from visiontune.runfolder import SearchRun
from visiontune.record import DIVERGED, EPOCH, EPOCH_TIME, ITERATION_TIME, TIMESTAMP, TrialRecord, is_missing, metric_mode

DPI = 100


def save(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG at its exact size."""
    figure.savefig(path, dpi=DPI, format="png")
    return path


def learning_curves(trials: list[TrialRecord], metric: str, title: str, train_metric: str | None = None) -> Figure:
    """Train and validation loss, and the validation metric, per epoch, for the given trials
    (``train_metric``: the running training figure to draw dashed beside it)."""
    figure = Figure(figsize=(12, 4.5))
    loss_axes, metric_axes = figure.subplots(1, 2)
    for index, trial in enumerate(trials):
        color, frame = colour(index), trial.epochs
        if frame.empty:
            continue
        label = f"#{index + 1} {trial.trial_id}"
        if "train/loss" in frame:
            loss_axes.plot(frame[EPOCH], frame["train/loss"], "--", color=color, alpha=0.7)
        if "val/loss" in frame:
            loss_axes.plot(frame[EPOCH], frame["val/loss"], "-", color=color, label=label)
        if metric in frame:
            metric_axes.plot(frame[EPOCH], frame[metric], "-", color=color, label=label)
        if train_metric and train_metric in frame:
            metric_axes.plot(frame[EPOCH], frame[train_metric], "--", color=color, alpha=0.7)
    loss_axes.set(title="loss (solid: validation, dashed: training)", xlabel="epoch", ylabel="loss")
    metric_axes.set(title=f"{metric} (dashed: training)", xlabel="epoch", ylabel=metric)
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
    metric_axes.legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure


def anytime_points(run: SearchRun, metric: str | None = None) -> pd.DataFrame:
    """Every epoch report of the search in time order, with cumulative compute and best-so-far."""
    metric = metric or run.metric
    mode = metric_mode(metric)
    rows = []
    for trial in run.trials:
        frame = trial.epochs
        if frame.empty or metric not in frame:
            continue
        seconds = frame[EPOCH_TIME] if EPOCH_TIME in frame else frame.get(ITERATION_TIME)
        stamp = frame[TIMESTAMP] if TIMESTAMP in frame else pd.Series(range(len(frame)))
        for position in range(len(frame)):
            diverged = bool(frame[DIVERGED].iloc[position]) if DIVERGED in frame else False
            rows.append({"timestamp": float(stamp.iloc[position]), "trial": trial.trial_id,
                         "epoch": int(frame[EPOCH].iloc[position]),
                         "value": math.nan if diverged else float(frame[metric].iloc[position]),
                         "seconds": float(seconds.iloc[position]) if seconds is not None else 0.0})
    points = pd.DataFrame(rows, columns=["timestamp", "trial", "epoch", "value", "seconds"])
    if points.empty:
        return points.assign(trial_epochs=[], compute_s=[], best=[])
    points = points.sort_values(["timestamp", "trial", "epoch"], kind="stable").reset_index(drop=True)
    points["trial_epochs"] = np.arange(1, len(points) + 1)
    points["compute_s"] = points["seconds"].fillna(0).cumsum()
    values = points["value"].fillna(-math.inf if mode == "max" else math.inf)
    points["best"] = values.cummax() if mode == "max" else values.cummin()
    points.loc[~np.isfinite(points["best"]), "best"] = math.nan
    return points


def anytime(runs: list[SearchRun], metric: str | None = None, title: str = "") -> Figure:
    """Best validation metric so far against cumulative trial-epochs and compute seconds."""
    figure = Figure(figsize=(12, 4.5))
    epochs_axes, seconds_axes = figure.subplots(1, 2)
    for index, run in enumerate(runs):
        points = anytime_points(run, metric)
        if points.empty:
            continue
        color = colour(index)
        epochs_axes.step(points["trial_epochs"], points["best"], where="post", color=color, label=run.name)
        seconds_axes.step(points["compute_s"] / 60, points["best"], where="post", color=color, label=run.name)
    shown = metric or runs[0].metric
    epochs_axes.set(title="by trial-epochs", xlabel="cumulative trial-epochs", ylabel=f"best {shown} so far")
    seconds_axes.set(title="by compute time", xlabel="cumulative trial compute (minutes)",
                     ylabel=f"best {shown} so far")
    for axes in (epochs_axes, seconds_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
    figure.suptitle(title or "anytime performance of the search")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure


def _axis_values(values: list[Any]) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values mapped to [0, 1] for one parallel axis, and (position, label) ticks."""
    present = [v for v in values if not is_missing(v)]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric:
        low, high = min(present), max(present)
        logarithmic = low > 0 and high / low >= 100
        transform = (lambda v: math.log10(v)) if logarithmic else (lambda v: float(v))
        lo, hi = transform(low), transform(high)
        span = (hi - lo) or 1.0
        mapped = np.array([math.nan if is_missing(v) else (transform(v) - lo) / span for v in values])
        ticks = [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")]
        return mapped, ticks
    categories = sorted({str(v) for v in present})
    step = 1.0 / max(len(categories) - 1, 1)
    position = {c: i * step for i, c in enumerate(categories)}
    mapped = np.array([math.nan if is_missing(v) else position[str(v)] for v in values])
    return mapped, [(position[c], c) for c in categories]


def parallel_coordinates(run: SearchRun, parameters: list[str], metric: str | None = None) -> Figure:
    """One line per trial across the searched parameters, coloured by its best validation metric."""
    metric = metric or run.metric
    mode = metric_mode(metric)
    scored = [(trial, trial.best(metric)[0]) for trial in run.trials]
    scored = [(t, v) for t, v in scored if v is not None]
    figure = Figure(figsize=(12, 5))
    axes = figure.subplots()
    names = list(parameters[:12]) + [metric]
    if not scored:
        axes.text(0.5, 0.5, "no trial has a validation result yet", ha="center", va="center")
        axes.set_axis_off()
        return figure
    columns = []
    for name in names:
        values = [value if name == metric else trial.config.get(name) for trial, value in scored]
        columns.append(_axis_values(values))
    norm = colors.Normalize(min(v for _, v in scored), max(v for _, v in scored))
    colormap = matplotlib.colormaps["viridis"]
    order = np.argsort([v for _, v in scored])
    order = order if mode == "max" else order[::-1]  # best drawn last, on top
    x = np.arange(len(names))
    for index in order:
        y = np.array([column[0][index] for column in columns])
        axes.plot(x, y, color=colormap(norm(scored[index][1])), alpha=0.8, linewidth=1.5)
    for position, (_, ticks) in enumerate(columns):
        axes.axvline(position, color="grey", linewidth=0.8)
        for tick, label in ticks:
            axes.text(position + 0.03, tick, label, fontsize=7, va="center")
    axes.set_xticks(x, [n.replace("_", " ") for n in names], rotation=20, fontsize=8)
    axes.set_yticks([])
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(f"searched parameters of each trial, coloured by best {metric} (log axes where a range spans 100x)")
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=axes, label=f"best {metric}")
    figure.tight_layout()
    return figure


def importance(importances: dict[str, float], basis: str) -> Figure:
    """Horizontal bars of parameter importances (PED-ANOVA, summing to 1)."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    if importances:
        names = list(importances)[::-1]
        axes.barh(names, [importances[n] for n in names], color=PALETTE[0])
        axes.set_xlim(0, 1)
    else:
        axes.text(0.5, 0.5, "not enough finished trials with varying parameters", ha="center", va="center")
    axes.set(xlabel="importance (PED-ANOVA, normalised to sum to 1)", title=f"parameter importance\n({basis})")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, class_names: list[str]) -> Figure:
    """The test confusion matrix (rows: true class, columns: predicted), counts annotated, classes named."""
    classes = len(class_names)
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (target.astype(int), predicted.astype(int)), 1)
    side = 6.0 if classes <= 10 else min(20.0, 0.45 * classes + 1.5)  # room for every class's name
    figure = Figure(figsize=(side + 1, side))
    axes = figure.subplots()
    image = axes.imshow(np.log1p(matrix), cmap="Blues")
    if classes <= 30:  # beyond that the numbers would not fit their cells
        for row in range(classes):
            for column in range(classes):
                if matrix[row, column]:
                    axes.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7,
                              color="white" if row == column else "black")
    long_names = max(len(name) for name in class_names) > 3
    axes.set_xticks(range(classes), class_names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    axes.set_yticks(range(classes), class_names)
    axes.set(xlabel="predicted", ylabel="true",
             title=f"test confusion matrix ({int(np.trace(matrix))}/{matrix.sum()} correct)")
    figure.colorbar(image, ax=axes, label="log(1 + count)")
    figure.tight_layout()
    return figure


def picture(image: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image as something ``imshow`` shows as it looks: 8-bit grey as is, RGB as
    RGB, WARWICK's two stain channels as red and green, like the data set's own PNGs; deeper
    images each channel stretched from its 1st to 99th percentile, more than three channels as
    their first three."""
    if image.dtype != np.uint8:
        image = np.stack([stretched(plane) for plane in image[:3]])
    if image.shape[0] == 1:
        return image[0]
    if image.shape[0] == 2:
        return stain_rgb(image)
    return np.ascontiguousarray(image[:3].transpose(1, 2, 0))


def misclassified(images: np.ndarray, target: np.ndarray, predicted: np.ndarray, class_names: list[str],
                  count: int = 40, total: int | None = None) -> Figure:
    """A grid of misclassified test images titled 'true -> predicted' (``total``: how many were
    misclassified, where ``images`` holds only the first of them)."""
    figure = Figure(figsize=(10, 5))
    shown = min(count, len(images))
    grid = figure.subplots(4, 10)
    for index, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if index < shown:
            image = picture(images[index])
            axes.imshow(image, cmap="gray_r" if image.ndim == 2 else None)
            axes.set_title(f"{class_names[target[index]]} -> {class_names[predicted[index]]}", fontsize=7,
                           color="#b00")
    figure.suptitle(f"misclassified test images (true -> predicted): {shown} of {total or len(images)} shown")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure


def stain_rgb(image: np.ndarray) -> np.ndarray:
    """Two stain channels (2, H, W) uint8 as an RGB picture, like the data set's own PNGs."""
    rgb = np.zeros((*image.shape[1:], 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = image[0], image[1]
    return rgb


IGNORED_COLOUR = "#808080"


def class_colours(count: int) -> colors.ListedColormap:
    """One colour per class, the background black (a mask drawn with it shows each class apart)."""
    return colors.ListedColormap(["#000000"] + [class_colour(i) for i in range(1, count)])


def best_and_worst(images: np.ndarray, target: np.ndarray, predicted: np.ndarray, dice: np.ndarray,
                   class_names: list[str]) -> Figure:
    """The three best and three worst test images: image, ground truth, prediction (a colour per
    class, named in the legend), per-image Dice."""
    order = np.argsort(dice)
    picks = [(i, "best") for i in order[::-1][:3]] + [(i, "worst") for i in order[:3]]
    figure = Figure(figsize=(9, 15))
    grid = figure.subplots(len(picks), 3)
    palette = class_colours(len(class_names)).with_extremes(bad=IGNORED_COLOUR)  # ignored pixels (IGNORE_LABEL)
    for row, (index, kind) in enumerate(picks):
        truth = np.ma.masked_equal(target[index], IGNORE_LABEL)
        panels = [(picture(images[index]), "image"), (truth, "ground truth"),
                  (predicted[index], f"prediction, Dice {dice[index]:.3f}")]
        for column, (shown, label) in enumerate(panels):
            axes = grid[row, column]
            if column == 0:
                axes.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            else:
                axes.imshow(shown, cmap=palette, vmin=0, vmax=len(class_names) - 1, interpolation="nearest")
            axes.set_axis_off()
            axes.set_title(f"{kind} #{row % 3 + 1} (test {index + 1}): {label}" if column == 0 else label, fontsize=8)
    handles = [Patch(color=palette(i), label=name) for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(6, len(class_names)), fontsize=8)
    figure.suptitle(f"best and worst test images of the best model (mean per-image Dice {dice.mean():.3f})")
    figure.tight_layout(rect=(0, 0.03, 1, 0.96))
    return figure


def pareto(points: list[tuple[str, float, int]], front: set[str], metric: str) -> Figure:
    """Best validation metric against learnable weights; the Pareto-optimal trials highlighted."""
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    others = [(p, v) for t, v, p in points if t not in front]
    chosen = sorted((p, v) for t, v, p in points if t in front)
    if others:
        axes.scatter(*zip(*others), color="#999", label="dominated")
    if chosen:
        axes.plot(*zip(*chosen), "o-", color=PALETTE[1], label="Pareto front")
    axes.set_xscale("log")
    axes.set(xlabel="learnable weights", ylabel=f"best {metric}", title="accuracy against model size")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def cv_estimates(frame: pd.DataFrame, metric: str, test_metric: str) -> Figure:
    """Per cross-validated configuration (ranked by the out-of-fold metric): its one-split
    validation score, its out-of-fold score with the folds' mean ± std, and its fold ensemble's
    test score, on one axis, so that each estimate's distance from test shows."""
    name = metric.split("/", 1)[1]
    figure = Figure(figsize=(9, 4.5))
    axes = figure.subplots()
    positions = np.arange(len(frame))
    axes.scatter(positions - 0.15, frame[f"{metric} (one split)"], marker="o", s=50, color=PALETTE[1],
                 label=f"{metric}, one validation split", zorder=3)
    axes.errorbar(positions, frame["folds mean"], yerr=frame["folds std"], fmt="none", ecolor=PALETTE[0], alpha=0.5,
                  capsize=4, label="fold mean ± std")
    axes.scatter(positions, frame[f"oof/{name}"], marker="D", s=50, color=PALETTE[0],
                 label=f"out-of-fold {name}, all train+validation images", zorder=3)
    axes.scatter(positions + 0.15, frame[f"{test_metric} (fold ensemble)"], marker="s", s=50, color=PALETTE[2],
                 label=f"{test_metric} of the fold ensemble (not used to rank)", zorder=3)
    axes.set_xticks(positions, [f"#{rank} {trial}" for rank, trial in zip(frame["rank"], frame["trial"])], fontsize=8)
    axes.set(ylabel=name, title="cross-validation: each estimate against test")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure
