"""Tables (pandas frames) as CSV, Markdown, HTML and text for the terminal: the ranked table of a
search's trials (``record.ranked_table``), the reseeding and cross-validation tables, the studies.

Rendering only; used by the search's closing lines, analysis and the selection commands alike."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from visiontune import record
from visiontune.record import is_missing


def _format(value: Any) -> str:
    if is_missing(value) or value is pd.NA:
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


PER_CLASS_SHOWN = 4


def to_terminal(frame: pd.DataFrame, rows: int) -> str:
    """The first ``rows`` rows, aligned for a terminal (where a trial ran is left out, and the
    per-class figures where there are more than ``PER_CLASS_SHOWN``: the CSV and HTML keep them)."""
    per_class = [c for c in frame.columns if str(c).count("/") >= 2]  # test/recall/<class>, test/dice/<class>
    hidden = [c for c in record.PLACEMENT_COLUMNS if c in frame] + (per_class if len(per_class) > PER_CLASS_SHOWN else [])
    shown = frame.drop(columns=hidden).head(rows).copy()
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
