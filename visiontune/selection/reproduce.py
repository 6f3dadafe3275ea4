"""``visiontune reproduce``: run the report's studies through the search service, tabulate them.

Each study runs as one grid search (its rows x seeds, no early stopping), every trial choosing
its epoch on validation; every trial's chosen checkpoint is then evaluated once on test, and
the study's table puts, per row, the report's number beside ours (mean +- std over the seeds)
and marks the row that validation alone would choose. ``--quick`` trains fewer epochs and, for
MNIST, on a 5,000-image training subset (the validation set's size); its tables say so.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from visiontune.errors import ConfigError
from visiontune.runfolder import load_search
from visiontune.selection.grid import mean_std, run_grid
from visiontune.selection.studies import STUDIES, Study, get_study

QUICK_TRAIN_LIMIT = {"mnist": 5000, "warwick": None}  # WARWICK's 68 training images are already few


@dataclass
class ReproduceOptions:
    studies: list[str]
    quick: bool = False
    seeds: int = 3
    storage: str = "runs"
    out: str = "reproduction"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    data_dir: str | None = None
    synthetic: bool = False
    epochs: int | None = None  # override (tests); default the study's (or quick) epochs


def _device_label(gpus_per_trial: float) -> str:
    if gpus_per_trial > 0:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU"
        return f"{name} ({gpus_per_trial:g} per trial)"
    return f"CPU ({platform.machine()}, {len(os.sched_getaffinity(0))} cores)"


def study_table(study: Study, run: Path, quick: bool, device: str) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of a finished study run folder, and its rows as data."""
    searched = load_search(run)
    kind = searched.card.kind_spec
    test_metric = kind.test_metric
    rows = []
    for row in study.rows:
        members = [t for t in searched.trials if study.row_of(t.config) is row]
        val = [value for value in (t.best(kind.val_metric)[0] for t in members) if value is not None]
        test = [searched.test[t.trial_id][test_metric] for t in members if t.trial_id in searched.test]
        rows.append({"label": row.label, "report": row.report, "seeds": len(members),
                     "val": mean_std(val) if val else None, "test": mean_std(test) if test else None,
                     "trial_epochs": sum(t.epochs_trained() for t in members),
                     "seconds": sum(round(t.compute_seconds(), 1) for t in members)})
    scored = [r for r in rows if r["val"] is not None]
    chosen = max(scored, key=lambda r: r["val"][0])["label"] if scored else None
    epochs = searched.max_epochs or "?"
    name = kind.val_metric.split("/")[1]
    subset = ", 5,000 training images" if QUICK_TRAIN_LIMIT[study.task] else ""
    label = f"QUICK MODE (fewer epochs{subset}): not comparable to the report in absolute terms. " if quick else ""
    lines = [f"### {study.name}: {study.description}", "",
             f"{label}{len(study.rows)} setting(s) x {rows[0]['seeds'] if rows else 0} seeds, {epochs} epochs "
             f"each, epoch chosen on validation, test evaluated once per trial. Report: {study.report_note}.", "",
             f"| setting | report (test) | ours: validation {name} | ours: test {name} | chosen by validation | "
             "trial-epochs | seconds | device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        val = f"{row['val'][0]:.4f} ± {row['val'][1]:.4f}" if row["val"] else "-"
        test = f"{row['test'][0]:.4f} ± {row['test'][1]:.4f}" if row["test"] else "-"
        lines.append(f"| {row['label']} | {row['report']} | {val} | {test} | "
                     f"{'yes' if row['label'] == chosen else ''} | {row['trial_epochs']} | {row['seconds']:.0f} | "
                     f"{device} |")
    return "\n".join(lines) + "\n", rows


def run_study(study: Study, options: ReproduceOptions, progress: Callable[[str], None]) -> Path:
    """Run one study as a grid search (``grid.run_grid``); returns its run folder."""
    name = f"study-{study.name}-{'quick' if options.quick else 'full'}"
    epochs = options.epochs or (study.quick_epochs if options.quick else study.epochs)
    trials = len(study.rows) * options.seeds
    data = {"data_dir": options.data_dir, "synthetic": options.synthetic,
            "train_limit": QUICK_TRAIN_LIMIT[study.task] if options.quick and not options.synthetic else None}
    resources = {"cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial,
                 "address": options.address}
    what = f"{study.name}: {study.description}{' (quick)' if options.quick else ''}"
    return run_grid(study.task, study.space(options.seeds), trials, epochs, Path(options.storage), name, what,
                    progress, data=data, resources=resources)


def reproduce(options: ReproduceOptions, progress: Callable[[str], None] = print) -> Path:
    """Run the named studies and write one Markdown table per study plus an index; the index path."""
    studies = [get_study(name) for name in options.studies]
    if options.seeds < 1:
        raise ConfigError(f"--seeds {options.seeds}: at least 1 (the tables need 3 for a spread)")
    mode = "quick" if options.quick else "full"
    out = Path(options.out) / mode
    device = _device_label(options.gpus_per_trial)
    sections = []
    for study in studies:
        started = time.time()
        run = run_study(study, options, progress)
        table, rows = study_table(study, run, options.quick, device)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{study.name}.md").write_text(table)
        sections.append(table)
        best = next((r for r in rows if r["test"]), None)
        progress(f"{study.name}: done in {time.time() - started:.0f} s -> {out / (study.name + '.md')}"
                 + (f" (first row test {best['test'][0]:.4f})" if best else ""))
    index = out / "README.md"
    written = {p.stem for p in out.glob("*.md") if p.name != "README.md"}
    existing = [name for name in STUDIES if name in written]  # in the report's order
    header = (f"# The report's studies, {mode} mode\n\nWritten by `visiontune reproduce{' --quick' if options.quick else ''}`;"
              f" one table per study ({', '.join(existing)}).\n\n")
    index.write_text(header + "\n".join((out / f"{name}.md").read_text() for name in existing))
    return index
