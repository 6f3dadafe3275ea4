"""The colours of classes and runs, shared by the figures (``analysis.plots``) and the overlays
``visiontune predict --overlay`` paints, so a class has one colour wherever it is drawn."""

from __future__ import annotations

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def colour(index: int) -> str:
    """The ``index``-th colour of the palette (it repeats after eight)."""
    return PALETTE[index % len(PALETTE)]


def class_colour(index: int) -> str:
    """The colour of foreground class ``index`` (1, 2, ...; the background, 0, is drawn black)."""
    return colour(index - 1)


def rgb(colour_hex: str) -> tuple[int, int, int]:
    """``#rrggbb`` as integers 0-255."""
    return int(colour_hex[1:3], 16), int(colour_hex[3:5], 16), int(colour_hex[5:7], 16)
