"""``visiontune reproduce``: run the report's studies through the search service, tabulate them.

Each study runs as one grid search (its rows x seeds, no early stopping), every trial choosing
its epoch on validation; every trial's chosen checkpoint is then evaluated once on test, and
the study's table puts, per row, the report's number beside ours (mean +- std over the seeds)
and marks the row that validation alone would choose. ``--quick`` trains fewer epochs and, for
MNIST, on a 5,000-image training subset (the validation set's size); its tables say so.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from visiontune import record
from visiontune.data.card import DatasetCard
from visiontune.errors import ConfigError
from visiontune.studies import Study, get_study

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


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _device_label(gpus_per_trial: float) -> str:
    if gpus_per_trial > 0:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU"
        return f"{name} ({gpus_per_trial:g} per trial)"
    return f"CPU ({platform.machine()}, {len(os.sched_getaffinity(0))} cores)"


def study_table(study: Study, run: Path, quick: bool, device: str) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of a finished study run folder, and its rows as data."""
    search = json.loads((run / record.SEARCH_FILE).read_text())
    kind = DatasetCard.from_dict(search["data"]["card"]).task_kind
    test_metric = kind.test_metric
    trials = json.loads((run / record.TRIALS_JSON).read_text())
    tested = json.loads((run / record.TEST_FILE).read_text())["trials"]
    rows = []
    for row in study.rows:
        members = [t for t in trials if study.row_of(t["config"]) is row]
        val = [t["best_value"] for t in members if t.get("best_value") is not None]
        test = [tested[t["trial_id"]][test_metric] for t in members if t["trial_id"] in tested]
        rows.append({"label": row.label, "report": row.report, "seeds": len(members),
                     "val": _mean_std(val) if val else None, "test": _mean_std(test) if test else None,
                     "trial_epochs": sum(int(t.get("epochs") or 0) for t in members),
                     "seconds": sum(float(t.get("time_s") or 0.0) for t in members)})
    scored = [r for r in rows if r["val"] is not None]
    chosen = max(scored, key=lambda r: r["val"][0])["label"] if scored else None
    epochs = search["options"]["max_epochs"] if "options" in search else "?"
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
    """Run one study as a grid search; returns its run folder."""
    from visiontune.search import SearchOptions, run_search
    from visiontune.storage import RunStore

    mode = "quick" if options.quick else "full"
    name = f"study-{study.name}-{mode}"
    storage = Path(options.storage)
    storage.mkdir(parents=True, exist_ok=True)
    space_file = storage / f"{name}.space.json"
    space_file.write_text(json.dumps(study.space(options.seeds), indent=2))
    epochs = options.epochs or (study.quick_epochs if options.quick else study.epochs)
    trials = len(study.rows) * options.seeds
    search = SearchOptions(task=study.task, space=str(space_file), searcher="grid", scheduler="none",
                           max_epochs=epochs, cpus_per_trial=options.cpus_per_trial,
                           gpus_per_trial=options.gpus_per_trial, address=options.address,
                           storage=str(storage), name=name, report=False, top_k=trials,
                           data_dir=options.data_dir, synthetic=options.synthetic,
                           train_limit=QUICK_TRAIN_LIMIT[study.task] if options.quick and not options.synthetic else None)
    resume = RunStore(str(storage), name).exists()
    if resume and (storage / name / record.TEST_FILE).exists():
        progress(f"{study.name}: already done in {storage / name}; tabulating it")
        return storage / name
    progress(f"{study.name}: {study.description} -- {trials} trials of {epochs} epochs{' (quick)' if options.quick else ''}")
    run_search(search, resume=resume, progress=lambda line: progress(f"  {line}"))
    return storage / name


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
    from visiontune.studies import STUDIES

    written = {p.stem for p in out.glob("*.md") if p.name != "README.md"}
    existing = [name for name in STUDIES if name in written]  # in the report's order
    header = (f"# The report's studies, {mode} mode\n\nWritten by `visiontune reproduce{' --quick' if options.quick else ''}`;"
              f" one table per study ({', '.join(existing)}).\n\n")
    index.write_text(header + "\n".join((out / f"{name}.md").read_text() for name in existing))
    return index
