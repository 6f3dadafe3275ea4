"""The self-contained HTML report of a search (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.lead{font-size:1.1em;color:#333}.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}th{background:#f4f4f4}
tr.top td{background:#fff8e0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:600}
dd{margin:0}figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.92em;margin-top:.3em}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;
font-size:.85em}.warn{color:#a40}
"""


@dataclass
class Figure:
    """A figure file of the analysis and its one-sentence caption."""

    path: Path
    caption: str


def embed_png(path: Path) -> str:
    """An <img> tag carrying the PNG itself, so the report is one file."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def definition_list(items: list[tuple[str, Any]]) -> str:
    """<dl> of label/value pairs (values are escaped)."""
    rows = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>" for label, value in items)
    return f"<dl>{rows}</dl>"


def render(title: str, lead: str, sections: list[tuple[str, str]], figures: list[Figure],
           warnings: list[str]) -> str:
    """The whole HTML page: title, lead paragraph, sections (title, inner HTML), figures, warnings."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='lead'>{html.escape(lead)}</p>"]
    for heading, body in sections:
        if heading == "Figures":
            body = "".join(f"<figure>{embed_png(f.path)}<figcaption>{html.escape(f.caption)}</figcaption></figure>"
                           for f in figures)
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts.append(f"<h2>Warnings</h2><ul class='warn'>{items}</ul>")
    parts.append("<p class='muted'>Written by visiontune analyze.</p></body></html>\n")
    return "".join(parts)


def code_block(text: str) -> str:
    """A <pre> block."""
    return f"<pre>{html.escape(text)}</pre>"


def json_block(data: Any) -> str:
    """Pretty JSON in a <pre> block."""
    return code_block(json.dumps(data, indent=2, default=str))
