"""Analysis of searches (``visiontune analyze``): ranked tables, figures and an HTML report.

Renders what a run folder holds, read through ``runfolder`` (the one reader), and trains
nothing: ``plots`` draws the figures, ``importance`` scores the parameters, ``sections`` writes
the report's parts (the reseeding and cross-validation that ``visiontune.selection`` recorded
among them), ``report`` assembles the self-contained HTML page. The tables are rendered by
``visiontune.tables``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from visiontune import record, tables
from visiontune.analysis import plots, sections
from visiontune.analysis.importance import parameter_importance
from visiontune.analysis.report import Figure, render
from visiontune.errors import VisiontuneError
from visiontune.record import BEST_CONFIG_FILE, REPORT_FILE, TrialRecord, metric_mode
from visiontune.runfolder import SearchRun, load_search


def _check_metric(run: SearchRun, metric: str) -> None:
    available = sorted({c for t in run.trials for c in t.epochs.columns if "/" in c})
    if available and metric not in available:
        raise VisiontuneError(f"--metric {metric!r} is not in {run.folder}; available: {', '.join(available)}")


# The figures of a test evaluation, by the names a kind lists (kinds.Kind.test_figures): each
# gives (file name, figure, caption) from the best trial's saved predictions.
def _confusion_figure(data, card, trial_id: str):
    return ("confusion_matrix.png", plots.confusion_matrix(data["predicted"], data["target"], card.classes),
            f"Test confusion matrix of the best trial ({trial_id}), evaluated once after the search: rows are the "
            "true classes, columns the predictions.")


def _misclassified_figure(data, card, trial_id: str):
    wrong = data["wrong_index"]
    return ("misclassified.png", plots.misclassified(data["wrong_images"], data["target"][wrong],
                                                     data["predicted"][wrong], card.classes, total=len(wrong)),
            f"Test images the best trial ({trial_id}) got wrong, with their true and predicted classes.")


def _best_worst_figure(data, card, trial_id: str):
    return ("best_worst.png", plots.best_and_worst(data["images"], data["target"], data["predicted"], data["dice"],
                                                   card.classes),
            f"The three best and three worst test images of the best trial ({trial_id}) by per-image Dice: the "
            f"image, the ground truth and the prediction, a colour per class ({', '.join(card.classes[1:])}; "
            "background black).")


TEST_FIGURES = {"confusion_matrix": _confusion_figure, "misclassified": _misclassified_figure,
                "best_worst": _best_worst_figure}


def _draw_figures(run: SearchRun, metric: str, top_trials: list[TrialRecord], out: Path,
                  progress: Callable[[str], None]) -> list[Figure]:
    figures: list[Figure] = []
    card = run.card

    def add(name: str, figure, caption: str) -> None:
        figures.append(Figure(plots.save(figure, out / name), caption))

    train_metric = card.kind_spec.train_metric if metric == card.kind_spec.val_metric else None
    add("learning_curves.png", plots.learning_curves(top_trials, metric, f"learning curves of the top "
                                                                         f"{len(top_trials)} trials", train_metric),
        f"Training (dashed) and validation (solid) loss and {metric} per epoch of the {len(top_trials)} best "
        f"trials by validation, which shows whether they had converged or were overfitting when they stopped.")
    add("anytime.png", plots.anytime([run], metric),
        f"Best validation {metric} found so far against the compute spent (trial-epochs, and minutes of "
        f"training and validation summed over trials): the search's anytime performance.")
    parameters = record.varying_parameters(run.trials)
    add("parallel_coordinates.png", plots.parallel_coordinates(run, parameters, metric),
        f"Every trial as a line through the values of its searched parameters, coloured by its best "
        f"validation {metric}, so that the settings shared by the good trials stand out.")
    importances, basis = parameter_importance(run, parameters, metric)
    add("importance.png", plots.importance(importances, basis),
        f"How much each parameter decides whether a trial lands among the best by validation {metric} "
        f"(Optuna's PED-ANOVA over {basis}).")
    best = top_trials[0] if top_trials else None
    predictions = run.prediction_file(best.trial_id) if best else None
    if predictions is None:
        progress("note: no test predictions for the best trial in this run folder (search still running, or the "
                 "trial is not among the evaluated top-k); test figures skipped")
    else:
        data = np.load(predictions)
        for name in card.kind_spec.test_figures:
            add(*TEST_FIGURES[name](data, card, best.trial_id))
    if run.pareto:
        front = {p["trial_id"] for p in run.pareto}
        points = [(t.trial_id, t.best(metric)[0], t.weights()) for t in run.trials
                  if t.weights() is not None and t.best(metric)[0] is not None]
        add("pareto.png", plots.pareto(points, front, metric),
            f"Best validation {metric} against the number of learnable weights; the line joins the trials that no "
            f"other trial beats on both counts (the Pareto front of the two-objective search).")
    return figures


def _selection_sections(run: SearchRun, out: Path, progress: Callable[[str], None]) -> tuple[list, list[Figure]]:
    """The reseeding and cross-validation sections (and the CV figure), where the run folder holds them."""
    found, figures = [], []
    reseeded = run.reseed()
    if reseeded:
        robust = sections.reseed_table(reseeded)
        tables.write_tables(robust, out, stem=record.RESEED_TABLE)
        progress(f"robust ranking over seeds:\n{tables.to_terminal(robust, len(robust))}")
        found.append(sections.reseed_section(reseeded, robust))
    summary = run.cv()
    if summary:
        folds = sections.cv_table(run, summary)
        tables.write_tables(folds, out, stem=record.CV_TABLE)
        progress(f"cross-validation ({summary['folds']} folds, {summary['images']} train+validation images), ranked "
                 f"by the out-of-fold metric:\n{tables.to_terminal(folds, len(folds))}")
        test_metric = run.card.kind_spec.test_metric
        figures.append(Figure(plots.save(plots.cv_estimates(folds, summary["metric"], test_metric), out / "cv.png"),
                              f"Each cross-validated configuration's estimates of its own quality: the one "
                              f"validation split the search ranked by, the out-of-fold "
                              f"{summary['metric'].split('/', 1)[1]} over all {summary['images']} train+validation "
                              f"images (with the folds' mean ± std), and the test score of its {summary['folds']}-model "
                              f"fold ensemble, which ranks nothing."))
        found.append(sections.cv_section(summary, folds))
    return found, figures


def analyze_run(folder: str | Path, out: str | Path | None = None, top: int = 3, metric: str | None = None,
                progress: Callable[[str], None] = print) -> Path:
    """Write the ranked table, figures and HTML report of one search as its folder holds it (with
    the reseeding and cross-validation it records, if any); returns the report's path."""
    run = load_search(folder)
    metric = metric or run.metric
    _check_metric(run, metric)
    out = Path(out) if out else run.folder / record.ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for warning in run.warnings:
        progress(f"warning: {warning}")
    table = record.ranked_table(run.trials, metric, run.test)
    stem = Path(record.TRIALS_CSV).stem
    tables.write_tables(table, out, stem=stem, highlight_rows=len(run.test))
    if not run.complete:
        progress(f"note: {run.folder.name} is still running or was interrupted: statuses as of now")
    progress(f"{len(run.trials)} trials, ranked by best {metric} (validation):\n{tables.to_terminal(table, top)}")
    top_trials = [trial for trial, _, _ in run.ranked(metric)][:top]
    figures = _draw_figures(run, metric, top_trials, out, progress)
    found = [sections.data_section(run), sections.search_section(run, table),
             (f"Ranked trials (top {min(top, len(table))} of {len(table)})",
              tables.to_html(table.head(top), highlight_rows=len(run.test))
              + f"<p class='muted'>All trials: {stem}.csv, {stem}.md, {stem}.html beside this report.</p>")]
    tested = sections.test_section(run)
    if tested:
        found.append(tested)
    selected, selection_figures = _selection_sections(run, out, progress)
    found += [*selected, ("Figures", "")]
    if top_trials:
        config = top_trials[0].trained_config()
        (out / BEST_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        found.append(sections.reproduce_section(run, top_trials[0], config, out / BEST_CONFIG_FILE))
    page = render(f"visiontune search {run.name}", sections.lead(run, metric, top_trials), found,
                  figures + selection_figures, run.warnings)
    report = out / REPORT_FILE
    report.write_text(page)
    return report


def compare_runs(folders: list[str | Path], out: str | Path | None = None, metric: str | None = None,
                 progress: Callable[[str], None] = print) -> Path:
    """One anytime plot and one table of the best trial of each search; returns the report's path."""
    runs = [load_search(folder) for folder in folders]
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        raise VisiontuneError(f"cannot compare runs of different tasks: {', '.join(sorted(tasks))}")
    metric = metric or runs[0].metric
    out = Path(out) if out else runs[0].folder.parent / ("compare-" + "-vs-".join(r.name for r in runs))[:120]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    test_metric = runs[0].card.kind_spec.test_metric
    for run in runs:
        ranked = record.rank(run.trials, metric)
        trial, value, epoch = ranked[0] if ranked else (None, None, 0)
        points = plots.anytime_points(run, metric)
        reached = None
        if value is not None and not points.empty:
            hit = points["best"] >= value if metric_mode(metric) == "max" else points["best"] <= value
            reached = int(points.loc[hit, "trial_epochs"].min())
        rows.append({"run": run.name, "space": run.space_name,
                     "searcher": run.options.get("searcher"), "scheduler": run.options.get("scheduler"),
                     "trials": len(run.trials), "trial-epochs": sum(t.epochs_trained() for t in run.trials),
                     "compute (min)": round(sum(t.compute_seconds() for t in run.trials) / 60, 1),
                     "best trial": trial.trial_id if trial else None, record.best_column(metric): value,
                     "trial-epochs to best": reached,
                     test_metric: (run.test.get(trial.trial_id) or {}).get(test_metric) if trial else None})
    frame = pd.DataFrame(rows)
    tables.write_tables(frame, out, stem="comparison")
    progress(f"best trial of each run:\n{tables.to_terminal(frame, len(frame))}")
    figure = Figure(plots.save(plots.anytime(runs, metric, "anytime performance of the compared searches"),
                               out / "anytime.png"),
                    f"Best validation {metric} so far against compute for each search, on the same axes.")
    sections_ = [("Best trial of each search", tables.to_html(frame)), ("Figures", "")]
    page = render("visiontune comparison: " + ", ".join(r.name for r in runs),
                  f"{len(runs)} searches on {runs[0].task} compared by their best validation {metric} and the "
                  "compute it took.", sections_, [figure], [w for r in runs for w in r.warnings])
    report = out / REPORT_FILE
    report.write_text(page)
    return report


__all__ = ["analyze_run", "compare_runs"]
