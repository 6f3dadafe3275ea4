"""Cross-validated selection and fold ensembles (``analyze RUN --cv K``): nnU-Net's protocol on
top of a search.

The search ranks its trials on one validation split; for a small data set (WARWICK's 17
validation images) trials closer than that split's noise are ranked by luck. Here the top
configurations by validation are retrained on K folds of train+validation (``data.folds``:
stratified by class for classification; the test split is not even loaded into the fold
trials), each fold model kept at its best epoch on its own fold. Every train+validation image
is then predicted once, out of fold, by the model that did not train on it, and the
configurations are ranked by that out-of-fold metric (mean ± std over the folds beside it).
The ranking is written (``RUN/cv/cv.json``) before the test split is read at all; then each
configuration's K fold models, as an ensemble (mean class probabilities), are evaluated once on
test, for the record: the winner is the first by out-of-fold metric whatever its test score.
``refit`` also trains the winner once on all of train+validation for the median of its folds'
best epochs, evaluated on test beside the ensemble.

The fold trainings are trials of the search service (``analysis.retrain``): one grid search of
(configuration, fold) rows in ``RUN/cv/``, on the search's resources, resumable. ``predict`` and
``export`` take the winner's fold ensemble with ``--ensemble cv`` (``cv_members``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from visiontune import record, runs
from visiontune.analysis.load import RunRecord, load_run
from visiontune.analysis.retrain import complete_rows, row_key, run_rows
from visiontune.data.splits import DataSplits
from visiontune.errors import VisiontuneError

DEFAULT_FOLDS = 5  # nnU-Net's; `--cv` without a number
QUICK_TOP = 2  # --quick: the top 2 configurations ...
QUICK_EPOCH_SHARE = 3  # ... for a third of the search's epochs


@dataclass
class Candidate:
    """One configuration under cross-validation, and what its folds gave."""

    trial: record.TrialRecord  # the search trial it came from
    config: dict[str, Any]  # as it trained (precision included), without the fold
    members: list[dict[str, Any]] = field(default_factory=list)  # per fold: trial id, path, best value and epoch
    oof: dict[str, float] = field(default_factory=dict)  # out-of-fold metrics over every pooled image
    test: dict[str, float] = field(default_factory=dict)  # the fold ensemble's test metrics
    refit: dict[str, Any] = field(default_factory=dict)  # --refit: epochs, test metrics


def _candidates(run: RunRecord, metric: str, top: int) -> list[Candidate]:
    ranked = [trial for trial, value, _ in record.rank(run.trials, metric) if value is not None][:top]
    if not ranked:
        raise VisiontuneError(f"{run.folder}: no trial has a {metric} result to cross-validate")
    candidates = []
    for trial in ranked:
        config = dict(trial.config)
        config[record.PRECISION] = trial.precision() or config.get(record.PRECISION, "auto")
        config.pop(record.CV_FOLD, None)
        candidates.append(Candidate(trial, config))
    return candidates


def _data(run: RunRecord, data_dir: str | None) -> DataSplits:
    """The search's data, loaded as it was (the fold trials load it the same way)."""
    from visiontune.data.options import DataOptions
    from visiontune.options import known_values

    options = known_values(DataOptions, run.options)
    options.update(download=False, **({"data_dir": data_dir} if data_dir else {}))
    return DataOptions(**options).load_splits(run.task)


def _trainer(config: dict[str, Any], weights: dict[str, torch.Tensor], data: DataSplits, device: str):
    from visiontune.config import config_from_dict
    from visiontune.engine import Trainer

    trainer = Trainer(config_from_dict(dict(config), "fold config", data.card), data, device=device)
    trainer.model.load_state_dict(weights)
    return trainer


def _probabilities(config: dict[str, Any], weights: dict[str, torch.Tensor], images, data: DataSplits,
                   device: str) -> torch.Tensor:
    """Class probabilities of ``images`` by a saved model, through the Trainer's own evaluation
    (its precision and test-time augmentation): what the trial's validation saw."""
    import dataclasses

    # Every split the images: a Trainer copies its splits to the device, and the pool need not go.
    scoring = dataclasses.replace(data, train=images, val=images, test=images, folds=None)
    return _trainer(config, weights, scoring, device).predict("test").softmax(dim=1)


def _metrics(card, probabilities: torch.Tensor, targets: torch.Tensor, prefix: str) -> dict[str, float]:
    accumulator = card.task_kind.accumulator(card, per_class=True)
    step = card.task_kind.eval_batch
    for start in range(0, len(targets), step):
        accumulator.update(probabilities[start:start + step], targets[start:start + step])
    return {f"{prefix}/{name}": value for name, value in accumulator.aggregate().items()}


def _fold_weights(fold_run: RunRecord, trial: record.TrialRecord, metric: str) -> tuple[dict[str, torch.Tensor], int]:
    from visiontune.predict import best_checkpoint_file

    value, epoch = trial.best(metric)
    checkpoint = best_checkpoint_file(fold_run.folder / trial.path, metric, epoch) if value is not None else None
    if checkpoint is None:
        raise VisiontuneError(f"{fold_run.folder / trial.path}: no checkpoint of its best epoch; rerun --cv")
    return runs.load_checkpoint(checkpoint)["trainer"]["model"], epoch


