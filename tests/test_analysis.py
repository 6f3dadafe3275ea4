"""``visiontune analyze`` on run folders made by tiny searches on synthetic data in this session."""

from __future__ import annotations

import base64
import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visiontune.analysis import analyze_run, compare_runs
from visiontune.runfolder import load_search
from visiontune.cli import main
from visiontune.search import SearchOptions, run_search

FIGURE_SIZES = {  # pixels at 100 dpi, from each figure's figsize
    "learning_curves.png": (1200, 450), "anytime.png": (1200, 450), "parallel_coordinates.png": (1200, 500),
    "importance.png": (800, 450), "confusion_matrix.png": (700, 600), "misclassified.png": (1000, 500),
    "best_worst.png": (900, 1500), "pareto.png": (800, 500),
}


@pytest.fixture(scope="session")
def mnist_run(ray_address, tmp_path_factory) -> Path:
    """A finished 6-trial, two-objective search on synthetic digits (ASHA, 3 epochs at most)."""
    storage = tmp_path_factory.mktemp("analysis-runs")
    run_search(SearchOptions(task="mnist", space="mnist-cnn", synthetic=True, trials=6, max_epochs=3,
                             objectives="val/acc,params", storage=str(storage), name="digits", report=False),
               progress=lambda line: None)
    return storage / "digits"


@pytest.fixture(scope="session")
def warwick_run(ray_address, tmp_path_factory) -> Path:
    """A finished 3-trial search on synthetic glands."""
    storage = tmp_path_factory.mktemp("analysis-runs")
    run_search(SearchOptions(task="warwick", space="warwick-unet", synthetic=True, trials=3, max_epochs=2,
                             storage=str(storage), name="glands", report=False), progress=lambda line: None)
    return storage / "glands"


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("analysis"))
    return target


def per_trial_best(run: Path, metric: str) -> dict[str, float]:
    best = {}
    for folder in run.glob("trial_*"):
        values = [json.loads(line).get(metric) for line in (folder / "result.json").read_text().splitlines() if line]
        values = [v for v in values if v is not None]
        if values:
            best[folder.name.removeprefix("trial_")] = max(values)
    return best


