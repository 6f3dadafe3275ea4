"""What defines a search (:class:`SearchOptions`, from which ``visiontune search``'s options are
generated) and the checks that turn it into a :class:`SearchPlan` before Ray starts.

The options are recorded in ``search.json`` as given; everything derived from them (the resolved
space, the grace period, the deadline) lives in the plan, so a resumed search derives it again
the same way.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from visiontune import record
from visiontune.config import config_from_dict
from visiontune.data.options import DataOptions
from visiontune.errors import ConfigError
from visiontune.options import known_values, option, parse_set_options
from visiontune.search.portfolio import portfolio_points
from visiontune.search_spaces import SearchSpace, check_point_in_space, check_space, conditioned, resolve_space
from visiontune.search_spaces.declarative import load_data_file
from visiontune.storage import RunStore

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard

SEARCHERS = ("portfolio", "tpe", "random", "grid")
SCHEDULERS = ("asha", "none")
PARAMS_OBJECTIVE = record.PARAMS  # the second objective of --objectives: learnable weights
DEFAULT_TRIALS = 16
WHAT, WHERE = "what to search", "where it runs"

# The report's best configurations (exercise 1.5 for MNIST, 2.2 for WARWICK): --warm-start report.
REPORT_BEST = {
    "mnist": {"model": "cnn", "blocks": 3, "width": 32, "activation": "relu", "pool_first": False,
              "batchnorm": True, "dropout": 0.0, "regularizer": "none", "optimizer": "adam", "lr": 0.001,
              "lr_schedule": "constant", "batch_size": 32, "augment": "none"},
    "warwick": {"model": "fcn2", "depth": 2, "width": 8, "batchnorm": True, "dropout": 0.0, "optimizer": "adam",
                "lr": 0.001, "lr_schedule": "constant", "batch_size": 64, "loss": "ce", "augment": "flip"},
}


@dataclass(kw_only=True)
class TrialResources:
    """Where and how trials run: shared by searches and by the retrains of ``analyze --reseed``."""

    cpus_per_trial: float = option(1.0, "CPUs per trial", metavar="N", group=WHERE)
    gpus_per_trial: float = option(0.0, "GPU share per trial: 0.25 packs four trials on one GPU", metavar="F",
                                   group=WHERE)
    concurrency: int | None = option(None, "at most N trials at once (default: as resources allow)", metavar="N",
                                     group=WHERE)
    max_failures: int = option(2, "retry a trial that raises N times from its last checkpoint, then record it "
                                  "failed", metavar="N", group=WHERE)
    fresh_worker_per_trial: bool = option(False, "start a new worker process for every trial instead of reusing "
                                                 "one (slower)", group=WHERE)
    address: str | None = option(None, "connect to a running Ray cluster (default: start a local one, bound to "
                                       "loopback)", metavar="HOST:PORT", group=WHERE)

    def resources(self) -> "TrialResources":
        """Just the resource options."""
        return TrialResources(**known_values(TrialResources, asdict(self)))


@dataclass(kw_only=True)
class SearchOptions(TrialResources, DataOptions):
    """Everything that defines a search; recorded in ``search.json`` and reused by ``--resume``."""

    OPTION_GROUPS = (WHAT, WHERE)  # the order of the sections in --help (the data options last)

    task: str = option("", "a built-in task or a data set's path", cli=False)  # the command's positional argument
    space: str | None = option(None, "named space (see --list-spaces) or a YAML/JSON file; default: the task's "
                                     "full space, fitted to the data set (--show-space prints it)",
                               metavar="NAME|FILE", group=WHAT)
    metric: str | None = option(None, "what selection and ASHA maximise: val/acc, val/balanced_acc or val/macro_f1 "
                                      "(classification), val/dice or val/dice_pooled (segmentation); default val/acc "
                                      "or val/dice", metavar="METRIC", group=WHAT)
    trials: int | None = option(None, f"number of trials (default {DEFAULT_TRIALS}; grid: every point)",
                                metavar="N", group=WHAT)
    max_epochs: int = option(10, "epochs of a trial that is never stopped", metavar="N", group=WHAT)
    fixed: dict[str, Any] = option(help="fix a setting for every trial, e.g. --set precision=bf16 (repeatable)",
                                   flag="--set", metavar="KEY=VALUE", repeat=True, parse=parse_set_options,
                                   group=WHAT, default_factory=dict)
    searcher: str = option("portfolio", "proposal method: portfolio (the configurations that searched best on other "
                                        "data sets of the same kind first, then TPE; the default), tpe (Optuna's TPE "
                                        "alone), random, grid (every point of a grid space)",
                            choices=SEARCHERS, group=WHAT)
    scheduler: str = option("asha", "early stopping", choices=SCHEDULERS, group=WHAT)
    grace_period: int | None = option(None, "ASHA: epochs before a trial can be stopped (default: a tenth of "
                                            "--max-epochs, at least 1)", metavar="N", group=WHAT)
    reduction_factor: int = option(3, "ASHA: keep 1/N at each rung", metavar="N", group=WHAT)
    seed: int = option(0, "seed of the searcher", metavar="S", group=WHAT)
    warm_start: str | None = option(None, "evaluate these configurations first: 'report' (the report's best) or "
                                          "a YAML/JSON list", metavar="report|FILE", group=WHAT)
    objectives: str | None = option(None, "two objectives, e.g. val/acc,params: accuracy against learnable "
                                          "weights (Pareto front)", metavar="METRIC,params", group=WHAT)
    time_budget: str | None = option(None, "no new trial after this (e.g. 30m, 2h); running trials end at their "
                                           "next epoch", metavar="DURATION", group=WHAT)
    top_k: int = option(3, "evaluate the K best trials on test; checkpoints of trials that can no longer be "
                           "among them are deleted", metavar="K", group=WHAT)
    report: bool = option(True, "write the analysis report (tables, figures, HTML) when the search ends "
                                "(--no-report: skip it; see visiontune analyze)", group=WHAT)
    name: str | None = option(None, "run name (default search-TASK-TIME); with --resume, the search to continue",
                              metavar="NAME", group=WHERE)
    storage: str = option("runs", "where run folders go: a folder or s3://...", metavar="DIR|URI", group=WHERE)
    optuna_storage: str | None = option(None, "keep the Optuna study in this database, e.g. sqlite:///study.db",
                                        metavar="URL", group=WHERE)
    # Set by `analyze --cv` for its fold trainings: trials train on K folds of train+validation
    # (config key record.CV_FOLD), the test split is not loaded into them and not evaluated.
    cv_folds: int = option(0, "cross-validation folds of a fold search", cli=False)
    # ... and for its refit: the trials train on all K folds (data.folds.refit_splits).
    cv_refit: bool = option(False, "a refit on every fold of a cross-validation", cli=False)


# Options that --resume takes from the command line; everything else comes from search.json.
RESUME_OPTIONS = ("name", "storage", "address", "time_budget")


@dataclass
class SearchPlan:
    """What the checked options resolve to; derived again, the same way, on --resume."""

    metric: str
    space: SearchSpace
    fixed: dict[str, Any]  # settings every trial has: task, epochs, --set
    points: list[dict[str, Any]]  # warm-start configurations, evaluated first
    grace_period: int
    objectives: list[str] | None
    total_trials: int
    budget_s: float | None
    portfolio: list[dict[str, Any]] = field(default_factory=list)  # --searcher portfolio: tried after the points
    deadline: float | None = field(default=None)  # set when the trials start

    def start_clock(self) -> None:
        """Fix the time budget's deadline: no new trial after it."""
        self.deadline = time.time() + self.budget_s if self.budget_s else None


