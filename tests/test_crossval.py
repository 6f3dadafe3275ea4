"""``analyze --cv``: folds of train+validation as trials of the search service, out-of-fold
ranking before any look at test, fold ensembles that predict and export."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import write_shapes
from visiontune import record
from visiontune import selection
from visiontune.analysis import analyze_run
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.data.folds import assign_folds, fold_splits, pooled_for_cv, refit_splits
from visiontune.errors import ConfigError
from visiontune.runfolder import load_search
from visiontune.search import SearchOptions, run_search
from visiontune.selection import crossval
from visiontune.trained import TrainedModel, load_model


# ------------------------------------------------------------------------------------ folds
def test_folds_are_even_seeded_and_stratified_by_class():
    labels = torch.tensor([0] * 50 + [1] * 31 + [2] * 22)  # unbalanced classes
    folds = assign_folds(len(labels), 5, seed=3, labels=labels)
    sizes = torch.bincount(folds, minlength=5)
    assert int(sizes.sum()) == 103 and int(sizes.max() - sizes.min()) <= 1
    for value in range(3):  # every fold holds each class's share, within one image
        per_fold = torch.bincount(folds[labels == value], minlength=5)
        assert int(per_fold.max() - per_fold.min()) <= 1, (value, per_fold)
    assert torch.equal(folds, assign_folds(len(labels), 5, seed=3, labels=labels))
    assert not torch.equal(folds, assign_folds(len(labels), 5, seed=4, labels=labels))
    plain = assign_folds(17, 4, seed=0)
    assert sorted(torch.bincount(plain).tolist()) == [4, 4, 4, 5]
    with pytest.raises(ConfigError, match="--cv 6: cross-validation needs 2 to 5 folds"):
        assign_folds(5, 6, seed=0)


def test_fold_splits_are_disjoint_cover_train_and_validation_once_and_hold_no_test(digits_splits):
    pooled = pooled_for_cv(digits_splits, 4, seed=0)
    total = len(digits_splits.train) + len(digits_splits.val)
    assert len(pooled.train) == total and len(pooled.val) == 0 and len(pooled.test) == 0
    identity = {bytes(image.numpy()): index for index, image in enumerate(pooled.train.images)}
    assert len(identity) == total  # the synthetic digits are all distinct: an image names itself
    seen = []
    for fold in range(4):
        split = fold_splits(pooled, fold)
        held = {identity[bytes(image.numpy())] for image in split.val.images}
        trained = {identity[bytes(image.numpy())] for image in split.train.images}
        assert not held & trained and len(held | trained) == total and len(split.test) == 0
        seen.extend(held)
    assert sorted(seen) == list(range(total))  # every image held out exactly once
    refit = refit_splits(pooled)
    assert len(refit.train) == total and len(refit.test) == 0


# ------------------------------------------------------------------------ cross-validation
@pytest.fixture(scope="module")
def digits_search(ray_address, tmp_path_factory) -> Path:
    """A finished 4-trial search on synthetic digits (fp32, 2 epochs)."""
    storage = tmp_path_factory.mktemp("cv-runs")
    run_search(SearchOptions(task="mnist", space="mnist-cnn", synthetic=True, trials=4, max_epochs=2,
                             fixed={"precision": "fp32"}, storage=str(storage), name="digits", report=False),
               progress=lambda line: None)
    return storage / "digits"


@pytest.fixture(scope="module")
def digits_cv(digits_search, tmp_path_factory, request) -> tuple[Path, Path, list[str], list[str]]:
    """The search cross-validated: its top 2 on 3 folds with a refit, watching when test is read.
    Returns (run folder, analysis folder, progress lines, events)."""
    run = tmp_path_factory.mktemp("cv-copy") / "digits"
    shutil.copytree(digits_search, run)
    events: list[str] = []
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)
    load_data, add_to = crossval.load_data, TrainedModel.add_to
    test_sets = []

    def watched_data(*args, **kwargs):
        splits = load_data(*args, **kwargs)
        test_sets.append(splits.test)
        return splits

    def watched_add_to(model, evaluation, data):
        if any(data is test for test in test_sets):
            ranking = json.loads((run / "cv" / "cv.json").read_text())["ranking"]
            events.append("test read, ranking on disk: " + ("without" if all("ensemble_test" not in entry
                                                                           for entry in ranking) else "with")
                          + " test figures")
        else:
            events.append("fold images")
        return add_to(model, evaluation, data)

    monkeypatch.setattr(crossval, "load_data", watched_data)
    monkeypatch.setattr(TrainedModel, "add_to", watched_add_to)
    lines: list[str] = []
    out = run.parent / "analysis"
    crossval.cross_validate(load_search(run), folds=3, top=2, refit=True, progress=lines.append)
    analyze_run(run, out=out, top=2, progress=lines.append)
    return run, out, lines, events


def test_cv_ranks_by_out_of_fold_accuracy_over_every_image_before_reading_test(digits_cv, digits_splits):
    run, out, lines, events = digits_cv
    table = pd.read_csv(out / "cv.csv")
    summary = json.loads((run / "cv" / "cv.json").read_text())
    assert list(table["rank"]) == [1, 2] and list(table["oof/acc"]) == sorted(table["oof/acc"], reverse=True)
    assert summary["winner"] == table.loc[0, "trial"] == summary["ranking"][0]["trial_id"]
    pool = len(digits_splits.train) + len(digits_splits.val)
    assert summary["images"] == pool == sum(summary["fold_sizes"]) and len(summary["fold_sizes"]) == 3
    # every fold-images prediction came before the test split was first read, and the ranking
    # was already on disk, without any test figure, when it was
    first_test = next(i for i, event in enumerate(events) if event.startswith("test read"))
    assert set(events[:first_test]) == {"fold images"} and first_test == 2 * 3
    assert events[first_test] == "test read, ranking on disk: without test figures"
    fold_search = run / summary["fold_search"]
    recorded = json.loads((fold_search / "search.json").read_text())
    assert recorded["data"]["sizes"] == {"train": pool, "val": 0, "test": 0}  # the fold trials had no test images
    assert recorded["options"]["cv_folds"] == 3 and len(load_search(fold_search).trials) == 2 * 3
    for entry in summary["ranking"]:
        values = [member["val/acc"] for member in entry["members"]]
        assert [member["fold"] for member in entry["members"]] == [0, 1, 2]
        assert entry["fold_mean"] == pytest.approx(np.mean(values))
        row = table.set_index("trial").loc[entry["trial_id"]]
        assert row["optimism: cv"] == pytest.approx(row["oof/acc"] - row["test/acc (fold ensemble)"])
        assert row["val/acc (one split)"] == pytest.approx(entry["val_one_split"])
    assert "Cross-validation: the top 2 on 3 folds" in (out / "report.html").read_text()
    assert (out / "cv.png").is_file() and (out / "cv.md").is_file()


def test_each_fold_model_validated_on_its_own_fold_at_its_best_epoch(digits_cv):
    """The out-of-fold predictions of fold k, from the checkpoint cv.json names, give the
    validation accuracy the fold trial reported as its best: same images, same model (the model
    layer folds batchnorm into the convolutions; the trial validated it unfolded)."""
    run, _, _, _ = digits_cv
    summary = json.loads((run / "cv" / "cv.json").read_text())
    splits = load_splits("mnist", synthetic=True)
    pooled = pooled_for_cv(splits, 3, seed=0)
    fold_run = load_search(run / summary["fold_search"])
    for entry in summary["ranking"]:
        for member in entry["members"]:
            trial = fold_run.trial(member["trial_id"])
            assert member["best_epoch"] == trial.best("val/acc")[1]
            model = TrainedModel.from_checkpoints(pooled.card, [(entry["config"], fold_run.checkpoint(trial))], "cpu")
            held = fold_splits(pooled, member["fold"]).val
            assert model.evaluate(held, "val").metrics["val/acc"] == pytest.approx(member["val/acc"], abs=1e-6)


def test_the_cv_ensemble_predicts_the_mean_of_its_fold_models_and_exports_with_its_card(digits_cv, tmp_path):
    from visiontune.runfolder import model_members

    run, out, _, _ = digits_cv
    table = pd.read_csv(out / "cv.csv")
    splits = load_splits("mnist", synthetic=True)
    ensemble = load_model(run, device="cpu", ensemble="cv")
    assert ensemble.members == 3
    batch = splits.test.images.numpy()
    together = ensemble.probabilities(batch)
    held = model_members(run, "cv")
    alone = [TrainedModel.from_checkpoints(held.card, [(member.config, member.checkpoint)], "cpu").probabilities(batch)
             for member in held.members]
    assert torch.allclose(together, torch.stack(alone).mean(0), atol=1e-6)
    accuracy = float((together.argmax(1) == splits.test.targets).float().mean())
    assert accuracy == pytest.approx(table.loc[0, "test/acc (fold ensemble)"], abs=1e-6)
    refit_column = next(c for c in table if c.startswith("test/acc (refit"))
    assert 0 <= table.loc[0, refit_column] <= 1 and np.isnan(table.loc[1, refit_column])
    summary = json.loads((run / "cv" / "cv.json").read_text())
    refit = summary["ranking"][0]["refit"]
    assert refit["epochs"] == max(1, round(float(np.median(refit["fold_best_epochs"]))))
    assert main(["export", str(run), "--format", "torchscript", "--ensemble", "cv", "--out", str(tmp_path / "x")]) == 0
    card = json.loads((tmp_path / "x" / "model.json").read_text())
    assert card["members"] == 3 and card["figures"]["folds"] == 3
    assert "out-of-fold acc" in card["figures"]["selection"]
    assert card["figures"]["test"]["test/acc"] == pytest.approx(accuracy, abs=1e-6)


def test_cv_again_reads_the_finished_fold_trainings(digits_cv, tmp_path):
    run, out, _, _ = digits_cv
    lines: list[str] = []
    crossval.cross_validate(load_search(run), folds=3, top=2, refit=True, progress=lines.append)
    analyze_run(run, out=tmp_path / "again", top=2, progress=lines.append)
    assert sum("already done" in line for line in lines) == 2  # the fold search and the refit
    pd.testing.assert_frame_equal(pd.read_csv(out / "cv.csv"), pd.read_csv(tmp_path / "again" / "cv.csv"))


def test_cv_option_errors_are_one_line(digits_search, capsys):
    for argv, message in ((["--refit"], "--refit, --quick and --cv-epochs apply to --cv"),
                          (["--cv", "1"], "--cv needs at least 2 folds"),
                          (["--cv", "3", "--metric", "val/macro_f1"], "--cv ranks by the search's own metric")):
        assert main(["analyze", str(digits_search), "--out", str(digits_search.parent / "x"), *argv]) == 1
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert main(["predict", str(digits_search), str(digits_search), "--ensemble", "cv", "--out",
                 str(digits_search.parent / "p")]) == 1
    assert "no cross-validation yet" in capsys.readouterr().err


def _epochs_reported(trial_dir: Path) -> list[int]:
    lines = (trial_dir / record.RESULT_FILE).read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


def test_an_interrupted_cross_validation_resumes_where_it_stopped(ray_address, tmp_path):
    """A segmentation search's cross-validation, its driver killed mid-way (a subprocess on the
    session's Ray), then run again: no fold epoch lost or repeated, per-class Dice out of fold."""
    data = write_shapes(tmp_path / "shapes", count=24)
    storage = tmp_path / "runs"
    run_search(SearchOptions(task=str(data), trials=2, max_epochs=3, fixed={"precision": "fp32"}, storage=str(storage),
                             name="shapes", report=False), progress=lambda line: None)
    run = storage / "shapes"
    command = [sys.executable, "-m", "visiontune", "analyze", str(run), "--cv", "3", "--top", "2",
               "--address", ray_address, "--concurrency", "1", "--out", str(tmp_path / "first")]
    log = (tmp_path / "driver.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    folds = run / "cv" / "top2-folds3-epochs3"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # one fold trial done and the next half-way (or half of them done)
            counts = [len(_epochs_reported(d)) for d in folds.glob("trial_*") if (d / record.RESULT_FILE).is_file()]
            if 3 in counts and any(0 < c < 3 for c in counts) or counts.count(3) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the cross-validation never reached the point to kill it: "
                        + (tmp_path / "driver.log").read_text())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finished = {d.name: (d / record.RESULT_FILE).read_text() for d in folds.glob("trial_*")
                if (d / record.RESULT_FILE).is_file() and len(_epochs_reported(d)) == 3}
    assert 1 <= len(finished) < 6, finished  # killed mid-way
    lines: list[str] = []
    crossval.cross_validate(load_search(run), folds=3, top=2, progress=lines.append)
    analyze_run(run, out=tmp_path / "second", top=2, progress=lines.append)
    assert any("(resuming)" in line for line in lines), lines
    trials = list(folds.glob("trial_*"))
    reported = {d.name: _epochs_reported(d) for d in trials}
    # Nothing lost, nothing repeated: every fold trial reported each of its three epochs once.
    assert len(trials) == 6
    for name, epochs in reported.items():
        assert epochs == [1, 2, 3], (name, epochs)
    for name, text in finished.items():  # finished before the kill: kept, not restarted from epoch 1
        assert (folds / name / record.RESULT_FILE).read_text().startswith(text)
    table = pd.read_csv(tmp_path / "second" / "cv.csv")
    assert len(table) == 2 and list(table["oof/dice"]) == sorted(table["oof/dice"], reverse=True)
    ranking = json.loads((run / "cv" / "cv.json").read_text())["ranking"]
    assert {"oof/dice/square", "oof/dice/disc", "oof/dice_pooled"} <= set(ranking[0])
    assert "test/dice/square" in ranking[0]["ensemble_test"]


