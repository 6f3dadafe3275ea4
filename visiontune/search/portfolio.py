"""The portfolio of ``--searcher portfolio``, the default searcher: configurations that searched
best on other data sets, tried first, before TPE proposes (Auto-sklearn 2.0's zero-shot
portfolios, in small). ``benchmarks/searchers.py`` chose it: README, Performance.

``portfolio.json`` beside this module holds, per data set the benchmark searched
(``benchmarks/searchers.py --fit-portfolio``), its best configurations by validation.
A search takes those of its own kind (classification or segmentation) from *other* data sets
only: a data set's own winners never enter its own portfolio, so the benchmark measures the
portfolio leave-one-task-out and a user's data set gets what did well elsewhere. An entry that
the search's space (fitted to the data set, conditioned by ``--set``) cannot produce is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontune.errors import ConfigError
from visiontune.record import SET_BY_SEARCH

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard
    from visiontune.search_spaces import SearchSpace

PORTFOLIO_FILE = Path(__file__).with_name("portfolio.json")
PORTFOLIO_VERSION = 1
MAX_POINTS = 4  # at most this many portfolio trials open a search: the rest of it is TPE's
# Settings that say how a trial runs, not what it is: a portfolio entry never carries them.
RUN_SETTINGS = (*SET_BY_SEARCH, "seed", "precision", "cv_fold")


def load_entries(path: Path | None = None) -> list[dict[str, Any]]:
    """The portfolio's entries (``task``, ``kind``, ``val``, ``config``) from ``path`` (default the
    shipped ``portfolio.json``); a :class:`ConfigError` naming the file when it is malformed."""
    path = path or PORTFOLIO_FILE
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        if data.get("visiontune_portfolio") != PORTFOLIO_VERSION or not isinstance(entries, list):
            raise ValueError(f"not a version-{PORTFOLIO_VERSION} portfolio")
        for entry in entries:
            if not (isinstance(entry.get("task"), str) and isinstance(entry.get("kind"), str)
                    and isinstance(entry.get("config"), dict)):
                raise ValueError("an entry lacks its task, kind or config")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"{path}: unreadable portfolio ({error})") from None
    return entries


def portfolio_entry(task: str, kind: str, config: dict[str, Any], val: float, source: str) -> dict[str, Any]:
    """One portfolio entry: a trial's configuration without the settings of how it ran."""
    searched = {key: value for key, value in config.items() if key not in RUN_SETTINGS}
    return {"task": task, "kind": kind, "val": val, "source": source, "config": searched}


def portfolio_points(card: DatasetCard, space: SearchSpace, fixed: dict[str, Any],
                     entries: list[dict[str, Any]] | None = None, limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """The configurations a portfolio search of the data set ``card`` describes tries first:
    entries of its kind from other data sets, best validation first, taking each source data set's
    best before anyone's second (so that no one task fills the portfolio), that ``space`` can
    produce with ``fixed``, without duplicates, at most ``limit``."""
    from visiontune.search_spaces import check_point_in_space

    entries = load_entries() if entries is None else entries
    by_task: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda e: -float(e.get("val", 0.0))):
        if entry["kind"] == card.kind and entry["task"] != card.name:
            by_task.setdefault(entry["task"], []).append(entry)
    ordered = []  # round robin over the source data sets: each one's best, then each one's second, ...
    while any(by_task.values()):
        for task in sorted(by_task, key=lambda t: -float(by_task[t][0].get("val", 0.0)) if by_task[t] else 0.0):
            if by_task[task]:
                ordered.append(by_task[task].pop(0))
    points: list[dict[str, Any]] = []
    for entry in ordered:
        point = {key: value for key, value in entry["config"].items() if key not in fixed}
        try:
            check_point_in_space(space, point, fixed)
        except ConfigError:  # not a configuration of this space (a model it does not search, a range it lacks)
            continue
        if point not in points:
            points.append(point)
        if len(points) == limit:
            break
    return points
