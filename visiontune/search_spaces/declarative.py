"""Search spaces written as data (a YAML or JSON file, or a dict), checked and compiled.

Format::

    description: learning rate and batch size of FCN2   # optional, one line
    task: warwick                                      # optional; must match the search's task
    params:
      model: fcn2                     # a plain value: fixed for every trial
      batch_size: [8, 16, 32, 64]     # a list: one of these values (categorical)
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      dropout: {uniform: [0.0, 0.5]}
      depth: {int: [2, 4]}            # integers low..high inclusive; also logint, and step: N
      momentum: {uniform: [0.0, 0.95], when: {optimizer: sgd}}   # only when optimizer is sgd

Parameter names are the settings of ``visiontune train`` (``TrainConfig`` fields). ``when``
makes a parameter conditional on parameters listed before it (a value or a list of values).
Every mistake is reported in one line naming the file and the parameter, before Ray starts.
A space whose parameters are all fixed values or lists can also run as a grid.

A grid may also list ``rows``: bundles of settings that belong together and are not a product
(SGD with lr 0.1 against Adam with lr 1e-3, say). The grid then runs every row with every
combination of the list parameters::

    rows:
      - {optimizer: sgd, lr: 0.1}
      - {optimizer: adam, lr: 0.001}
    params:
      model: cnn
      seed: [0, 1, 2]
"""

from __future__ import annotations

import itertools
import json
import math
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from visiontune.config import FIELD_TYPES, MODEL_FIELDS, TrainConfig
from visiontune.errors import ConfigError
from visiontune.record import SET_BY_SEARCH
from visiontune.tasks import TASKS

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
TOP_LEVEL_KEYS = ("description", "task", "params", "rows")
POSITIVE = ("lr", "batch_size")  # a range for these must lie above zero


def load_data_file(path: str | Path) -> Any:
    """Read a YAML or JSON file with safe loaders; one-line errors for unreadable files."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return data


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON search-space file: a mapping with a ``params`` section."""
    data = load_data_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search space must be a mapping with a 'params' section")
    return data


