"""The report's studies: grid rows in space files, the registry, and one quick study end to end."""

from __future__ import annotations

import json

import pytest
from helpers import builtin_card

from visiontune.errors import ConfigError
from visiontune.search_spaces.declarative import DeclarativeSpace
from visiontune.selection.studies import STUDIES, get_study


def test_grid_rows_run_every_row_with_every_combination_in_order():
    space = DeclarativeSpace({"rows": [{"optimizer": "sgd", "lr": 0.1}, {"optimizer": "adam", "lr": 0.001}],
                              "params": {"model": "cnn", "seed": [0, 1]}}, builtin_card("mnist"), "t.yaml")
    assert space.grid_points() == [
        {"optimizer": "sgd", "lr": 0.1, "model": "cnn", "seed": 0},
        {"optimizer": "sgd", "lr": 0.1, "model": "cnn", "seed": 1},
        {"optimizer": "adam", "lr": 0.001, "model": "cnn", "seed": 0},
        {"optimizer": "adam", "lr": 0.001, "model": "cnn", "seed": 1},
    ]
    assert space.grid_size() == 4


@pytest.mark.parametrize("rows, message", [
    ([], "rows: expected a non-empty list"),
    ([{"optimizer": "sgd"}, "adam"], "rows: expected a non-empty list"),
    ([{"lrate": 0.1}], r"rows\[1\]: lrate: unknown or reserved parameter"),
    ([{"epochs": 3}], r"rows\[1\]: epochs: unknown or reserved parameter"),
    ([{"model": "cnn"}], r"rows\[1\]: model: also in params"),
    ([{"lr": -1.0}], r"rows\[1\]: lr"),
    ([{"lr": 0.1}, {"optimizer": "adam"}], r"rows\[2\]: sets optimizer, but rows\[1\] sets lr"),
])
def test_bad_grid_rows_are_one_line_errors(rows, message):
    with pytest.raises(ConfigError, match=message):
        DeclarativeSpace({"rows": rows, "params": {"model": "cnn"}}, builtin_card("mnist"), "t.yaml")


def test_a_space_with_rows_is_refused_by_tpe_before_ray_starts(tmp_path):
    from visiontune.search import SearchOptions, check_options

    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": [{"lr": 0.1}, {"lr": 0.01}], "params": {"model": "cnn"}}))
    with pytest.raises(ConfigError, match="lists rows of settings: run it with --searcher grid"):
        check_options(SearchOptions(task="mnist", space=str(path), searcher="tpe", synthetic=True),
                      builtin_card("mnist"))


def test_every_study_is_a_valid_grid_with_the_reports_settings():
    from visiontune.config import config_from_dict

    for study in STUDIES.values():
        card = builtin_card(study.task)
        space = DeclarativeSpace(study.space(seeds=3), card, study.name)
        points = space.grid_points()
        assert len(points) == 3 * len(study.rows)
        for point in points:
            config_from_dict({**point, "task": study.task, "epochs": 1}, study.name, card)
            assert study.row_of(point) is not None
    cnn = get_study("1.2-cnn").space(1)["params"]
    assert (cnn["blocks"], cnn["width"], cnn["optimizer"], cnn["lr"], cnn["batch_size"]) == (3, 8, "sgd", 0.1, 32)
    assert [row.report for row in get_study("2.2-lr").rows] == ["0.8078", "0.8230", "0.7132", "0.6411"]
    with pytest.raises(ConfigError, match="unknown study '9.9'"):
        get_study("9.9")


def test_the_report_cnn_has_its_21578_weights():
    from visiontune.models import build_model, count_parameters

    params = get_study("1.2-cnn").base
    model = build_model("cnn", "classification", blocks=params["blocks"], width=params["width"])
    assert count_parameters(model) == 21_578


def test_a_quick_study_runs_end_to_end_and_writes_its_table(ray_address, tmp_path):
    from visiontune.selection.reproduce import ReproduceOptions, reproduce

    index = reproduce(ReproduceOptions(studies=["1.4-adam"], quick=True, seeds=2, storage=str(tmp_path / "runs"),
                                       out=str(tmp_path / "tables"), synthetic=True, epochs=2),
                      progress=lambda line: None)
    table = (tmp_path / "tables" / "quick" / "1.4-adam.md").read_text()
    assert index.read_text().count("### 1.4-adam") == 1
    assert "QUICK MODE" in table and "2 setting(s) x 2 seeds, 2 epochs each" in table
    lines = [line for line in table.splitlines() if line.startswith("| SGD") or line.startswith("| Adam")]
    assert len(lines) == 2
    trials = json.loads((tmp_path / "runs" / "study-1.4-adam-quick" / "trials.json").read_text())
    assert len(trials) == 4 and {t["status"] for t in trials} == {"finished"}
    by_row = {}
    for trial in trials:
        by_row.setdefault(trial["config"]["optimizer"], []).append(trial["best_value"])
    chosen = max(by_row, key=lambda key: sum(by_row[key]) / len(by_row[key]))
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        label, report, val, test, picked, epochs = cells[:6]
        assert report.startswith("0.99 (after")
        mean, std = (float(x) for x in val.split(" ± "))
        optimizer = "sgd" if label.startswith("SGD") else "adam"
        assert mean == pytest.approx(sum(by_row[optimizer]) / 2, abs=1e-4) and std >= 0
        assert 0.0 <= float(test.split(" ± ")[0]) <= 1.0
        assert (picked == "yes") == (optimizer == chosen)
        assert int(epochs) == 4  # 2 seeds x 2 epochs
    # A second call finds the study done and only tabulates it again.
    reproduce(ReproduceOptions(studies=["1.4-adam"], quick=True, seeds=2, storage=str(tmp_path / "runs"),
                               out=str(tmp_path / "tables"), synthetic=True, epochs=2), progress=lambda line: None)
    assert (tmp_path / "tables" / "quick" / "1.4-adam.md").read_text() == table
