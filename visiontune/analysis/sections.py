"""The sections of a search's report and the tables of what selection recorded, from disk.

Each function renders one part of a run folder as it stands: the data and search settings, the
test results, the reseeding (``reseed/reseed.json``) and the cross-validation (``cv/cv.json``)
that ``visiontune.selection`` wrote. Nothing here trains or predicts.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from visiontune import tables
from visiontune.analysis.report import code_block, definition_list, json_block
from visiontune.record import TrialRecord
from visiontune.runfolder import SearchRun

Section = tuple[str, str]  # (heading, inner HTML)


def reproduce_command(run: SearchRun, config_path: Path) -> str:
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


def data_section(run: SearchRun) -> Section:
    data = run.search.get("data", {})
    return ("Data", definition_list([
        ("task", f"{run.task}: {run.card.description}"), ("source", data.get("source")),
        ("split", ", ".join(f"{k} {v}" for k, v in (data.get("sizes") or {}).items())),
        ("split seed", data.get("split_seed")),
        ("protocol", "trials and epochs are chosen on the validation split; the test split is used once, "
                     "after the search, for the top trials"),
    ]))


def search_section(run: SearchRun, table: pd.DataFrame) -> Section:
    options = run.options
    statuses = table["status"].value_counts().to_dict() if not table.empty else {}
    asha = options.get("scheduler") == "asha"
    return ("Search", definition_list([
        ("space", f"{run.space_name}: {(run.search.get('space') or {}).get('description')}"),
        ("searcher", f"{options.get('searcher')} (seed {options.get('seed')})"),
        ("scheduler", f"{options.get('scheduler')}" + (
            f" (grace period {options.get('grace_period')}, reduction factor {options.get('reduction_factor')})"
            if asha else "")),
        ("budget", f"{options.get('trials') or len(run.trials)} trials of up to {run.max_epochs} epochs"
                   + (f", time budget {options.get('time_budget')}" if options.get("time_budget") else "")),
        ("resources", f"{options.get('cpus_per_trial')} CPU and {options.get('gpus_per_trial')} GPU per trial"),
        ("warm start", options.get("warm_start") or "none"),
        ("outcome", ", ".join(f"{n} {s}" for s, n in statuses.items())),
        ("trial compute", f"{sum(t.epochs_trained() for t in run.trials)} trial-epochs, "
                          f"{sum(t.compute_seconds() for t in run.trials) / 60:.1f} minutes"),
        ("command", run.search.get("command")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (run.search.get("versions") or {}).items())),
    ]))


def test_section(run: SearchRun) -> Section | None:
    if not run.test:
        return None
    rows = [{"trial_id": trial_id, **{k: v for k, v in result.items() if k != "config"}}
            for trial_id, result in run.test.items()]
    return "Test results (evaluated once, after the search)", tables.to_html(pd.DataFrame(rows))


def reseed_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The robust ranking ``analyze --reseed`` recorded: one row per configuration."""
    return pd.DataFrame(summary["rows"])


def reseed_section(summary: dict[str, Any], table: pd.DataFrame) -> Section:
    return (f"Robust ranking: the top {summary['top']} with {summary['seeds']} further seeds",
            tables.to_html(table) + "<p class='muted'>Ranked by mean best validation metric; test mean and "
                                    f"standard deviation over the same runs (retrains in {summary['grid']}).</p>")


def cv_table(run: SearchRun, summary: dict[str, Any]) -> pd.DataFrame:
    """One row per cross-validated configuration, ranked by the out-of-fold metric: each estimate
    of its quality beside its fold ensemble's test score, and the optimism of each."""
    metric, test_metric = summary["metric"], run.card.kind_spec.test_metric
    name = metric.split("/", 1)[1]
    rows = []
    for rank, entry in enumerate(summary["ranking"], start=1):
        one_split, oof = entry["val_one_split"], entry[f"oof/{name}"]
        tested = (entry.get("ensemble_test") or {}).get(test_metric, float("nan"))
        searched = (run.test.get(entry["trial_id"]) or {}).get(test_metric)
        row = {"rank": rank, "trial": entry["trial_id"], "model": entry["config"].get("model"),
               f"{metric} (one split)": one_split, f"oof/{name}": oof,
               "folds mean": entry["fold_mean"], "folds std": entry["fold_std"],
               f"{test_metric} (fold ensemble)": tested,
               f"{test_metric} (search's model)": float("nan") if searched is None else float(searched),
               "optimism: one split": one_split - tested, "optimism: cv": oof - tested}
        if entry.get("refit"):
            row[f"{test_metric} (refit, {entry['refit']['epochs']} epochs)"] = entry["refit"][test_metric]
        rows.append(row)
    return pd.DataFrame(rows)


def cv_section(summary: dict[str, Any], table: pd.DataFrame) -> Section:
    return (f"Cross-validation: the top {len(table)} on {summary['folds']} folds",
            tables.to_html(table)
            + f"<p class='muted'>{summary['selection']}. Optimism: an estimate minus the fold ensemble's test "
              f"score. Fold sizes {summary['fold_sizes']}; fold trainings in {summary['fold_search']}; predict or "
              f"export the winner's fold ensemble with --ensemble cv.</p>")


def reproduce_section(run: SearchRun, best: TrialRecord, config: dict[str, Any], config_path: Path) -> Section:
    command = reproduce_command(run, config_path)
    return ("Reproduce the best trial", f"<p>Trial {best.trial_id}, with the same split, settings, seed and "
                                        "precision:</p>" + code_block(command) + json_block(config))


def lead(run: SearchRun, metric: str, top_trials: list[TrialRecord]) -> str:
    """The report's first paragraph: the best trial by validation and its test figure."""
    if not top_trials:
        return f"{len(run.trials)} trials on {run.task}; none has a validation result yet."
    best = top_trials[0]
    value, epoch = best.best(metric)
    test = run.test.get(best.trial_id, {})
    test_metric = run.card.kind_spec.test_metric
    tested = f" and {test_metric} {test[test_metric]:.4f} on the test split" if test_metric in test else ""
    return (f"{len(run.trials)} trials on {run.task}. The best by validation, trial {best.trial_id} "
            f"({best.config.get('model', 'model')}), reached {metric} {value:.4f} at epoch {epoch}{tested}.")
