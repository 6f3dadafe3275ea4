"""The search service on a real (local, 2-CPU, loopback) Ray instance and tiny synthetic data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

import faulty_trainables
import measured_trainables
from helpers import builtin_card
from visiontune.cli import main
from visiontune.search import REPORT_BEST, SearchOptions, run_search


def search(tmp_path: Path, trial_function=None, **overrides) -> tuple[dict, Path, list[str]]:
    values = dict(task="mnist", space="mnist-cnn", synthetic=True, trials=4, max_epochs=3,
                  storage=str(tmp_path / "runs"), name="s", report=False)
    values.update(overrides)
    lines: list[str] = []
    summary = run_search(SearchOptions(**values), progress=lines.append, trial_function=trial_function)
    return summary, tmp_path / "runs" / values["name"], lines


def epochs_reported(trial_dir: Path) -> list[int]:
    """The epochs of every report a trial made, from Ray's per-trial result.json (one JSON per line)."""
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


@pytest.fixture(scope="module")
def four_trials(ray_address, tmp_path_factory) -> tuple[dict, Path, list[str], float]:
    """A finished 4-trial search on synthetic digits: (summary, run folder, progress lines, seconds)."""
    started = time.time()
    summary, run, lines = search(tmp_path_factory.mktemp("four"))
    return summary, run, lines, time.time() - started


def test_four_trial_search_writes_a_complete_ranked_run_folder(four_trials):
    summary, run, lines, seconds = four_trials
    assert seconds < 60
    assert summary["trials"] == 4
    table = pd.read_csv(run / "trials.csv")
    assert len(table) == 4 and list(table["rank"]) == [1, 2, 3, 4]
    assert set(table["status"]) <= {"finished", "stopped"}
    values = list(table["best_val/acc"])
    assert values == sorted(values, reverse=True)
    for row in table.itertuples():
        assert not row.path.startswith("/")  # relative: a moved folder still reads
        progress = pd.read_csv(run / row.path / "progress.csv")
        assert row.best_epoch == int(progress.loc[progress["val/acc"].idxmax(), "epoch"])
        assert row.epochs == len(progress) == progress["epoch"].max()
        assert abs(progress["val/acc"].max() - values[row.rank - 1]) < 1e-9
        checkpoints = [p for p in (run / row.path).iterdir() if p.name.startswith("checkpoint_")]
        if row.rank <= 3:
            assert 1 <= len(checkpoints) <= 2  # the best and the latest, never more
        else:
            assert checkpoints == []  # ended, and three ended trials rank before it: deleted
    test = json.loads((run / "test_results.json").read_text())
    assert test["metric"] == "val/acc" and test["split"]["sizes"] == {"train": 500, "val": 100, "test": 200}
    assert [t["rank"] for t in test["trials"].values()] == [1, 2, 3]
    assert list(test["trials"]) == list(table["trial_id"][:3])
    assert all(0 <= t["test/acc"] <= 1 for t in test["trials"].values())
    assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(f"{t}.npz" for t in test["trials"])
    record = json.loads((run / "search.json").read_text())
    assert record["options"]["trials"] == 4 and record["options"]["seed"] == 0
    assert record["command"] and record["versions"]["ray"] and record["data"]["split_seed"] == 0
    assert sorted(record["disk"]["trials_with_checkpoints"]) == sorted(table["trial_id"][:3])
    assert any(line.startswith("run folder:") for line in lines)


def test_moved_run_folder_still_reads(four_trials, tmp_path):
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(four_trials[1], moved)
    for path in pd.read_csv(moved / "trials.csv")["path"]:
        assert not Path(path).is_absolute() and (moved / path / "progress.csv").is_file()


def test_same_seed_proposes_the_same_configurations(ray_address):
    """The search's own searcher, built twice from the same options, proposes the same trials."""
    from visiontune.search import check_options
    from visiontune.search.tuner import make_searcher

    def proposals(seed: int) -> list[dict]:
        options = SearchOptions(task="mnist", space="mnist", trials=6, seed=seed, name=f"seed{seed}")
        plan = check_options(options, builtin_card("mnist"))
        searcher = make_searcher(options, plan)
        return [searcher.suggest(f"t{index}") for index in range(6)]

    first = proposals(0)
    assert first == proposals(0) and len({json.dumps(c, sort_keys=True) for c in first}) == 6
    assert first != proposals(1)


