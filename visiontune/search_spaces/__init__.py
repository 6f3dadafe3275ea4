"""Search spaces: named ones (``visiontune search --list-spaces``) and user files.

A space is an Optuna define-by-run function: it only calls ``trial.suggest_*`` and returns a
dict of plain constants; the sampled values plus the constants form a trial's config. Named
spaces are Python functions (``classification.py``, ``segmentation.py``) or data
(``grids.py``, the report's grid studies); user spaces come from YAML/JSON files
(``declarative.py``). Every space is checked by sampling before Ray starts.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from visiontune.config import config_from_dict
from visiontune.errors import ConfigError
from visiontune.search_spaces import classification, grids, segmentation
from visiontune.search_spaces.conditioned import ConditionedSpace
from visiontune.search_spaces.declarative import DeclarativeSpace, load_space_file
from visiontune.search_spaces.fitting import FittedSpace, limits_for
from visiontune.tasks import TASKS

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard


@dataclass
class SearchSpace:
    """A named, checked search space for one data set."""

    name: str
    task: str  # the data set's name (its card's)
    description: str
    define_by_run: Callable[[Any], dict[str, Any] | None]  # picklable: Ray saves it with the searcher
    declarative: DeclarativeSpace | None = None  # data spaces can also run as a grid

    def grid(self) -> dict[str, list]:
        """The grid of a data space; a :class:`ConfigError` for define-by-run functions."""
        if self.declarative is None:
            raise ConfigError(f"space {self.name!r} is a define-by-run function and cannot run as a grid; "
                              "use a grid space (see --list-spaces) or a YAML file whose parameters are lists")
        return self.declarative.grid()

    @property
    def has_rows(self) -> bool:
        """A data space with grid rows (runs only as a grid)."""
        return self.declarative is not None and self.declarative.rows is not None

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of the grid (rows included), in order; a :class:`ConfigError` as :meth:`grid`."""
        self.grid()
        return self.declarative.grid_points()

    def sample(self, count: int, seed: int = 0) -> list[dict[str, Any]]:
        """``count`` configurations drawn by Optuna's random sampler (params plus constants)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
        configs = []
        for _ in range(count):
            trial = study.ask()
            constants = self.define_by_run(trial) or {}
            configs.append({**trial.params, **constants})
            study.tell(trial, 0.0)
        return configs


@dataclass(frozen=True)
class _Named:
    task: str  # the built-in task it was written for; it serves every data set of that task's kind
    description: str
    space: Callable | dict  # a define-by-run function or a data space

    @property
    def kind(self) -> str:
        return TASKS[self.task].kind


def _describe(function: Callable) -> str:
    return (function.__doc__ or "").strip().splitlines()[0]


NAMED_SPACES: dict[str, _Named] = {
    "mnist": _Named("mnist", _describe(classification.mnist_full), classification.mnist_full),
    "mnist-cnn": _Named("mnist", _describe(classification.mnist_cnn), classification.mnist_cnn),
    "mnist-gpu": _Named("mnist", _describe(classification.mnist_gpu), classification.mnist_gpu),
    "cifar10": _Named("cifar10", _describe(classification.colour_resnet), classification.colour_resnet),
    "warwick": _Named("warwick", _describe(segmentation.warwick_full), segmentation.warwick_full),
    "warwick-unet": _Named("warwick", _describe(segmentation.warwick_unet), segmentation.warwick_unet),
    "warwick-unet-gpu": _Named("warwick", _describe(segmentation.warwick_unet_gpu), segmentation.warwick_unet_gpu),
    **{name: _Named(data["task"], data["description"], data) for name, data in grids.GRIDS.items()},
}


def list_spaces(kind: str | None = None) -> list[tuple[str, str, str]]:
    """(name, task, one-line description) of every named space, optionally of those of one kind
    (``classification`` or ``segmentation``: the MNIST spaces serve every classification task)."""
    return [(name, named.task, named.description) for name, named in NAMED_SPACES.items()
            if kind is None or named.kind == kind]


def resolve_space(card: "DatasetCard", spec: str | None) -> SearchSpace:
    """The space named ``spec`` (default: the data set's own name, else its kind's full space) or
    loaded from a YAML/JSON file, fitted to the data set ``card`` describes (``fitting``)."""
    task, kind, limits = card.name, card.kind, limits_for(card)
    # default: the data set's own named space, else its kind's full space
    spec = spec or (task if task in NAMED_SPACES and NAMED_SPACES[task].kind == kind else card.kind_spec.default_space)
    if spec in NAMED_SPACES:
        named = NAMED_SPACES[spec]
        if named.kind != kind:
            raise ConfigError(f"space {spec!r} is for {named.kind} tasks such as {named.task}, "
                              f"not {task} ({kind})")
        if isinstance(named.space, dict):
            declarative = DeclarativeSpace(named.space, card, f"space {spec!r}")
            return SearchSpace(spec, task, named.description, FittedSpace(declarative, limits), declarative)
        return SearchSpace(spec, task, named.description, FittedSpace(named.space, limits))
    path = Path(spec)
    if not (path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists()):
        names = ", ".join(name for name, *_ in list_spaces(kind))
        raise ConfigError(f"unknown space {spec!r}; named spaces for {task}: {names} (or give a .yaml/.json file)")
    declarative = DeclarativeSpace(load_space_file(path), card, str(path))
    return SearchSpace(str(path), task, declarative.description, FittedSpace(declarative, limits), declarative)


def conditioned(space: SearchSpace, fixed: dict[str, Any]) -> SearchSpace:
    """``space`` with the parameters in ``fixed`` (``--set``) fixed: the branches they choose are
    taken and the other branches' parameters never drawn (``conditioned.ConditionedSpace``)."""
    if not fixed:
        return space
    return dataclasses.replace(space, define_by_run=ConditionedSpace(space.define_by_run, fixed),
                               description=f"{space.description} [fixed: "
                                           f"{', '.join(f'{k}={v}' for k, v in fixed.items())}]")


