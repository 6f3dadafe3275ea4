"""A space with some of its parameters fixed (``--set KEY=VALUE``): the branch a fixed value
chooses is taken, and the other branches' parameters are never drawn.

A define-by-run space reads its own choices as it goes (``if trial.suggest_categorical("model",
...) == "fnn": trial.suggest_categorical("hidden", ...)``), so fixing a parameter means answering
its ``suggest_*`` call with the fixed value instead of drawing one: ``FixedTrial`` does that for
every space alike, Python functions and space files (whose ``when:`` conditions read the
answers). A fixed value outside the parameter's choices or range is refused in one line.
"""

from __future__ import annotations

from typing import Any, Callable

from visiontune.errors import ConfigError


class FixedTrial:
    """An Optuna trial that answers ``suggest_*`` for the fixed parameters with their values (checked
    against the space's own choices or range) and draws the others."""

    def __init__(self, trial, fixed: dict[str, Any]) -> None:
        self._trial, self._fixed = trial, fixed
        self.answered: set[str] = set()  # the fixed parameters the space asked for

    def __getattr__(self, name: str):
        return getattr(self._trial, name)

    def _answer(self, name: str, allowed: bool, what: str) -> Any:
        value = self._fixed[name]
        if not allowed:
            raise ConfigError(f"--set {name}={value!r}: the space draws {name} from {what}")
        self.answered.add(name)
        return value

    def suggest_categorical(self, name: str, choices, *args, **kwargs):
        if name in self._fixed:
            return self._answer(name, self._fixed[name] in list(choices), ", ".join(map(repr, choices)))
        return self._trial.suggest_categorical(name, choices, *args, **kwargs)

    def _number(self, suggest: Callable, name: str, low, high, *args, **kwargs):
        if name in self._fixed:
            value = self._fixed[name]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return self._answer(name, number and low <= value <= high, f"[{low:g}, {high:g}]")
        return suggest(name, low, high, *args, **kwargs)

    def suggest_float(self, name: str, low: float, high: float, *args, **kwargs):
        return self._number(self._trial.suggest_float, name, low, high, *args, **kwargs)

    def suggest_int(self, name: str, low: int, high: int, *args, **kwargs):
        if name in self._fixed and isinstance(self._fixed[name], float) and self._fixed[name].is_integer():
            self._fixed = {**self._fixed, name: int(self._fixed[name])}
        return self._number(self._trial.suggest_int, name, low, high, *args, **kwargs)


class ConditionedSpace:
    """A define-by-run function with parameters fixed (picklable: Ray saves it with the searcher).
    Its constants are the space's own and the fixed values."""

    def __init__(self, define_by_run: Callable, fixed: dict[str, Any]) -> None:
        self.define_by_run, self.fixed = define_by_run, dict(fixed)

    def __call__(self, trial) -> dict[str, Any]:
        constants = self.define_by_run(FixedTrial(trial, self.fixed)) or {}
        for name, value in constants.items():
            if name in self.fixed and self.fixed[name] != value:
                raise ConfigError(f"--set {name}={self.fixed[name]!r}: the space fixes {name} to {value!r}")
        return {**constants, **self.fixed}
