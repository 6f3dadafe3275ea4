"""``visiontune train`` and ``visiontune data`` from the command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import png_bytes, warwick_files, write_mnist_idx, write_tree

from visiontune.cli import main
from visiontune.models import build_model


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_epoch_synthetic_train_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "mnist", "--synthetic", "--epochs", "2", "--width", "4",
                              "--out", str(out), "--threads", "2")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "data.json", "metrics.csv", "result.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["width"] == 4 and config["epochs"] == 2 and config["task"] == "mnist"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train/loss", "val/loss", "val/acc", "time_s"} <= set(rows[0])
    result = json.loads((out / "result.json").read_text())
    best_row = max(rows, key=lambda r: float(r["val/acc"]))
    assert result["best_epoch"] == int(best_row["epoch"])
    assert result["best_val/acc"] == pytest.approx(float(best_row["val/acc"]))
    assert 0.0 <= result["test/acc"] <= 1.0 and result["data"]["sizes"] == {"train": 500, "val": 100, "test": 200}
    assert result["data"]["split_seed"] == 0 and "torch" in result["versions"]
    # the checkpoint is a plain state dict that loads safely into the configured model
    model = build_model("cnn", width=4)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    assert "epoch   2/2" in stdout and f"run folder: {out}" in stdout


def test_config_file_repeats_a_run_and_options_override_it(tmp_path, capsys):
    first = tmp_path / "first"
    assert run_cli(capsys, "train", "warwick", "--synthetic", "--epochs", "1", "--width", "4",
                   "--augment", "flip", "--out", str(first))[0] == 0
    second = tmp_path / "second"
    assert run_cli(capsys, "train", "warwick", "--synthetic", "--config", str(first / "config.json"),
                   "--out", str(second))[0] == 0
    assert json.loads((second / "config.json").read_text()) == json.loads((first / "config.json").read_text())
    assert json.loads((first / "result.json").read_text())["test/dice"] == \
        json.loads((second / "result.json").read_text())["test/dice"]  # seeded: the same run again
    third = tmp_path / "third"
    assert run_cli(capsys, "train", "warwick", "--synthetic", "--config", str(first / "config.json"),
                   "--lr", "0.01", "--out", str(third))[0] == 0
    assert json.loads((third / "config.json").read_text())["lr"] == 0.01


def _bad_warwick(root: Path) -> Path:
    files = warwick_files(train=3, test=2, size=16)
    files["WARWICK/Train/label_02.png"] = png_bytes(np.full((16, 16), 128, np.uint8))
    return write_tree(root, files)


@pytest.mark.parametrize("argv, message", [
    (["train", "warwick", "--data-dir", "{bad}"], "label_02.png: label values must be 0/255"),
    (["train", "warwick", "--data-dir", "{tmp}/nowhere"], "WARWICK not found"),
    (["train", "mnist", "--no-download", "--data-dir", "{tmp}/nowhere"], "MNIST not found"),
    (["train", "mnist", "--synthetic", "--model", "fnn", "--blocks", "2"], "blocks does not apply to model 'fnn'"),
    (["train", "mnist", "--synthetic", "--lr", "-1"], "lr must be a positive number"),
    (["train", "mnist", "--synthetic", "--config", "{tmp}/missing.json"], "missing.json: cannot read config file"),
    (["train", "mnist", "--synthetic", "--val-size", "600"], "--val-size must be between 1 and 599"),
])
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    bad = _bad_warwick(tmp_path / "bad")
    out = tmp_path / "out"
    argv = [a.format(bad=bad, tmp=tmp_path) for a in argv] + ["--out", str(out)]
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 1
    assert stderr.startswith("visiontune: error: ") and stderr.count("\n") == 1
    assert message in stderr
    assert not out.exists()


def test_existing_out_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(capsys, "train", "mnist", "--synthetic", "--out", str(out))
    assert code == 1 and "already exists and is not empty" in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_data_check_summarises_the_split(tmp_path, capsys):
    write_mnist_idx(tmp_path / "mnist", train=40, test=10)
    code, stdout, _ = run_cli(capsys, "data", "check", "mnist", "--data-dir", str(tmp_path), "--val-size", "8")
    assert code == 0 and "train 32, val 8, test 10" in stdout


def test_command_line_error_has_no_traceback(tmp_path):
    """The installed entry point, in a fresh process: one line on stderr, exit status 1."""
    bad = _bad_warwick(tmp_path / "bad")
    process = subprocess.run([sys.executable, "-m", "visiontune", "train", "warwick", "--data-dir", str(bad),
                              "--out", str(tmp_path / "out")], capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"visiontune: error: {bad}")
    assert "label_02.png: label values must be 0/255 (or 0/1), found 128" in process.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_mnist_one_epoch_reaches_report_level(mnist_root, tmp_path, capsys):
    """Issue 2's reference: CNN, Adam 1e-3, batch 32, one epoch scores at least 0.965 test accuracy."""
    out = tmp_path / "mnist"
    code, _, _ = run_cli(capsys, "train", "mnist", "--data-dir", str(mnist_root), "--model", "cnn",
                         "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32", "--epochs", "1",
                         "--out", str(out), "--threads", "2")
    result = json.loads((out / "result.json").read_text())
    assert code == 0 and result["test/acc"] >= 0.965


@pytest.mark.slow
def test_real_warwick_short_train_beats_all_gland_floor(warwick_root, tmp_path, capsys):
    out = tmp_path / "warwick"
    code, _, _ = run_cli(capsys, "train", "warwick", "--data-dir", str(warwick_root), "--model", "fcn2",
                         "--batch-size", "4", "--epochs", "10", "--out", str(out), "--threads", "2")
    result = json.loads((out / "result.json").read_text())
    assert code == 0 and result["test/dice"] > 0.70  # "all gland" scores about 0.64


@pytest.mark.parametrize("command", ["train", "search", "analyze", "reproduce", "data"])
def test_every_command_has_help_listing_every_generated_option(command, capsys):
    """The options generated from the dataclasses show in --help (and the help text formats)."""
    import dataclasses

    from visiontune.data.options import DataOptions
    from visiontune.options import flag_of
    from visiontune.search.options import SearchOptions, TrialResources

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    expected = {"search": SearchOptions, "analyze": TrialResources, "data": DataOptions}.get(command)
    for spec in dataclasses.fields(expected) if expected else []:
        if spec.metadata.get("cli", True):
            flag = flag_of(spec) if spec.default is not True else "--no-" + spec.name.replace("_", "-")
            assert flag in shown, (command, flag)