def assert_real_picture(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (path.name, image.size)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 5, f"{path.name} looks blank"
    assert (pixels < 128).mean() > 0.002, f"{path.name} has almost nothing drawn"


def test_ranked_table_orders_trials_by_their_best_validation_metric(mnist_run, tmp_path):
    out = tmp_path / "analysis"
    analyze_run(mnist_run, out=out, progress=lambda line: None)
    table = pd.read_csv(out / "trials.csv")
    assert list(table["rank"]) == list(range(1, len(table) + 1)) and len(table) == 6
    best = per_trial_best(mnist_run, "val/acc")
    assert list(table["best_val/acc"]) == sorted(table["best_val/acc"], reverse=True)
    assert set(table["trial_id"]) == set(best)
    assert dict(zip(table["trial_id"], table["best_val/acc"])) == pytest.approx(best)
    # the top-k rows carry their test metrics, the others none
    evaluated = json.loads((mnist_run / "test_results.json").read_text())["trials"]
    assert set(table.loc[table["test/acc"].notna(), "trial_id"]) == set(evaluated)
    assert (out / "trials.md").read_text().startswith("| rank | trial_id | status |")
    assert "<table" in (out / "trials.html").read_text()


def test_columns_are_exactly_the_varying_parameters(mnist_run, tmp_path):
    out = tmp_path / "analysis"
    analyze_run(mnist_run, out=out, progress=lambda line: None)
    table = pd.read_csv(out / "trials.csv")
    configs = [json.loads((folder / "params.json").read_text()) for folder in mnist_run.glob("trial_*")]
    keys = {k for c in configs for k in c}
    varying = {k for k in keys if len({repr(c.get(k)) for c in configs}) > 1}
    first, last = table.columns.get_loc("params") + 1, table.columns.get_loc("nodes")
    parameter_columns = list(table.columns[first:last])
    assert set(parameter_columns) == varying
    assert {"model", "optimizer", "task", "epochs"}.isdisjoint(parameter_columns)  # fixed in mnist-cnn


@pytest.mark.parametrize("which, expected", [
    ("mnist", ["learning_curves.png", "anytime.png", "parallel_coordinates.png", "importance.png",
               "confusion_matrix.png", "misclassified.png", "pareto.png"]),
    ("warwick", ["learning_curves.png", "anytime.png", "parallel_coordinates.png", "importance.png",
                 "best_worst.png"]),
])
def test_every_figure_is_written_and_embedded_in_the_report(request, tmp_path, which, expected):
    run = request.getfixturevalue(f"{which}_run")
    out = tmp_path / "analysis"
    report = analyze_run(run, out=out, progress=lambda line: None)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(expected)
    page = report.read_text()
    for name in expected:
        assert_real_picture(out / name, FIGURE_SIZES[name])
        assert base64.b64encode((out / name).read_bytes()).decode() in page  # embedded, not linked
    assert page.count("<figure>") == len(expected) == page.count("<figcaption>")
    assert "visiontune train" in page and "Reproduce the best trial" in page
    assert "src=\"data:image/png;base64," in page and 'src="http' not in page
    best_config = json.loads((out / "best_config.json").read_text())
    assert best_config["task"] == which


def test_truncated_metrics_file_is_a_warning_for_that_trial(mnist_run, tmp_path, capsys):
    run = copy_run(mnist_run, tmp_path)
    victim = max(sorted(run.glob("trial_*")), key=lambda f: len((f / "result.json").read_text().splitlines()))
    text = (victim / "result.json").read_text()
    assert len(text.splitlines()) >= 2
    (victim / "result.json").write_text(text[: len(text.splitlines()[0]) + 40])  # line 2 cut short
    code = main(["analyze", str(run), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0
    trial_id = victim.name.removeprefix("trial_")
    assert f"warning: trial {trial_id}: " in captured.out and "line 2 is truncated" in captured.out
    assert "Warnings" in (tmp_path / "out" / "report.html").read_text()
    assert len(load_search(run).trials) == 6  # the damaged trial is still listed, with its first epoch


def test_partial_run_in_progress_and_moved_folder(mnist_run, tmp_path):
    run = copy_run(mnist_run, tmp_path, "moved-and-partial")
    for name in ("trials.json", "trials.csv", "test_results.json", "pareto.json"):
        (run / name).unlink()
    shutil.rmtree(run / "predictions")
    record = load_search(run)
    assert not record.complete and len(record.trials) == 6
    assert {t.status for t in record.trials} <= {"finished", "stopped", "running", "pending"}
    report = analyze_run(run, progress=lambda line: None)
    assert report == run / "analysis" / "report.html"
    assert not (run / "analysis" / "confusion_matrix.png").exists()  # no test predictions yet


def test_compare_runs_puts_anytime_curves_and_best_rows_together(mnist_run, tmp_path):
    other = copy_run(mnist_run, tmp_path, "second")
    report = compare_runs([mnist_run, other], out=tmp_path / "cmp", progress=lambda line: None)
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["run"]) == ["digits", "digits"] and len(table) == 2
    best = max(per_trial_best(mnist_run, "val/acc").values())
    assert table["best_val/acc"].tolist() == pytest.approx([best, best])
    assert_real_picture(tmp_path / "cmp" / "anytime.png", FIGURE_SIZES["anytime.png"])
    assert report.is_file()


def test_analyze_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty")]) == 1
    assert "not a visiontune search folder (no search.json)" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nowhere")]) == 1
    assert "no such run folder" in capsys.readouterr().err


def test_unknown_metric_lists_the_available_ones(mnist_run, capsys):
    assert main(["analyze", str(mnist_run), "--metric", "val/f1", "--out", str(mnist_run.parent / "x")]) == 1
    assert "--metric 'val/f1' is not in" in capsys.readouterr().err


def test_the_ranked_table_has_one_schema_live_and_from_disk(mnist_run, tmp_path):
    """RUN/trials.csv (written from Ray's ResultGrid) and RUN/analysis/trials.csv (from the folder)."""
    analyze_run(mnist_run, out=tmp_path / "analysis", progress=lambda line: None)
    live, disk = pd.read_csv(mnist_run / "trials.csv"), pd.read_csv(tmp_path / "analysis" / "trials.csv")
    pd.testing.assert_frame_equal(live, disk)
    assert list(live.columns[:7]) == ["rank", "trial_id", "status", "best_val/acc", "best_epoch", "epochs", "time_s"]


def test_reseed_runs_its_retrains_as_trials_of_the_search_service(mnist_run, digits_splits, tmp_path):
    """The retrains are a grid search of their own in RUN/reseed/; the configurations are ranked by
    their mean, and each figure is what an in-process retrain through the one epoch loop gives for
    the same seed (the table of before)."""
    from visiontune import record
    from visiontune.config import config_from_dict
    from visiontune.engine import Trainer
    from visiontune.fit import BestSoFar, fit_epochs
    from visiontune.trained import TrainedModel

    from visiontune.selection.reseed import reseed_top

    run = copy_run(mnist_run, tmp_path)
    searched = load_search(run)
    top2 = [trial for trial, _, _ in searched.ranked()][:2]
    reseed_top(searched, top2, 1, progress=lambda line: None)
    analyze_run(run, out=tmp_path / "first", top=2, progress=lambda line: None)  # renders reseed/reseed.json
    robust = pd.read_csv(tmp_path / "first" / "reseed.csv")
    assert len(robust) == 2 and list(robust["rank"]) == [1, 2]
    assert list(robust["val/acc mean"]) == sorted(robust["val/acc mean"], reverse=True)
    for index in robust.index:
        values = [float(v) for v in robust.loc[index, "test/acc values"].split(",")]
        assert robust.loc[index, "runs"] == len(values) == 2  # the search's own run and one further seed
        assert robust.loc[index, "test/acc mean"] == pytest.approx(statistics.fmean(values))
        assert robust.loc[index, "test/acc std"] == pytest.approx(statistics.stdev(values))
    retrains = run / "reseed" / "top2-seeds1"
    recorded = json.loads((retrains / "search.json").read_text())["options"]
    assert (recorded["searcher"], recorded["scheduler"], recorded["cpus_per_trial"]) == ("grid", "none", 1.0)
    assert len(json.loads((retrains / "trials.json").read_text())) == 2

    best = record.rank(load_search(run).trials, "val/acc")[0][0]
    config = config_from_dict({**best.config, "seed": best.config.get("seed", 0) + 1, "precision": best.precision()})
    trainer = Trainer(config, digits_splits, threads=1)
    best_so_far, weights = BestSoFar(), {}
    fit_epochs(trainer, load_search(run).max_epochs, best_so_far,
               lambda end: weights.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
               if end.improved else None)
    model = TrainedModel.from_weights(digits_splits.card, [(config, weights, trainer.use_bf16)])
    test = model.evaluate(digits_splits.test).metrics["test/acc"]
    searched_val, searched_test = best.best("val/acc")[0], load_search(run).test[best.trial_id]["test/acc"]
    row = robust.set_index("trial").loc[best.trial_id]
    assert row["test/acc values"] == f"{searched_test:.4f}, {test:.4f}"
    assert row["val/acc mean"] == pytest.approx((searched_val + best_so_far.value) / 2)

    lines: list[str] = []  # asked again: the finished retrains are read, not run again
    again = reseed_top(searched, top2, 1, progress=lines.append)
    pd.testing.assert_frame_equal(robust, again, check_dtype=False)
    assert any("already done" in line for line in lines)
    assert "Robust ranking: the top 2 with 1 further seeds" in (tmp_path / "first" / "report.html").read_text()


def test_trial_options_without_reseed_are_a_one_line_error(mnist_run, capsys):
    assert main(["analyze", str(mnist_run), "--gpus-per-trial", "0.5", "--out", str(mnist_run.parent / "j")]) == 1
    assert "apply to --reseed" in capsys.readouterr().err


def test_the_ranked_tables_header_does_not_depend_on_the_order_trials_are_listed_in():
    """A conditional parameter (momentum: SGD trials only) first set by a later trial: Ray's
    ResultGrid and the folder on disk list the trials in different orders, and both tables
    (RUN/trials.csv and RUN/analysis/trials.csv) must have the same columns in the same order."""
    from visiontune import record

    def trial(trial_id: str, config: dict, value: float) -> record.TrialRecord:
        epochs = pd.DataFrame({"epoch": [1], "val/acc": [value]})
        return record.TrialRecord(trial_id, f"trial_{trial_id}", {"model": "cnn", **config}, epochs, "finished")

    trials = [trial("a_00000", {"optimizer": "adam", "lr": 0.001}, 0.9),
              trial("a_00001", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}, 0.8),
              trial("a_00002", {"optimizer": "adam", "lr": 0.003, "dropout": 0.1}, 0.7)]
    headers = {tuple(record.ranked_table(order, "val/acc").columns)
               for order in (trials, trials[::-1], [trials[1], trials[2], trials[0]])}
    assert len(headers) == 1
    (header,) = headers
    assert [c for c in header if c in ("optimizer", "lr", "momentum", "dropout")] == ["optimizer", "lr", "momentum",
                                                                                      "dropout"]
