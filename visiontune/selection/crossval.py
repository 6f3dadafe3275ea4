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

The fold trainings are trials of the search service (``grid.retrain``): one grid search of
(configuration, fold) rows in ``RUN/cv/``, on the search's resources, resumable. Every figure
(out-of-fold, ensemble, refit) comes from the model layer (``trained.TrainedModel``), the code
``predict --ensemble cv`` and ``export --ensemble cv`` run on the winner's fold models.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from visiontune import inference, record, runs
from visiontune.data.folds import fold_splits, pooled_for_cv
from visiontune.data.splits import DataSplits
from visiontune.errors import VisiontuneError
from visiontune.runfolder import SearchRun, last_checkpoint, load_search
from visiontune.selection import DEFAULT_FOLDS
from visiontune.selection.grid import complete_rows, mean_std, retrain, row_key
from visiontune.trained import TrainedModel


@dataclass
class Candidate:
    """One configuration under cross-validation, and what its folds gave."""

    trial: record.TrialRecord  # the search trial it came from
    config: dict[str, Any]  # as it trained (precision included), without the fold
    members: list[dict[str, Any]] = field(default_factory=list)  # per fold: trial id, path, best value and epoch
    checkpoints: list[Path] = field(default_factory=list)  # per fold: the fold model's checkpoint
    oof: dict[str, float] = field(default_factory=dict)  # out-of-fold metrics over every pooled image
    test: dict[str, float] = field(default_factory=dict)  # the fold ensemble's test metrics
    refit: dict[str, Any] = field(default_factory=dict)  # --refit: epochs, test metrics


def load_data(run: SearchRun, data_dir: str | None) -> DataSplits:
    """The search's data, loaded as it was (the fold trials load it the same way)."""
    return run.load_splits(data_dir)


def _candidates(run: SearchRun, top: int) -> list[Candidate]:
    ranked = run.ranked()[:top]
    if not ranked:
        raise VisiontuneError(f"{run.folder}: no trial has a {run.metric} result to cross-validate")
    return [Candidate(trial, {k: v for k, v in trial.trained_config().items() if k != record.CV_FOLD})
            for trial, _, _ in ranked]


def _fold_members(candidates: list[Candidate], rows: list[dict[str, Any]], folds: int, fold_run: SearchRun,
                  run_folder: Path) -> None:
    """Each candidate's fold models from the fold search, in fold order. A candidate is known by
    its completed grid row (every row sets the same keys), the fold aside."""
    by_key = {}
    for index, candidate in enumerate(candidates):
        candidate.config = {k: v for k, v in rows[index * folds].items() if k != record.CV_FOLD}
        by_key[row_key(rows[index * folds], leave_out=(record.CV_FOLD,))] = candidate
    for trial in sorted(fold_run.trials, key=lambda t: int(t.config[record.CV_FOLD])):
        candidate = by_key[row_key(trial.config, leave_out=(record.CV_FOLD,))]
        value, best_epoch = trial.best(fold_run.metric)
        candidate.members.append({"fold": int(trial.config[record.CV_FOLD]), "trial_id": trial.trial_id,
                                  "path": str((fold_run.folder / trial.path).relative_to(run_folder)),
                                  "best_epoch": best_epoch, fold_run.metric: value})
        candidate.checkpoints.append(fold_run.checkpoint(trial))
    for candidate in candidates:
        if [m["fold"] for m in candidate.members] != list(range(folds)):
            raise VisiontuneError(f"{fold_run.folder}: trial {candidate.trial.trial_id}'s configuration lacks some "
                                  "of its folds")


def _out_of_fold(candidates: list[Candidate], pooled: DataSplits, device: str) -> None:
    """Every pooled image predicted once, by the fold model that did not train on it."""
    for candidate in candidates:
        evaluation = inference.Evaluation(pooled.card, per_class=True)
        for fold, checkpoint in enumerate(candidate.checkpoints):
            model = TrainedModel.from_checkpoints(pooled.card, [(candidate.config, checkpoint)], device)
            model.add_to(evaluation, fold_splits(pooled, fold).val)
        candidate.oof = evaluation.metrics("oof")


def _entry(candidate: Candidate, metric: str) -> dict[str, Any]:
    mean, std = mean_std([member[metric] for member in candidate.members])
    return {"trial_id": candidate.trial.trial_id, "config": candidate.config,
            "val_one_split": candidate.trial.best(metric)[0], **candidate.oof, "fold_mean": mean, "fold_std": std,
            "members": candidate.members,
            **({"ensemble_test": candidate.test} if candidate.test else {}),
            **({"refit": candidate.refit} if candidate.refit else {})}


