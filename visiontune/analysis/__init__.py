"""Analysis of searches (``visiontune analyze``): ranked tables, figures and an HTML report.

Reads only a run folder (``load.py``); ``tables.py`` ranks the trials, ``plots.py`` draws the
figures, ``importance.py`` scores the parameters, ``reseed.py`` re-runs the top configurations
with more seeds and ``crossval.py`` on K folds (both through ``retrain.py``), ``report.py``
assembles the self-contained HTML page.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from visiontune.analysis import plots, tables
from visiontune.analysis.importance import parameter_importance
from visiontune.analysis.load import RunRecord, load_run
from visiontune.analysis.report import Figure, code_block, definition_list, json_block, render
from visiontune import record
from visiontune.errors import VisiontuneError
from visiontune.record import BEST_CONFIG_FILE, REPORT_FILE, metric_mode


def _check_metric(run: RunRecord, metric: str) -> None:
    available = sorted({c for t in run.trials for c in t.epochs.columns if "/" in c})
    if available and metric not in available:
        raise VisiontuneError(f"--metric {metric!r} is not in {run.folder}; available: {', '.join(available)}")


def reproduce_command(run: RunRecord, config_path: Path) -> str:
    """The ``visiontune train`` command that repeats the best trial (same split, config, seed)."""
    options = run.options
    words = ["visiontune", "train", run.task, "--config", str(config_path)]
    if options.get("synthetic"):
        words.append("--synthetic")
    for flag, key in (("--val-size", "val_size"), ("--split-seed", "split_seed"), ("--train-limit", "train_limit")):
        if options.get(key) not in (None, 0) or (key == "split_seed" and options.get(key)):
            words += [flag, str(options[key])]
    cpus = options.get("cpus_per_trial")
    if cpus and float(cpus).is_integer() and not options.get("gpus_per_trial"):
        words += ["--threads", str(int(cpus))]  # the trial's thread count: the same arithmetic
    return shlex.join(words)


def _figures(run: RunRecord, metric: str, top_trials, parameters: list[str], out: Path,
             progress: Callable[[str], None]) -> list[Figure]:
    figures: list[Figure] = []
    card = run.card

    def add(name: str, figure, caption: str) -> None:
        figures.append(Figure(plots.save(figure, out / name), caption))

    add("learning_curves.png", plots.learning_curves(top_trials, metric, f"learning curves of the top "
                                                                         f"{len(top_trials)} trials"),
        f"Training (dashed) and validation (solid) loss and {metric} per epoch of the {len(top_trials)} best "
        f"trials by validation, which shows whether they had converged or were overfitting when they stopped.")
    add("anytime.png", plots.anytime([run], metric),
        f"Best validation {metric} found so far against the compute spent (trial-epochs, and minutes of "
        f"training and validation summed over trials): the search's anytime performance.")
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
    elif card.kind == "classification":
        data = np.load(predictions)
        add("confusion_matrix.png", plots.confusion_matrix(data["predicted"], data["target"], card.classes),
            f"Test confusion matrix of the best trial ({best.trial_id}), evaluated once after the search: rows "
            f"are the true classes, columns the predictions.")
        wrong = data["wrong_index"]
        add("misclassified.png", plots.misclassified(data["wrong_images"], data["target"][wrong],
                                                     data["predicted"][wrong], card.classes),
            f"Test images the best trial ({best.trial_id}) got wrong, with their true and predicted classes.")
    else:
        data = np.load(predictions)
        add("best_worst.png", plots.best_and_worst(data["images"], data["target"], data["predicted"], data["dice"],
                                                   card.classes),
            f"The three best and three worst test images of the best trial ({best.trial_id}) by per-image Dice: "
            f"the image, the ground truth and the prediction, a colour per class ({', '.join(card.classes[1:])}; "
            f"background black).")
    if run.pareto:
        front = {p["trial_id"] for p in run.pareto}
        points = [(t.trial_id, t.best(metric)[0], t.weights()) for t in run.trials
                  if t.weights() is not None and t.best(metric)[0] is not None]
        add("pareto.png", plots.pareto(points, front, metric),
            f"Best validation {metric} against the number of learnable weights; the line joins the trials that no "
            f"other trial beats on both counts (the Pareto front of the two-objective search).")
    return figures


def analyze_run(folder: str | Path, out: str | Path | None = None, top: int = 3, metric: str | None = None,
                reseed: int = 0, data_dir: str | None = None, resources: dict | None = None,
                progress: Callable[[str], None] = print, cv: int = 0, cv_epochs: int | None = None,
                refit: bool = False) -> Path:
    """Write the ranked table, figures and HTML report of one search; returns the report's path.

    ``reseed`` retrains the top configurations with that many further seeds, as trials of the
    search service on the search's trial resources, or on ``resources`` (``TrialResources``
    fields, e.g. ``{"gpus_per_trial": 0.25}``). ``cv`` cross-validates the top configurations on
    that many folds (``analysis.crossval``; ``cv_epochs`` each, default the search's; ``refit``
    the winner on all train+validation), on the same resources.
    """
    run = load_run(folder)
    metric = metric or run.metric
    _check_metric(run, metric)
    out = Path(out) if out else run.folder / record.ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for warning in run.warnings:
        progress(f"warning: {warning}")
    table = tables.ranked_table(run, metric)
    stem = Path(record.TRIALS_CSV).stem
    tables.write_tables(table, out, stem=stem, highlight_rows=len(run.test))
    if not run.complete:
        progress(f"note: {run.folder.name} is still running or was interrupted: statuses as of now")
    progress(f"{len(run.trials)} trials, ranked by best {metric} (validation):\n{tables.to_terminal(table, top)}")
    ranked = [trial for trial, value, _ in record.rank(run.trials, metric) if value is not None]
    top_trials = ranked[:top]
    parameters = record.varying_parameters(run.trials)
    figures = _figures(run, metric, top_trials, parameters, out, progress)

    sections: list[tuple[str, str]] = []
    options, data = run.options, run.record.get("data", {})
    sections.append(("Data", definition_list([
        ("task", f"{run.task}: {run.card.description}"), ("source", data.get("source")),
        ("split", ", ".join(f"{k} {v}" for k, v in (data.get("sizes") or {}).items())),
        ("split seed", data.get("split_seed")),
        ("protocol", "trials and epochs are chosen on the validation split; the test split is used once, "
                     "after the search, for the top trials"),
    ])))
    statuses = table["status"].value_counts().to_dict() if not table.empty else {}
    sections.append(("Search", definition_list([
        ("space", f"{run.record.get('space', {}).get('name')}: {run.record.get('space', {}).get('description')}"),
        ("searcher", f"{options.get('searcher')} (seed {options.get('seed')})"),
        ("scheduler", f"{options.get('scheduler')}" + (
            f" (grace period {options.get('grace_period')}, reduction factor {options.get('reduction_factor')})"
            if options.get("scheduler") == "asha" else "")),
        ("budget", f"{options.get('trials') or len(run.trials)} trials of up to {run.max_epochs} epochs"
                   + (f", time budget {options.get('time_budget')}" if options.get("time_budget") else "")),
        ("resources", f"{options.get('cpus_per_trial')} CPU and {options.get('gpus_per_trial')} GPU per trial"),
        ("warm start", options.get("warm_start") or "none"),
        ("outcome", ", ".join(f"{n} {s}" for s, n in statuses.items())),
        ("trial compute", f"{sum(t.epochs_trained() for t in run.trials)} trial-epochs, "
                          f"{sum(t.compute_seconds() for t in run.trials) / 60:.1f} minutes"),
        ("command", run.record.get("command")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (run.record.get("versions") or {}).items())),
    ])))
    sections.append((f"Ranked trials (top {min(top, len(table))} of {len(table)})",
                     tables.to_html(table.head(top), highlight_rows=len(run.test))
                     + f"<p class='muted'>All trials: {stem}.csv, {stem}.md, {stem}.html beside this report.</p>"))
    if run.test:
        test_rows = [{"trial_id": trial_id, **{k: v for k, v in result.items() if k != "config"}}
                     for trial_id, result in run.test.items()]
        sections.append(("Test results (evaluated once, after the search)", tables.to_html(pd.DataFrame(test_rows))))
    if reseed:
        from visiontune.analysis.reseed import reseed_top

        robust = reseed_top(run, top_trials, reseed, data_dir=data_dir, resources=resources, progress=progress)
        tables.write_tables(robust, out, stem=record.RESEED_TABLE)
        progress(f"robust ranking over seeds:\n{tables.to_terminal(robust, len(robust))}")
        sections.append((f"Robust ranking: the top {len(top_trials)} with {reseed} further seeds",
                         tables.to_html(robust) + "<p class='muted'>Ranked by mean best validation metric; "
                                                  "test mean and standard deviation over the same runs.</p>"))
    if cv:
        from visiontune.analysis.crossval import cross_validate

        if metric != run.metric:
            raise VisiontuneError(f"--cv ranks by the search's own metric ({run.metric}); leave out --metric {metric}")
        folds_table, summary = cross_validate(run, folds=cv, top=top, epochs=cv_epochs, refit=refit,
                                              data_dir=data_dir, resources=resources, progress=progress)
        tables.write_tables(folds_table, out, stem=record.CV_TABLE)
        progress(f"cross-validation ({cv} folds, {summary['images']} train+validation images), ranked by the "
                 f"out-of-fold metric:\n{tables.to_terminal(folds_table, len(folds_table))}")
        test_metric = run.card.task_kind.test_metric
        figures.append(Figure(plots.save(plots.cv_estimates(folds_table, metric, test_metric), out / "cv.png"),
                              f"Each cross-validated configuration's estimates of its own quality: the one "
                              f"validation split the search ranked by, the out-of-fold {metric.split('/', 1)[1]} "
                              f"over all {summary['images']} train+validation images (with the folds' mean ± std), "
                              f"and the test score of its {cv}-model fold ensemble, which ranks nothing."))
        sections.append((f"Cross-validation: the top {len(folds_table)} on {cv} folds",
                         tables.to_html(folds_table)
                         + f"<p class='muted'>{summary['selection']}. Optimism: an estimate minus the fold "
                           f"ensemble's test score. Fold sizes {summary['fold_sizes']}; fold trainings in "
                           f"{summary['fold_search']}; predict or export the winner's fold ensemble with "
                           f"--ensemble cv.</p>"))
    sections.append(("Figures", ""))
    if top_trials:
        best = top_trials[0]
        config = {**best.config}
        if best.precision():
            config[record.PRECISION] = best.precision()
        (out / BEST_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        command = reproduce_command(run, out / BEST_CONFIG_FILE)
        sections.append(("Reproduce the best trial", f"<p>Trial {best.trial_id}, with the same split, settings, "
                                                     "seed and precision:</p>" + code_block(command)
                         + json_block(config)))
    lead = _lead(run, metric, top_trials)
    page = render(f"visiontune search {run.name}", lead, sections, figures, run.warnings)
    report = out / REPORT_FILE
    report.write_text(page)
    return report


def _lead(run: RunRecord, metric: str, top_trials) -> str:
    if not top_trials:
        return f"{len(run.trials)} trials on {run.task}; none has a validation result yet."
    best = top_trials[0]
    value, epoch = best.best(metric)
    test = run.test.get(best.trial_id, {})
    test_metric = run.card.task_kind.test_metric
    tested = f" and {test_metric} {test[test_metric]:.4f} on the test split" if test_metric in test else ""
    return (f"{len(run.trials)} trials on {run.task}. The best by validation, trial {best.trial_id} "
            f"({best.config.get('model', 'model')}), reached {metric} {value:.4f} at epoch {epoch}{tested}.")


def compare_runs(folders: list[str | Path], out: str | Path | None = None, metric: str | None = None,
                 progress: Callable[[str], None] = print) -> Path:
    """One anytime plot and one table of the best trial of each search; returns the report's path."""
    runs = [load_run(folder) for folder in folders]
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        raise VisiontuneError(f"cannot compare runs of different tasks: {', '.join(sorted(tasks))}")
    metric = metric or runs[0].metric
    out = Path(out) if out else runs[0].folder.parent / ("compare-" + "-vs-".join(r.name for r in runs))[:120]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    test_metric = runs[0].card.task_kind.test_metric
    for run in runs:
        ranked = record.rank(run.trials, metric)
        trial, value, epoch = ranked[0] if ranked else (None, None, 0)
        points = plots.anytime_points(run, metric)
        reached = None
        if value is not None and not points.empty:
            hit = points["best"] >= value if metric_mode(metric) == "max" else points["best"] <= value
            reached = int(points.loc[hit, "trial_epochs"].min())
        rows.append({"run": run.name, "space": run.record.get("space", {}).get("name"),
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
    sections = [("Best trial of each search", tables.to_html(frame)), ("Figures", "")]
    page = render("visiontune comparison: " + ", ".join(r.name for r in runs),
                  f"{len(runs)} searches on {runs[0].task} compared by their best validation {metric} and the "
                  "compute it took.", sections, [figure], [w for r in runs for w in r.warnings])
    report = out / REPORT_FILE
    report.write_text(page)
    return report


__all__ = ["analyze_run", "compare_runs", "load_run"]