def test_diverging_trial_is_recorded_and_the_search_goes_on(ray_address, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model: cnn\n  optimizer: sgd\n  lr: [1000000.0, 0.01]\n")
    summary, run, _ = search(tmp_path, space=str(space), searcher="grid", trials=None, max_epochs=2)
    table = pd.read_csv(run / "trials.csv").set_index("lr")
    assert table.loc[1e6, "status"] == "diverged" and table.loc[0.01, "status"] == "finished"
    assert table.loc[0.01, "rank"] == 1
    diverged = run / table.loc[1e6, "path"]
    last = json.loads((diverged / "result.json").read_text().splitlines()[-1])
    assert last["diverged"] is True and last["epoch"] == 1
    assert summary["status"] == {"diverged": 1, "finished": 1}


def test_failing_trial_is_retried_from_checkpoint_then_recorded_failed(ray_address, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(faulty_trainables)
    faulty_trainables.MARKER_DIR = str(tmp_path / "markers")
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  model: cnn\n  lr: [{faulty_trainables.FLAKY_LR}, {faulty_trainables.BROKEN_LR}, 0.005]\n")
    summary, run, lines = search(tmp_path, space=str(space), searcher="grid", trials=None, max_epochs=3,
                                 scheduler="none", max_failures=2, top_k=1,
                                 trial_function=faulty_trainables.flaky_trainable)
    table = pd.read_csv(run / "trials.csv").set_index("lr")
    assert table.loc[faulty_trainables.FLAKY_LR, "status"] == "finished"
    assert table.loc[faulty_trainables.BROKEN_LR, "status"] == "failed"
    assert table.loc[0.005, "status"] == "finished"
    # the flaky trial ran epoch 1, failed, and its retry resumed from the epoch-1 checkpoint
    markers = {p.name for p in (tmp_path / "markers").iterdir()}
    assert {f"{faulty_trainables.FLAKY_LR}-0-resumed-False", f"{faulty_trainables.FLAKY_LR}-1-resumed-True"} <= markers
    assert epochs_reported(run / table.loc[faulty_trainables.FLAKY_LR, "path"]) == [1, 2, 3]
    # the broken one was tried 1 + max_failures times
    assert len([m for m in markers if m.startswith(f"{faulty_trainables.BROKEN_LR}-") and "resumed" not in m]) == 3
    assert any("failed after its retries" in line for line in lines)


def test_new_best_hook_reports_on_every_epoch_and_a_stopper_ends_the_search_early(ray_address, tmp_path):
    """What the search-efficiency benchmark builds on: ``on_new_best`` and ``run_search(stopper=...)``."""
    import ray
    from ray import tune

    class StopAtEpochTwo(tune.Stopper):
        def __init__(self):
            self.seen_epoch_two = False

        def __call__(self, trial_id, result):
            self.seen_epoch_two = self.seen_epoch_two or result.get("epoch", 0) >= 2
            return False

        def stop_all(self):
            return self.seen_epoch_two

    ray.cloudpickle.register_pickle_by_value(measured_trainables)
    stopper = StopAtEpochTwo()
    options = SearchOptions(task="mnist", space="mnist-cnn", synthetic=True, trials=8, max_epochs=5, scheduler="none",
                            storage=str(tmp_path / "runs"), name="stopped", report=False)
    summary = run_search(options, progress=lambda line: None, trial_function=measured_trainables.monitored_trainable,
                         stopper=stopper)
    run = tmp_path / "runs" / "stopped"
    rows = [json.loads(line) for result in run.glob("trial_*/result.json") for line in result.read_text().splitlines()
            if line.strip()]
    # the hook's value is carried on every report: the epoch of the model that is best so far
    assert rows and all(row[measured_trainables.MONITOR] == row["best_epoch"] for row in rows)
    # ended once a trial reached epoch 2: far fewer than 8 x 5 epochs, and no "interrupted" error
    assert stopper.stop_all() and len(rows) < 8 * 5 and max(row["epoch"] for row in rows) < 5
    assert summary["top"] and (run / "trials.csv").is_file()  # ranked and tested as usual


def test_optuna_storage_holds_every_trial(ray_address, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    summary, run, _ = search(tmp_path, trials=4, max_epochs=3, optuna_storage=url, name="opt")
    study = optuna.load_study(study_name="opt", storage=url)
    assert len(study.trials) == 4
    table = pd.read_csv(run / "trials.csv")
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    told = sorted(t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    finished = sorted(table.loc[table["status"] == "finished", "best_val/acc"])
    assert told == pytest.approx(finished)
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == (table["status"] == "stopped").sum()


def test_warm_start_report_runs_the_reports_best_first(ray_address, tmp_path):
    _, run, _ = search(tmp_path, space="mnist", trials=2, max_epochs=1, warm_start="report", name="warm")
    configs = [t["config"] for t in json.loads((run / "trials.json").read_text())]
    expected = {**REPORT_BEST["mnist"], "task": "mnist", "epochs": 1}
    assert expected in configs


def test_two_objective_search_records_the_pareto_front(ray_address, tmp_path):
    summary, run, _ = search(tmp_path, trials=4, max_epochs=1, objectives="val/acc,params", name="pareto")
    front = json.loads((run / "pareto.json").read_text())
    trials = json.loads((run / "trials.json").read_text())
    assert front and [f["trial_id"] for f in front] == summary["pareto"]
    for point in front:  # nothing is better on both counts
        assert not any(t["best_value"] > point["val/acc"] and t["params"] < point["params"] for t in trials)


def test_time_budget_stops_new_trials_but_still_evaluates_on_test(ray_address, tmp_path):
    summary, run, _ = search(tmp_path, task="warwick", space="warwick-unet", trials=12, max_epochs=30,
                             time_budget="12s", name="budget")
    table = pd.read_csv(run / "trials.csv")
    started = table[table["epochs"] > 0]
    assert len(started) < 12
    assert set(table["status"]) <= {"stopped (time budget)", "stopped", "not started (time budget)", "finished"}
    assert (table["status"] == "stopped (time budget)").any()
    assert json.loads((run / "test_results.json").read_text())["trials"]  # the top-k test still happened


def test_a_trial_ended_by_the_budget_is_told_apart_from_one_asha_stopped():
    """Ray's timestamp is whole seconds: a report 0.3 s after the deadline reads as before it."""
    from visiontune.record import Status, trial_status

    deadline = 1000.7
    budget_end = {"epoch": 3, "timestamp": 1000, "ended_by_budget": True}
    asha_stop = {"epoch": 3, "timestamp": 1000, "ended_by_budget": False}
    assert trial_status(budget_end, max_epochs=30, deadline=deadline) == Status.BUDGET
    assert trial_status(asha_stop, max_epochs=30, deadline=deadline) == Status.STOPPED


@pytest.mark.parametrize("searcher, space", [("tpe", "warwick-unet"), ("portfolio", "warwick")])
def test_resume_after_killing_the_driver_loses_and_repeats_nothing(ray_address, tmp_path, searcher, space):
    """SIGKILL a search mid-way (a subprocess on the session's Ray), resume it, and check every trial."""
    storage = tmp_path / "runs"
    command = [sys.executable, "-m", "visiontune", "search", "warwick", "--synthetic", "--space", space,
               "--searcher", searcher,
               "--trials", "6", "--max-epochs", "4", "--scheduler", "none", "--address", ray_address,
               "--storage", str(storage), "--name", "killed", "--top-k", "1"]  # checkpoints deleted as trials end
    log = (tmp_path / "driver.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    run = storage / "killed"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until one trial is done and another is half-way
            counts = [len(epochs_reported(d)) for d in run.glob("trial_*") if (d / "result.json").is_file()]
            if 4 in counts and any(0 < c < 4 for c in counts):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the search never reached the point to kill it: " + (tmp_path / "driver.log").read_text())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    before = {d.name: epochs_reported(d) for d in run.glob("trial_*") if (d / "result.json").is_file()}
    finished_before = {name for name, epochs in before.items() if len(epochs) == 4}
    snapshots = {name: (run / name / "result.json").read_text() for name in finished_before}

    lines: list[str] = []
    summary = run_search(SearchOptions(name="killed", storage=str(storage)), resume=True, progress=lines.append)

    trials = json.loads((run / "trials.json").read_text())
    assert summary["trials"] == 6 and len(trials) == 6
    assert {t["status"] for t in trials} == {"finished"}
    for trial in trials:
        # every epoch exactly once: running trials kept their metrics and resumed, none restarted,
        # also one whose last report came in the moment of the kill (search.recovery)
        assert epochs_reported(run / trial["path"]) == [1, 2, 3, 4], trial["trial_id"]
    for name in finished_before:  # finished trials were not run again
        assert (run / name / "result.json").read_text() == snapshots[name]
    # The searcher state was restored: a fresh TPE with the same seed would propose the
    # pre-kill configurations again; all six are distinct.
    configs = {json.dumps(t["config"], sort_keys=True) for t in trials}
    assert len(configs) == 6
    portfolio = json.loads((run / "search.json").read_text())["portfolio"]
    assert bool(portfolio) == (searcher == "portfolio")
    for point in portfolio:  # tried once each, before the kill or after it, never again
        assert sum(all(t["config"].get(k) == v for k, v in point.items()) for t in trials) == 1
    # this run's progress display, not the one pickled with the search, reported the resumed trials
    resumed = {name.removeprefix("trial_") for name in before} - {n.removeprefix("trial_") for n in finished_before}
    assert all(any(f"trial {trial_id} finished 4 epochs" in line for line in lines) for trial_id in resumed), lines
    # --top-k 1: only the best trial keeps checkpoints, and it was evaluated on test from one
    assert json.loads((run / "search.json").read_text())["disk"]["trials_with_checkpoints"] == [trials[0]["trial_id"]]
    assert list(json.loads((run / "test_results.json").read_text())["trials"]) == [trials[0]["trial_id"]]


def _newest_checkpoint(trial_dir: Path) -> int:
    """The index of a trial's newest checkpoint folder (-1 if none): its epochs done, less one."""
    return max((int(p.name.removeprefix("checkpoint_")) for p in trial_dir.glob("checkpoint_*")), default=-1)


def _state_checkpoints(run: Path) -> dict[str, int]:
    """The number of checkpoints of each trial as Ray's saved experiment state has it."""
    state = json.loads(sorted(run.glob("experiment_state-*.json"))[-1].read_text())
    return {f"trial_{json.loads(trial)['trial_id']}": int(json.loads(metadata)["last_result"].get("training_iteration")
                                                           or 0)
            for trial, metadata in state["trial_data"]}


def test_resume_starts_from_the_newest_checkpoint_a_trial_wrote_when_rays_saved_state_is_behind(
        ray_address, tmp_path):
    """Ray's saved state, and the result.json copies beside it, lag the checkpoints on storage (a
    kill just after a report; tests/frozen_state_driver.py holds that gap open): each trial goes
    on from its newest checkpoint, neither failing on one Ray deleted nor training epochs again,
    its newest checkpoint's report is restored, and its next checkpoint does not overwrite one."""
    storage = tmp_path / "runs"
    driver = Path(__file__).with_name("frozen_state_driver.py")
    command = [sys.executable, str(driver), "search", "warwick", "--synthetic", "--space", "warwick-unet",
               "--trials", "2", "--max-epochs", "20", "--scheduler", "none", "--address", ray_address,
               "--storage", str(storage), "--name", "behind", "--top-k", "2"]
    log = (tmp_path / "driver.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    run = storage / "behind"
    newest: dict[str, int] = {}
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # both trials three epochs or more in, neither finished
            newest = {d.name: _newest_checkpoint(d) for d in run.glob("trial_*")}
            if len(newest) == 2 and all(2 <= n < 18 for n in newest.values()) or any(n >= 18 for n in newest.values()):
                break
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    newest = {d.name: _newest_checkpoint(d) for d in run.glob("trial_*")}
    if not (len(newest) == 2 and all(2 <= n < 19 for n in newest.values())):
        pytest.fail(f"the search never reached the point to kill it ({newest}): "
                    + (tmp_path / "driver.log").read_text())
    state = _state_checkpoints(run)
    assert all(state[name] <= 1 < newest[name] for name in newest), (state, newest)  # the premise: state behind

    lines: list[str] = []
    run_search(SearchOptions(name="behind", storage=str(storage)), resume=True, progress=lines.append)

    trials = json.loads((run / "trials.json").read_text())
    assert {t["status"] for t in trials} == {"finished"} and len(trials) == 2
    for trial in trials:
        resumed_from = newest[trial["path"]]
        assert any(f"trial {trial['trial_id']} resumes from checkpoint_{resumed_from:06d} "
                   f"(epoch {resumed_from + 1})" in line for line in lines), lines
        reports = [json.loads(line) for line in (run / trial["path"] / "result.json").read_text().splitlines()]
        epochs = [r["epoch"] for r in reports]
        # No epoch trained twice; from the newest checkpoint on, every epoch (its own restored)
        assert epochs == sorted(set(epochs)) and epochs[-1] == 20, epochs
        assert set(range(resumed_from + 1, 21)) <= set(epochs) and trial["epochs"] == len(epochs), epochs
        names = [r["checkpoint_dir_name"] for r in reports]
        assert names == sorted(set(names)), names  # each checkpoint folder written once
        assert names[-(20 - resumed_from):] == [f"checkpoint_{i:06d}" for i in range(resumed_from, 20)]
    # the best checkpoints were kept through the recovery: both trials evaluated on test
    assert len(json.loads((run / "test_results.json").read_text())["trials"]) == 2


def test_bad_space_file_fails_before_ray_starts(tmp_path, capsys, monkeypatch):
    import visiontune.search as search_module

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a bad space")

    monkeypatch.setattr(search_module, "ray_session", no_ray)
    space = tmp_path / "bad.yaml"
    space.write_text("params:\n  lr: {loguniform: [0, 0.01]}\n")
    storage = tmp_path / "runs"
    code = main(["search", "warwick", "--synthetic", "--space", str(space), "--storage", str(storage), "--name", "x"])
    stderr = capsys.readouterr().err
    assert code == 1 and stderr.count("\n") == 1
    assert f"{space}: lr: a log range must lie above 0" in stderr
    assert not (storage / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (["--grace-period", "5", "--max-epochs", "3"], "--grace-period 5 exceeds --max-epochs 3"),
    (["--objectives", "val/acc,flops"], "--objectives 'val/acc,flops': supported is 'val/acc,params'"),
    (["--time-budget", "soon"], "--time-budget 'soon': expected a duration"),
    (["--searcher", "grid"], "space 'mnist' is a define-by-run function and cannot run as a grid"),
    (["--space", "mnist-report-blocks", "--searcher", "grid", "--trials", "3"], "runs every point"),
    (["--set", "model=mlp"], "--set model='mlp': the space draws model from 'cnn', 'fnn'"),
    (["--space", "mnist-cnn", "--set", "model=fnn"], "--set model='fnn': the space fixes model to 'cnn'"),
    (["--space", "mnist-report-blocks", "--searcher", "grid", "--set", "blocks=2"],
     "--set blocks: the grid 'mnist-report-blocks' already lists it"),
    (["--warm-start", "{tmp}/missing.yaml"], "missing.yaml: cannot read"),
])
def test_bad_search_options_are_one_line_errors(tmp_path, capsys, monkeypatch, argv, message):
    import visiontune.search as search_module

    monkeypatch.setattr(search_module, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = main(["search", "mnist", "--synthetic", "--storage", str(tmp_path), "--name", "x", *argv])
    stderr = capsys.readouterr().err
    assert code == 1 and stderr.count("\n") == 1 and message in stderr, stderr


def test_set_on_a_branching_parameter_takes_its_branch(ray_address, tmp_path):
    # The report's full MNIST space branches on the model: --set model=cnn searches CNNs only,
    # and the FNN's hidden units are never drawn.
    summary, run, _ = search(tmp_path, space="mnist", trials=4, max_epochs=1, fixed={"model": "cnn"})
    trials = json.loads((run / "trials.json").read_text())
    assert summary["trials"] == 4 and len(trials) == 4
    for trial in trials:
        assert trial["config"]["model"] == "cnn" and "hidden" not in trial["config"]
        assert {"blocks", "width"} <= set(trial["config"])


def test_existing_run_name_is_refused_without_resume(ray_address, tmp_path, capsys):
    search(tmp_path, trials=1, max_epochs=1, name="taken")
    code = main(["search", "mnist", "--synthetic", "--space", "mnist-cnn", "--storage", str(tmp_path / "runs"),
                 "--name", "taken"])
    assert code == 1 and "already exists; continue it with --resume --name taken" in capsys.readouterr().err


def test_ray_listens_on_loopback_only(ray_address):
    import psutil
    import ray

    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in ray_pids]
    assert listening, "found no listening Ray sockets to check"
    for connection in listening:
        address = connection.laddr.ip
        assert address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1"), connection
    assert ray.util.get_node_ip_address().startswith("127.")


def test_ctrl_c_saves_the_search_and_says_how_to_resume(ray_address, tmp_path):
    storage = tmp_path / "runs"
    command = [sys.executable, "-m", "visiontune", "search", "warwick", "--synthetic", "--space", "warwick-unet",
               "--trials", "6", "--max-epochs", "4", "--address", ray_address, "--storage", str(storage),
               "--name", "interrupted"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not any((storage / "interrupted").glob("trial_*/progress.csv")):
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert f"--resume --name interrupted --storage {storage}" in stderr
    assert "Traceback" not in stderr
    assert not (storage / "interrupted" / "test_results.json").exists()  # no test look at a partial search


def test_warm_start_files_and_durations(tmp_path):
    from visiontune.errors import ConfigError
    from visiontune.search import load_warm_start, parse_duration

    listed = tmp_path / "points.yaml"
    listed.write_text("- {model: cnn, lr: 0.001}\n- {model: cnn, lr: 0.01, batch_size: 64}\n")
    assert load_warm_start(str(listed), "mnist") == [{"model": "cnn", "lr": 0.001},
                                                     {"model": "cnn", "lr": 0.01, "batch_size": 64}]
    wrapped = tmp_path / "points.json"
    wrapped.write_text('{"configs": [{"lr": 0.002}]}')
    assert load_warm_start(str(wrapped), "mnist") == [{"lr": 0.002}]
    assert load_warm_start("report", "warwick") == [REPORT_BEST["warwick"]]
    empty = tmp_path / "empty.yaml"
    empty.write_text("[]\n")
    with pytest.raises(ConfigError, match="empty.yaml: a warm-start file holds a non-empty list"):
        load_warm_start(str(empty), "mnist")
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1h30m")] == [90, 90, 1800, 7200, 5400]


def test_warm_start_trials_are_not_stopped_by_asha(ray_address):
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from visiontune.search.algorithms import WarmStartASHA

    scheduler = WarmStartASHA([{"model": "fcn2", "lr": 0.001}], time_attr="epoch", metric="val/dice", mode="max",
                              max_t=9, grace_period=1, reduction_factor=2)
    good = SimpleNamespace(trial_id="good", config={"model": "unet", "lr": 0.01})
    warm = SimpleNamespace(trial_id="warm", config={"model": "fcn2", "lr": 0.001, "task": "warwick"})
    weak = SimpleNamespace(trial_id="weak", config={"model": "fcn", "lr": 0.01})
    for trial in (good, warm, weak):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"epoch": 1, "val/dice": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, warm, {"epoch": 1, "val/dice": 0.1}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak, {"epoch": 1, "val/dice": 0.1}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, warm, {"epoch": 9, "val/dice": 0.2}) == TrialScheduler.STOP  # its end