def _shown(distribution) -> str:
    import optuna

    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, distribution.choices))
    kind = "int" if isinstance(distribution, optuna.distributions.IntDistribution) else "float"
    return f"{kind} {distribution.low:g} to {distribution.high:g}{' (log)' if distribution.log else ''}"


def describe_space(space: SearchSpace, samples: int = 300, seed: int = 0) -> list[str]:
    """The space as it will be searched, one line per setting: each parameter's range or choices
    (as fitted to the data set) with how often it is active, then the constants."""
    if space.has_rows:  # a grid with rows cannot be sampled: its points, one line each
        points = space.grid_points()
        return [f"space {space.name!r} for {space.task}: {space.description}",
                f"  grid: {len(points)} points"] + [
            "  " + ", ".join(f"{name}={value!r}" for name, value in point.items()) for point in points]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
    distributions: dict[str, list[str]] = {}  # a setting may range differently by branch (lr by optimizer)
    active: dict[str, int] = {}
    constants: dict[str, Any] = {}
    for _ in range(samples):
        trial = study.ask()
        constants.update(space.define_by_run(trial) or {})
        for name, distribution in trial.distributions.items():
            shown = _shown(distribution)
            if shown not in distributions.setdefault(name, []):
                distributions[name].append(shown)
            active[name] = active.get(name, 0) + 1
        study.tell(trial, 0.0)
    lines = [f"space {space.name!r} for {space.task}: {space.description}"]
    for name, shown in distributions.items():
        share = active[name] / samples
        lines.append(f"  {name}: {' or '.join(shown)}"
                     + ("" if share == 1 else f"  (in {share:.0%} of the draws: conditional)"))
    for name, value in constants.items():
        lines.append(f"  {name} = {value!r}  (constant)")
    return lines


def check_space(space: SearchSpace, fixed: dict[str, Any], card: "DatasetCard", samples: int = 64,
                seed: int = 0) -> None:
    """Sample ``samples`` configurations and validate each one as a full training config.

    Catches combinations that no single parameter check sees (a CNN setting sampled for the
    FNN), so that a bad space fails in one line before Ray starts, not in a trial.
    """
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        if space.has_rows:  # a grid of rows: check every point, not a sample
            configs = space.grid_points()
        else:
            configs = space.sample(samples, seed) if space.declarative is None or space.declarative.params else []
    except ConfigError:
        raise
    except Exception as error:  # an Optuna error from a malformed define-by-run function
        raise ConfigError(f"space {space.name!r} cannot be sampled: {error}") from None
    for config in configs:
        try:
            config_from_dict({**config, **fixed}, "sampled configuration", card)
        except ConfigError as error:
            shown = ", ".join(f"{k}={v}" for k, v in config.items())
            raise ConfigError(f"space {space.name!r} produced an invalid configuration ({shown}): {error}") from None


def check_point_in_space(space: SearchSpace, point: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Check that a warm-start ``point`` is a configuration the space can produce.

    Enqueues the point in a scratch Optuna study and runs the space on it: a value outside a
    choice list, outside a range, for a setting the space never uses, or contradicting one the
    space fixes, is a :class:`ConfigError` naming the setting.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(point)
    trial = study.ask()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # out-of-range floats: checked below, in one line
            constants = {**(space.define_by_run(trial) or {}), **fixed}
    except ValueError as error:  # Optuna: a categorical value that is not one of the choices
        raise ConfigError(f"does not fit space {space.name!r}: {error}") from None
    produced = {**trial.params, **constants}
    for key, value in point.items():
        if key not in produced:
            raise ConfigError(f"{key}={value!r} is not a setting of space {space.name!r} in this branch")
        if produced[key] != value:
            raise ConfigError(f"{key}={value!r} does not fit space {space.name!r}, which gives {produced[key]!r}")
        distribution = trial.distributions.get(key)
        low, high = getattr(distribution, "low", None), getattr(distribution, "high", None)
        if low is not None and not low <= value <= high:
            raise ConfigError(f"{key}={value!r} lies outside the range [{low}, {high}] of space {space.name!r}")


__all__ = ["SearchSpace", "check_point_in_space", "check_space", "conditioned", "describe_space", "list_spaces",
           "resolve_space"]