def test_search_cv_chains_the_search_and_its_cross_validation(ray_address, tmp_path, capsys):
    storage = tmp_path / "runs"
    assert main(["search", "mnist", "--synthetic", "--space", "mnist-cnn", "--trials", "2", "--max-epochs", "1",
                 "--top-k", "2", "--cv", "2", "--set", "precision=fp32", "--storage", str(storage),
                 "--name", "chained", "--no-report"]) == 0
    assert "ranked by the out-of-fold metric" in capsys.readouterr().out
    table = pd.read_csv(storage / "chained" / "analysis" / "cv.csv")
    assert len(table) == 2 and (storage / "chained" / "cv" / "top2-folds2-epochs1" / "trials.csv").is_file()


def test_cv_without_a_number_means_five_folds(digits_search, monkeypatch):
    import visiontune.analysis as analysis

    asked = {}
    monkeypatch.setattr(crossval, "cross_validate", lambda run, **kwargs: asked.update(kwargs))
    monkeypatch.setattr(analysis, "analyze_run", lambda folder, **kwargs: "report.html")
    assert main(["analyze", str(digits_search), "--cv"]) == 0
    assert asked["folds"] == selection.DEFAULT_FOLDS == 5 and asked["top"] == 3 and asked["epochs"] is None
    assert main(["analyze", str(digits_search), "--cv", "4", "--quick"]) == 0
    assert (asked["folds"], asked["top"], asked["epochs"]) == (4, selection.QUICK_TOP, 1)  # 2 epochs // 3, at least 1