class DeclarativeSpace:
    """A checked data space; call it with an Optuna trial to sample (define-by-run).

    Instances are plain data plus methods, so they pickle into Ray's searcher state.
    """

    def __init__(self, data: dict[str, Any], card: "DatasetCard", where: str) -> None:
        self.where = where
        unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))}; "
                              f"a space has {', '.join(TOP_LEVEL_KEYS)}")
        declared, task = data.get("task"), card.name
        # A space written for a built-in task serves every data set of that task's kind.
        if declared not in (None, task) and (declared not in TASKS or TASKS[declared].kind != card.kind):
            raise ConfigError(f"{where}: is a space for task {declared!r}, not {task!r}")
        params = data.get("params")
        if not isinstance(params, dict) or not (params or data.get("rows")):
            raise ConfigError(f"{where}: needs a non-empty 'params' mapping of setting names to values or ranges")
        self.card = card
        self.description = str(data.get("description") or "search space from " + where)
        self.params: dict[str, dict[str, Any]] = {}
        for name, spec in params.items():
            self.params[str(name)] = self._check(str(name), spec)
        self.rows = self._check_rows(data.get("rows"))

    def _check_rows(self, rows: Any) -> list[dict[str, Any]] | None:
        """Grid rows: a non-empty list of mappings of fixed settings not also in ``params``."""
        if rows is None:
            return None
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) and row for row in rows):
            raise ConfigError(f"{self.where}: rows: expected a non-empty list of mappings of settings to values")
        for number, row in enumerate(rows, start=1):
            for name, value in row.items():
                where = f"{self.where}: rows[{number}]: {name}"
                if name in SET_BY_SEARCH or name not in FIELD_TYPES:
                    raise ConfigError(f"{where}: unknown or reserved parameter")
                if name in self.params:
                    raise ConfigError(f"{where}: also in params; a setting is either in the rows or in params")
                self._check_value(str(name), where, value)
            if set(row) != set(rows[0]):
                raise ConfigError(f"{self.where}: rows[{number}]: sets {', '.join(sorted(row))}, but rows[1] sets "
                                  f"{', '.join(sorted(rows[0]))}; every row sets the same settings")
        return [dict(row) for row in rows]

    # -------------------------------------------------------------------------------- checks
    def _check(self, name: str, spec: Any) -> dict[str, Any]:
        where = f"{self.where}: {name}"
        if name in SET_BY_SEARCH:
            raise ConfigError(f"{where}: is set by the search itself (task from the command, epochs from --max-epochs)")
        if name not in FIELD_TYPES:
            valid = ", ".join(sorted(n for n in FIELD_TYPES if n not in SET_BY_SEARCH))
            raise ConfigError(f"{where}: unknown parameter; valid parameters are: {valid}")
        when = None
        if isinstance(spec, dict):
            spec = dict(spec)
            when = spec.pop("when", None)
            step = spec.pop("step", None)
            kinds = [key for key in spec if key in DISTRIBUTIONS]
            extra = [key for key in spec if key not in DISTRIBUTIONS]
            if extra or len(kinds) != 1:
                raise ConfigError(f"{where}: expected exactly one of {', '.join(DISTRIBUTIONS)} (plus optional "
                                  f"'when' and 'step'), got {', '.join(map(str, spec)) or 'nothing'}")
            kind, argument = kinds[0], spec[kinds[0]]
            entry = self._check_distribution(name, where, kind, argument, step)
        elif isinstance(spec, list):
            entry = self._check_distribution(name, where, "choice", spec, None)
        else:
            self._check_value(name, where, spec)
            entry = {"kind": "fixed", "value": spec}
        entry["when"] = self._check_when(where, when)
        return entry

    def _check_distribution(self, name: str, where: str, kind: str, argument: Any, step: Any) -> dict[str, Any]:
        if kind == "choice":
            if not isinstance(argument, list) or not argument:
                raise ConfigError(f"{where}: a choice needs a non-empty list of values")
            for value in argument:
                self._check_value(name, where, value)
            if len(set(map(json.dumps, argument))) != len(argument):
                raise ConfigError(f"{where}: the choices {argument} repeat a value")
            return {"kind": "choice", "values": list(argument)}
        if (not isinstance(argument, list) or len(argument) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in argument)):
            raise ConfigError(f"{where}: {kind} needs a range [low, high] of two numbers, got {argument!r}")
        low, high = argument
        if not all(math.isfinite(v) for v in argument):
            raise ConfigError(f"{where}: the range [{low}, {high}] must be finite")
        if low >= high:
            raise ConfigError(f"{where}: empty range [{low}, {high}] (low must be below high)")
        if kind in ("loguniform", "logint") and low <= 0:
            raise ConfigError(f"{where}: a log range must lie above 0, got [{low}, {high}]")
        if name in POSITIVE and low <= 0:
            what = "learning rate" if name == "lr" else name
            raise ConfigError(f"{where}: the {what} must be positive, got range [{low}, {high}]")
        base = self._base_type(name)
        if kind in ("int", "logint"):
            if base not in (int, float) or not all(float(v).is_integer() for v in argument):
                raise ConfigError(f"{where}: an int range needs a numeric setting and whole-number bounds")
            if step is not None and (not isinstance(step, int) or step < 1):
                raise ConfigError(f"{where}: step must be a positive whole number, got {step!r}")
            self._check_value(name, where, int(low) if base is int else float(low))
            self._check_value(name, where, int(high) if base is int else float(high))
            return {"kind": kind, "low": int(low), "high": int(high), "step": step or 1}
        if base is not float:
            raise ConfigError(f"{where}: {kind} draws real numbers but {name} takes {base.__name__} values")
        if step is not None:
            raise ConfigError(f"{where}: step applies to int ranges only")
        self._check_value(name, where, float(low))
        self._check_value(name, where, float(high))
        return {"kind": kind, "low": float(low), "high": float(high)}

    @staticmethod
    def _base_type(name: str) -> type:
        hint = FIELD_TYPES[name]
        return next((t for t in typing.get_args(hint) if t is not type(None)), hint)

    def _check_value(self, name: str, where: str, value: Any) -> None:
        """A value must have the setting's type and pass the setting's own check.

        Model-shape values depend on the model they are sampled with; those combinations are
        checked by sampling the whole space (``search_spaces.check_space``).
        """
        base = self._base_type(name)
        if value is None and type(None) in typing.get_args(FIELD_TYPES[name]):
            return  # unset: the default (a grid row for a model that does not take this setting)
        ok = (isinstance(value, bool) if base is bool else
              isinstance(value, int) and not isinstance(value, bool) if base is int else
              isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
              isinstance(value, str))
        if not ok:
            raise ConfigError(f"{where}: value {value!r} is not a {base.__name__}")
        if name in MODEL_FIELDS:
            return
        probe = TrainConfig(task=self.card.name)
        setattr(probe, name, value)
        try:
            probe.validate(self.card)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def _check_when(self, where: str, when: Any) -> dict[str, list] | None:
        if when is None:
            return None
        if not isinstance(when, dict) or not when:
            raise ConfigError(f"{where}: 'when' must map earlier parameters to a value or a list of values")
        checked = {}
        for other, values in when.items():
            if other not in self.params:
                raise ConfigError(f"{where}: 'when' refers to {other!r}, which is not a parameter listed before it")
            checked[other] = values if isinstance(values, list) else [values]
        return checked

    # ------------------------------------------------------------------------------ sampling
    def __call__(self, trial) -> dict[str, Any]:
        """Define-by-run: suggest each active parameter; return the fixed values as constants."""
        if self.rows is not None:
            raise ConfigError(f"{self.where}: a space with rows runs only as a grid (--searcher grid)")
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, entry in self.params.items():
            when = entry["when"]
            if when and not all(chosen.get(other, constants.get(other)) in values for other, values in when.items()):
                continue
            kind = entry["kind"]
            if kind == "fixed":
                constants[name] = entry["value"]
                continue
            if kind == "choice":
                value = trial.suggest_categorical(name, entry["values"])
            elif kind in ("int", "logint"):
                value = trial.suggest_int(name, entry["low"], entry["high"], step=entry["step"], log=kind == "logint")
                if self._base_type(name) is float:
                    value = float(value)
            else:
                value = trial.suggest_float(name, entry["low"], entry["high"], log=kind == "loguniform")
            chosen[name] = value
        return constants

    def grid(self) -> dict[str, list]:
        """The space as a grid: every parameter a list (fixed values become one-element lists)."""
        grid = {}
        for name, entry in self.params.items():
            if entry["when"]:
                raise ConfigError(f"{self.where}: {name}: a grid cannot have conditional ('when') parameters")
            if entry["kind"] == "fixed":
                grid[name] = [entry["value"]]
            elif entry["kind"] == "choice":
                grid[name] = list(entry["values"])
            else:
                raise ConfigError(f"{self.where}: {name}: a grid search needs a list of values, not a "
                                  f"{entry['kind']} range")
        return grid

    def grid_size(self) -> int:
        """Number of points of :meth:`grid_points`."""
        return len(self.rows or [{}]) * math.prod(len(values) for values in self.grid().values())

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of the grid, in order: each row (if any) with every combination of the lists."""
        grid = self.grid()
        combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
        return [{**row, **combination} for row in (self.rows or [{}]) for combination in combinations]