def default_grace_period(max_epochs: int) -> int:
    """ASHA's first rung: a tenth of the epochs (at least 1). Segmentation scores are noisy in
    the first epochs (the report saw little progress before epoch 20), so judging a trial
    after one epoch of sixty would stop slow starters that end up best."""
    return max(1, max_epochs // 10)


def parse_duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` -> seconds; a :class:`ConfigError` otherwise."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
    if not match or not any(match.groups()):
        raise ConfigError(f"--time-budget {text!r}: expected a duration such as 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--time-budget {text!r} must be positive")
    return total


def parse_objectives(text: str | None, metric: str) -> list[str] | None:
    """``val/acc,params`` -> the metric names of a two-objective search (None: one objective)."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) != 2 or names[0] != metric or names[1] != PARAMS_OBJECTIVE:
        raise ConfigError(f"--objectives {text!r}: supported is '{metric},{PARAMS_OBJECTIVE}' "
                          "(validation metric against learnable weights)")
    return names


def load_warm_start(spec: str | None, task: str) -> list[dict[str, Any]]:
    """Warm-start configurations: ``report`` (the report's best) or a YAML/JSON list of configs."""
    if not spec:
        return []
    if spec == "report":
        if task not in REPORT_BEST:
            raise ConfigError(f"--warm-start report: the report's best configurations are for "
                              f"{' and '.join(REPORT_BEST)}, not {task}")
        return [dict(REPORT_BEST[task])]
    data = load_data_file(spec)
    if isinstance(data, dict):
        data = data.get("configs", data.get("points"))
    if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
        raise ConfigError(f"{spec}: a warm-start file holds a non-empty list of configurations (mappings)")
    return data


def _check_numbers(options: SearchOptions, grace_period: int) -> None:
    positive_ints = {"max_epochs": options.max_epochs, "grace_period": grace_period, "top_k": options.top_k,
                     "trials": options.trials, "concurrency": options.concurrency}
    for name, value in positive_ints.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of at least 1, not {value}")
    if grace_period > options.max_epochs:
        raise ConfigError(f"--grace-period {grace_period} exceeds --max-epochs {options.max_epochs}")
    if options.reduction_factor < 2:
        raise ConfigError(f"--reduction-factor must be at least 2, not {options.reduction_factor}")
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures must be 0 or more, not {options.max_failures}")
    if not options.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be positive, not {options.cpus_per_trial}")
    gpus = options.gpus_per_trial
    if gpus < 0 or (gpus > 1 and not float(gpus).is_integer()):
        raise ConfigError(f"--gpus-per-trial must be a fraction of one GPU (0.25, 0.5) or a whole number, not {gpus}")
    if options.searcher not in SEARCHERS:
        raise ConfigError(f"--searcher must be one of {', '.join(SEARCHERS)}, not {options.searcher!r}")
    if options.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {options.scheduler!r}")


def check_numbers(options: SearchOptions) -> None:
    """The checks that need no data set: counts, resources, searcher and scheduler, the budget."""
    grace_period = options.grace_period if options.grace_period is not None else default_grace_period(options.max_epochs)
    _check_numbers(options, grace_period)
    parse_duration(options.time_budget)


def check_options(options: SearchOptions, card: DatasetCard) -> SearchPlan:
    """Validate every option against the data set ``card`` describes and resolve the space; a
    :class:`ConfigError` naming the first problem."""
    kind = card.kind_spec
    metric = options.metric or kind.val_metric
    if metric not in kind.val_metrics:
        raise ConfigError(f"--metric must be one of {', '.join(kind.val_metrics)} for {card.name} ({kind.name}), "
                          f"not {metric!r}")
    grace_period = options.grace_period if options.grace_period is not None else default_grace_period(options.max_epochs)
    _check_numbers(options, grace_period)
    budget = parse_duration(options.time_budget)
    objectives = parse_objectives(options.objectives, metric)
    grid = options.searcher == "grid"
    if objectives and grid:
        raise ConfigError("--objectives needs the tpe, random or portfolio searcher, not grid")
    if options.optuna_storage and grid:
        raise ConfigError("--optuna-storage records an Optuna study; use the tpe, random or portfolio searcher")

    space = resolve_space(card, options.space)
    for key in options.fixed:
        if key in record.SET_BY_SEARCH:
            raise ConfigError(f"--set {key}=...: {key} is set by the search itself")
    fixed = {"task": options.task, "epochs": options.max_epochs, **options.fixed}
    if space.has_rows and not grid:
        raise ConfigError(f"space {space.name!r} lists rows of settings: run it with --searcher grid")
    if grid:  # a grid's points are listed, not drawn: --set cannot choose among them
        clash = sorted(set(options.fixed) & {key for config in space.grid_points() for key in config})
        if clash:
            raise ConfigError(f"--set {', '.join(clash)}: the grid {space.name!r} already lists it; remove it "
                              "from --set")
    else:  # --set on a searched parameter fixes it: the branch it chooses is taken
        space = conditioned(space, options.fixed)
    check_space(space, fixed, card)
    total = options.trials or DEFAULT_TRIALS
    if grid:
        total = len(space.grid_points())
        if options.trials not in (None, total):
            raise ConfigError(f"a grid search runs every point of {space.name!r}: {total} trials; "
                              f"drop --trials or give --trials {total}")
    points = load_warm_start(options.warm_start, card.name)
    if points and grid:
        raise ConfigError("--warm-start needs the tpe, random or portfolio searcher; a grid runs fixed points")
    for index, point in enumerate(points):
        try:
            config_from_dict({**point, **fixed}, f"warm-start point {index + 1}", card)
            check_point_in_space(space, point, fixed)
        except ConfigError as error:
            raise ConfigError(f"--warm-start {options.warm_start}: point {index + 1}: {error}") from None
    portfolio = portfolio_points(card, space, fixed) if options.searcher == "portfolio" else []
    return SearchPlan(metric=metric, space=space, fixed=fixed, points=points, grace_period=grace_period,
                      objectives=objectives, total_trials=total, budget_s=budget, portfolio=portfolio)


def search_record(options: SearchOptions, plan: SearchPlan, splits, store: RunStore) -> dict[str, Any]:
    """The contents of ``search.json`` when a search starts."""
    from visiontune import runs

    return {
        "visiontune_search": 1,
        "name": options.name,
        "task": options.task,
        "metric": plan.metric,
        "space": {"name": plan.space.name, "description": plan.space.description},
        "portfolio": plan.portfolio,  # --searcher portfolio: the configurations tried first
        "options": asdict(options),
        "data": splits.describe(),
        **runs.provenance(),
        "location": store.location,
    }


def load_recorded_options(store: RunStore) -> SearchOptions:
    """The options a search was started with, from its ``search.json``."""
    if not store.exists(record.SEARCH_FILE):
        raise ConfigError(f"{store.location}: no search to resume here (no {record.SEARCH_FILE}); "
                          "check --name and --storage")
    try:
        recorded = json.loads(store.read_text(record.SEARCH_FILE))["options"]
    except (ValueError, KeyError) as error:
        raise ConfigError(f"{store.location}/{record.SEARCH_FILE}: unreadable search record ({error})") from None
    return SearchOptions(**known_values(SearchOptions, recorded))