def _last_weights(trial_folder: Path, epochs: int) -> dict[str, torch.Tensor]:
    """The weights of a trial's last epoch (the refit's model: nothing chose an epoch)."""
    for checkpoint in sorted(trial_folder.glob(f"{record.CHECKPOINT_PREFIX}*"), reverse=True):
        state = runs.load_checkpoint(checkpoint / record.STATE_FILE)
        if state["trainer"]["epoch"] == epochs:
            return state["trainer"]["model"]
    raise VisiontuneError(f"{trial_folder}: no checkpoint of epoch {epochs}")


def cross_validate(run: RunRecord, folds: int = DEFAULT_FOLDS, top: int = 3, epochs: int | None = None,
                   refit: bool = False, data_dir: str | None = None, resources: dict[str, Any] | None = None,
                   device: str = "auto", progress: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cross-validate the ``top`` configurations of ``run`` on ``folds`` folds for ``epochs``
    (default the search's); returns the table (one row per configuration, ranked by the
    out-of-fold metric) and the record written to ``RUN/cv/cv.json``."""
    from visiontune.data.folds import pooled_for_cv

    if not run.complete:
        raise VisiontuneError(f"{run.folder}: the search is still running or was interrupted; resume it to its end "
                              "before --cv (its ranking is not final)")
    metric = run.metric
    name = metric.split("/", 1)[1]
    epochs = epochs or run.max_epochs
    candidates = _candidates(run, metric, top)
    rows = complete_rows([{**c.config, record.CV_FOLD: fold} for c in candidates for fold in range(folds)])
    label = f"top{len(candidates)}-folds{folds}-epochs{epochs}"
    fold_folder = run_rows(run, rows, epochs, record.CV_DIR, label, f"cross-validation ({folds} folds)", data_dir,
                           resources or {}, progress, cv_folds=folds)
    fold_run = load_run(fold_folder)
    if not fold_run.complete:
        raise VisiontuneError(f"{fold_folder}: the fold search did not finish; run the same command again to resume")

    splits = _data(run, data_dir)
    pooled = pooled_for_cv(splits, folds, int(run.options.get("split_seed") or 0))
    test = splits.test  # read below, after the ranking is written
    card = splits.card
    # A candidate is known by its completed grid row (every row sets the same keys), fold aside.
    by_key = {}
    for index, candidate in enumerate(candidates):
        candidate.config = {k: v for k, v in rows[index * folds].items() if k != record.CV_FOLD}
        by_key[row_key(rows[index * folds], leave_out=(record.CV_FOLD,))] = candidate
    assignment = pooled.folds
    for trial in fold_run.trials:
        fold = int(trial.config[record.CV_FOLD])
        candidate = by_key[row_key(trial.config, leave_out=(record.CV_FOLD,))]
        weights, best_epoch = _fold_weights(fold_run, trial, metric)
        candidate.members.append({"fold": fold, "trial_id": trial.trial_id,
                                  "path": str((fold_run.folder / trial.path).relative_to(run.folder)),
                                  "best_epoch": best_epoch, metric: trial.best(metric)[0], "weights": weights})
    oof_probabilities: dict[str, torch.Tensor] = {}
    for candidate in candidates:
        candidate.members.sort(key=lambda member: member["fold"])
        if [m["fold"] for m in candidate.members] != list(range(folds)):
            raise VisiontuneError(f"{fold_folder}: trial {candidate.trial.trial_id}'s configuration lacks some "
                                  "of its folds")
        out_of_fold = None
        for member in candidate.members:
            held_out = (assignment == member["fold"]).nonzero().flatten()
            probabilities = _probabilities(candidate.config, member["weights"], pooled.train.subset(held_out),
                                           pooled, device)
            if out_of_fold is None:
                out_of_fold = torch.empty((len(assignment), *probabilities.shape[1:]), dtype=probabilities.dtype)
            out_of_fold[held_out] = probabilities
        oof_probabilities[candidate.trial.trial_id] = out_of_fold
        candidate.oof = _metrics(card, out_of_fold, pooled.train.targets, "oof")
    candidates.sort(key=lambda c: c.oof[f"oof/{name}"], reverse=True)
    progress(f"cross-validation: ranked by out-of-fold {name} over all {len(assignment)} train+validation images: "
             + ", ".join(f"{c.trial.trial_id} {c.oof[f'oof/{name}']:.4f}" for c in candidates))

    summary = {"run": run.name, "folds": folds, "epochs": epochs, "metric": metric, "images": len(assignment),
               "fold_sizes": torch.bincount(assignment, minlength=folds).tolist(),
               "split_seed": int(run.options.get("split_seed") or 0), "fold_search": str(fold_folder.relative_to(run.folder)),
               "selection": f"the top {len(candidates)} configurations by {metric} (one validation split) "
                            f"retrained on {folds} folds of train+validation, each fold model at its best "
                            f"epoch on its own fold; ranked by the out-of-fold {name} over all "
                            f"{len(assignment)} images; test evaluated once afterwards, for the record",
               "ranking": [_entry(c, metric) for c in candidates], "winner": candidates[0].trial.trial_id}
    cv_file = run.folder / record.CV_DIR / record.CV_FILE
    runs.write_json(cv_file, summary)

    # The ranking is on disk: only now the test split is read, once per configuration.
    for candidate in candidates:
        mean = None
        for member in candidate.members:
            probabilities = _probabilities(candidate.config, member["weights"], test, splits, device)
            mean = probabilities if mean is None else mean + probabilities
        candidate.test = _metrics(card, mean / folds, test.targets, "test")
    if refit:
        winner = candidates[0]
        best_epochs = [member["best_epoch"] for member in winner.members]
        refit_epochs = max(1, int(round(statistics.median(best_epochs))))
        refit_folder = run_rows(run, complete_rows([{**winner.config, record.CV_FOLD: folds}]), refit_epochs,
                                record.CV_DIR, f"{label}-refit{refit_epochs}",
                                f"refit of trial {winner.trial.trial_id} on all {len(assignment)} images", data_dir,
                                resources or {}, progress, cv_folds=folds)
        refit_trial = load_run(refit_folder).trials[0]
        weights = _last_weights(refit_folder / refit_trial.path, refit_epochs)
        probabilities = _probabilities(winner.config, weights, test, splits, device)
        winner.refit = {"epochs": refit_epochs, "fold_best_epochs": best_epochs,
                        "path": str((refit_folder / refit_trial.path).relative_to(run.folder)),
                        **_metrics(card, probabilities, test.targets, "test")}
    summary["ranking"] = [_entry(c, metric) for c in candidates]
    runs.write_json(cv_file, summary)
    return _table(run, candidates, metric, card.task_kind.test_metric), summary


def _entry(candidate: Candidate, metric: str) -> dict[str, Any]:
    values = [member[metric] for member in candidate.members]
    return {"trial_id": candidate.trial.trial_id, "config": candidate.config,
            "val_one_split": candidate.trial.best(metric)[0], **candidate.oof,
            "fold_mean": statistics.fmean(values), "fold_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "members": [{k: v for k, v in member.items() if k != "weights"} for member in candidate.members],
            **({"ensemble_test": candidate.test} if candidate.test else {}),
            **({"refit": candidate.refit} if candidate.refit else {})}


def _table(run: RunRecord, candidates: list[Candidate], metric: str, test_metric: str) -> pd.DataFrame:
    name = metric.split("/", 1)[1]
    rows = []
    for rank, candidate in enumerate(candidates, start=1):
        values = [member[metric] for member in candidate.members]
        one_split = candidate.trial.best(metric)[0]
        oof = candidate.oof[f"oof/{name}"]
        tested = candidate.test.get(test_metric, float("nan"))
        searched = (run.test.get(candidate.trial.trial_id) or {}).get(test_metric)
        row = {"rank": rank, "trial": candidate.trial.trial_id, "model": candidate.config.get("model"),
               f"{metric} (one split)": one_split, f"oof/{name}": oof,
               "folds mean": statistics.fmean(values), "folds std": statistics.stdev(values) if len(values) > 1 else 0.0,
               f"{test_metric} (fold ensemble)": tested,
               f"{test_metric} (search's model)": float("nan") if searched is None else float(searched),
               "optimism: one split": one_split - tested, "optimism: cv": oof - tested}
        if candidate.refit:
            row[f"{test_metric} (refit, {candidate.refit['epochs']} epochs)"] = candidate.refit[test_metric]
        rows.append(row)
    return pd.DataFrame(rows)


def cv_members(run_folder: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, torch.Tensor]]]]:
    """The latest cross-validation's record and its winner's fold models as (config, weights):
    what ``predict --ensemble cv`` and ``export --ensemble cv`` load."""
    path = run_folder / record.CV_DIR / record.CV_FILE
    if not path.is_file():
        raise VisiontuneError(f"{run_folder}: no cross-validation yet ({path} missing); run visiontune analyze "
                              f"{run_folder} --cv 5 first")
    try:
        summary = json.loads(path.read_text())
        winner = summary["ranking"][0]
        members = []
        for member in winner["members"]:
            from visiontune.predict import best_checkpoint_file

            checkpoint = best_checkpoint_file(run_folder / member["path"], summary["metric"], member["best_epoch"])
            if checkpoint is None:
                raise VisiontuneError(f"{run_folder / member['path']}: the fold model's checkpoint is missing")
            members.append((winner["config"], runs.load_checkpoint(checkpoint)["trainer"]["model"]))
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise VisiontuneError(f"{path}: cannot read the cross-validation record ({error})") from None
    return summary, members


__all__ = ["DEFAULT_FOLDS", "QUICK_EPOCH_SHARE", "QUICK_TOP", "cross_validate", "cv_members"]