def _refit(run: SearchRun, winner: Candidate, folds: int, label: str, images: int, data_dir: str | None,
           resources: dict[str, Any], splits: DataSplits, device: str, progress: Callable[[str], None]) -> None:
    """Train the winner on every pooled image for the median of its folds' best epochs; test its
    last epoch (nothing chose one)."""
    best_epochs = [member["best_epoch"] for member in winner.members]
    epochs = max(1, int(round(statistics.median(best_epochs))))
    folder = retrain(run, complete_rows([winner.config]), epochs, record.CV_DIR, f"{label}-refit{epochs}",
                     f"refit of trial {winner.trial.trial_id} on all {images} images", data_dir, resources, progress,
                     cv_folds=folds, cv_refit=True)
    trial_folder = folder / load_search(folder).trials[0].path
    model = TrainedModel.from_checkpoints(splits.card, [(winner.config, last_checkpoint(trial_folder, epochs))], device)
    winner.refit = {"epochs": epochs, "fold_best_epochs": best_epochs, "path": str(trial_folder.relative_to(run.folder)),
                    **model.evaluate(splits.test, "test").metrics}


def cross_validate(run: SearchRun, folds: int = DEFAULT_FOLDS, top: int = 3, epochs: int | None = None,
                   refit: bool = False, data_dir: str | None = None, resources: dict[str, Any] | None = None,
                   device: str = "auto", progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Cross-validate the ``top`` configurations of ``run`` on ``folds`` folds for ``epochs``
    (default the search's); returns the record written to ``RUN/cv/cv.json`` (configurations
    ranked by the out-of-fold metric)."""
    if not run.complete:
        raise VisiontuneError(f"{run.folder}: the search is still running or was interrupted; resume it to its end "
                              "before --cv (its ranking is not final)")
    metric, name = run.metric, run.metric.split("/", 1)[1]
    epochs = epochs or run.max_epochs
    candidates = _candidates(run, top)
    rows = complete_rows([{**c.config, record.CV_FOLD: fold} for c in candidates for fold in range(folds)])
    label = f"top{len(candidates)}-folds{folds}-epochs{epochs}"
    fold_folder = retrain(run, rows, epochs, record.CV_DIR, label, f"cross-validation ({folds} folds)", data_dir,
                          resources or {}, progress, cv_folds=folds)
    fold_run = load_search(fold_folder)
    if not fold_run.complete:
        raise VisiontuneError(f"{fold_folder}: the fold search did not finish; run the same command again to resume")
    _fold_members(candidates, rows, folds, fold_run, run.folder)

    splits = load_data(run, data_dir)
    seed = int(run.options.get("split_seed") or 0)
    pooled = pooled_for_cv(splits, folds, seed)
    _out_of_fold(candidates, pooled, device)
    candidates.sort(key=lambda c: c.oof[f"oof/{name}"], reverse=True)
    images = len(pooled.train)
    progress(f"cross-validation: ranked by out-of-fold {name} over all {images} train+validation images: "
             + ", ".join(f"{c.trial.trial_id} {c.oof[f'oof/{name}']:.4f}" for c in candidates))
    summary = {"run": run.name, "folds": folds, "epochs": epochs, "metric": metric, "images": images,
               "fold_sizes": torch.bincount(pooled.folds, minlength=folds).tolist(), "split_seed": seed,
               "fold_search": str(fold_folder.relative_to(run.folder)),
               "selection": f"the top {len(candidates)} configurations by {metric} (one validation split) "
                            f"retrained on {folds} folds of train+validation, each fold model at its best "
                            f"epoch on its own fold; ranked by the out-of-fold {name} over all "
                            f"{images} images; test evaluated once afterwards, for the record",
               "ranking": [_entry(c, metric) for c in candidates], "winner": candidates[0].trial.trial_id}
    cv_file = run.folder / record.CV_DIR / record.CV_FILE
    runs.write_json(cv_file, summary)

    # The ranking is on disk: only now the test split is read, once per configuration.
    for candidate in candidates:
        ensemble = TrainedModel.from_checkpoints(splits.card, [(candidate.config, checkpoint) for checkpoint in candidate.checkpoints],
                                                 device)
        candidate.test = ensemble.evaluate(splits.test, "test").metrics
    if refit:
        _refit(run, candidates[0], folds, label, images, data_dir, resources or {}, splits, device, progress)
    summary["ranking"] = [_entry(c, metric) for c in candidates]
    runs.write_json(cv_file, summary)
    return summary


__all__ = ["cross_validate", "load_data"]
