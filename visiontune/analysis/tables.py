"""The ranked table of a search's trials, as a DataFrame and as CSV, Markdown and HTML files."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from visiontune.analysis.load import RunRecord, TrialRecord, is_missing, metric_mode

IGNORED_KEYS = ("task", "epochs")  # set by the search itself, never searched


def varying_parameters(trials: list[TrialRecord]) -> list[str]:
    """Config keys whose value differs between trials (or is absent in some), first-seen order."""
    keys: list[str] = []
    for trial in trials:
        keys.extend(k for k in trial.config if k not in keys and k not in IGNORED_KEYS)
    return [k for k in keys if len({repr(t.config.get(k)) for t in trials}) > 1]


def ranked_trials(run: RunRecord, metric: str | None = None) -> list[tuple[TrialRecord, float | None, int]]:
    """(trial, best value, its epoch), best first; missing values last; ties by epoch, then id."""
    metric = metric or run.metric
    mode = metric_mode(metric)
    scored = [(trial, *trial.best(metric, mode)) for trial in run.trials]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(scored, key=lambda item: (item[1] is None, sign * (item[1] or 0.0), item[2], item[0].trial_id))


def ranked_table(run: RunRecord, metric: str | None = None) -> pd.DataFrame:
    """Rank, trial, status, best metric and its epoch, epochs, time, test metrics, then the varying
    parameters (results first, so that a wide table still shows them without scrolling)."""
    metric = metric or run.metric
    ranked = ranked_trials(run, metric)
    parameters = varying_parameters(run.trials)
    test_columns = sorted({name for result in run.test.values() for name in result if name.startswith("test/")})
    rows = []
    for position, (trial, value, epoch) in enumerate(ranked, start=1):
        row: dict[str, Any] = {"rank": position, "trial": trial.trial_id, "status": trial.status,
                               f"best {metric}": value, "best epoch": epoch or None,
                               "epochs": trial.epochs_trained(), "time (s)": round(trial.compute_seconds(), 1)}
        tested = run.test.get(trial.trial_id) or {}
        row.update({name: tested.get(name) for name in test_columns})
        row.update({key: trial.config.get(key) for key in parameters})
        rows.append(row)
    return pd.DataFrame(rows)


def _format(value: Any) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(_format(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_html(frame: pd.DataFrame, highlight_rows: int = 0) -> str:
    """An HTML table; the first ``highlight_rows`` rows (the test-evaluated top-k) are marked."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for index, row in enumerate(frame.itertuples(index=False)):
        cells = "".join(f"<td>{html.escape(_format(v))}</td>" for v in row)
        marker = ' class="top"' if index < highlight_rows else ""
        rows.append(f"<tr{marker}>{cells}</tr>")
    return f'<table class="ranked"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def to_terminal(frame: pd.DataFrame, rows: int) -> str:
    """The first ``rows`` rows, aligned for a terminal."""
    shown = frame.head(rows).copy()
    for column in shown.columns:
        shown[column] = [_format(v) for v in shown[column]]
    return shown.to_string(index=False)


def write_tables(frame: pd.DataFrame, out: Path, stem: str = "trials", highlight_rows: int = 0) -> list[Path]:
    """Write ``stem``.csv, .md and .html into ``out``; returns the paths."""
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.html"]
    frame.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(frame))
    paths[2].write_text(f"<!doctype html><meta charset='utf-8'><title>{stem}</title>{to_html(frame, highlight_rows)}\n")
    return paths
