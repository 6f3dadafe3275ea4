"""Parameter importance: the trials rebuilt as an Optuna study, scored by Optuna's PED-ANOVA.

PED-ANOVA (Watanabe et al., IJCAI 2023; conditional form, KDD 2026) asks how much each
parameter matters for landing in the best quantile of trials. Unlike fANOVA it needs no
scikit-learn and it handles conditional parameters (momentum only with SGD) directly.
"""

from __future__ import annotations

import warnings
from typing import Any

from visiontune.runfolder import SearchRun
from visiontune.record import is_missing, metric_mode
from visiontune.record import Status


def _distribution(values: list[Any]):
    """An Optuna distribution covering the observed values (None if they never vary)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distinct = sorted({repr(v) for v in values})
    if len(distinct) < 2:
        return None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        log = low > 0 and high / low >= 100
        if all(isinstance(v, int) for v in values):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    return CategoricalDistribution(sorted({v for v in values}, key=repr))


def parameter_importance(run: SearchRun, parameters: list[str], metric: str | None = None) -> tuple[dict[str, float], str]:
    """PED-ANOVA importances of the searched parameters, and a description of the trials used.

    Uses the finished trials (full budget, comparable scores); with fewer than four of them,
    every trial with a result, and says so. The best quarter of those trials is the target.
    """
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    metric = metric or run.metric
    mode = metric_mode(metric)
    scored = [(trial, trial.best(metric)[0]) for trial in run.trials]
    finished = [(t, v) for t, v in scored if v is not None and t.status == Status.FINISHED]
    basis = f"{len(finished)} finished trials"
    if len(finished) < 4:
        finished = [(t, v) for t, v in scored if v is not None]
        basis = f"all {len(finished)} trials with a result (fewer than 4 finished)"
    distributions = {}
    for name in parameters:
        values = [t.config[name] for t, _ in finished if not is_missing(t.config.get(name))]
        if (distribution := _distribution(values)) is not None:
            distributions[name] = distribution
    if len(finished) < 4 or not distributions:
        return {}, basis
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for trial, value in finished:
        present = {p: d for p, d in distributions.items() if not is_missing(trial.config.get(p))}
        study.add_trial(optuna.trial.create_trial(
            params={p: trial.config[p] for p in present}, distributions=present, value=value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA is flagged experimental
        importances = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(target_quantile=0.25))
    return dict(importances), f"{basis}, target: their best quarter"
