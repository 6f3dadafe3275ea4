"""Bounded disk: checkpoints of ended trials that can no longer be among the top-k are deleted."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from visiontune.search import SearchOptions, run_search
from visiontune.search.retention import CheckpointRetention
from visiontune.storage import RunStore


def _trial(trial_id: str, status: str, best: float | None, best_epoch: int = 1, epoch: int = 3):
    report = {"epoch": epoch, "best_epoch": best_epoch if best is not None else 0, "val/dice_best": best or 0.0}
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=report)


def _folders(root: Path, trial_ids: list[str]) -> None:
    for trial_id in trial_ids:
        for number in (1, 3):
            folder = root / "run" / f"trial_{trial_id}" / f"checkpoint_00000{number}"
            folder.mkdir(parents=True)
            (folder / "state.pt").write_bytes(b"x" * 10)
        (root / "run" / f"trial_{trial_id}" / "result.json").write_text("{}\n")


def _kept(root: Path) -> set[str]:
    return {p.parent.name.removeprefix("trial_") for p in (root / "run").glob("trial_*/checkpoint_*")}


def test_only_trials_that_can_still_be_in_the_top_k_keep_checkpoints(tmp_path):
    _folders(tmp_path, ["a", "b", "c", "d", "e", "f"])
    retention = CheckpointRetention(RunStore(str(tmp_path), "run"), "val/dice", top_k=2)
    a, b, c = _trial("a", "TERMINATED", 0.9), _trial("b", "TERMINATED", 0.8, best_epoch=3), \
        _trial("c", "TERMINATED", 0.8, best_epoch=1)
    running, empty = _trial("d", "RUNNING", 0.95), _trial("e", "TERMINATED", None)
    cleaned_up = _trial("f", "TERMINATED", 0.1)  # Tune's Ctrl-C clean-up: TERMINATED, but no end callback
    trials = [a, b, c, running, empty, cleaned_up]
    retention.on_step_begin(0, [running])  # a new search: nothing has ended yet
    for trial in (a, b, c, empty):
        retention.on_trial_complete(0, trials, trial)
    # a (0.9) and c (0.8 at the earlier epoch) are the top 2 of the ended trials; b ties c on
    # value but ranks after it, as in the ranked table; e has no value; d and f still run
    assert _kept(tmp_path) == {"a", "c", "d", "f"}
    assert retention.deleted == 4 and (tmp_path / "run" / "trial_b" / "result.json").is_file()


def test_a_resumed_search_counts_the_trials_that_ended_before_it(tmp_path):
    _folders(tmp_path, ["a", "b", "c"])
    retention = CheckpointRetention(RunStore(str(tmp_path), "run"), "val/dice", top_k=1)
    restored = [_trial("a", "TERMINATED", 0.5), _trial("b", "ERROR", 0.7), _trial("c", "PENDING", None)]
    retention.on_step_begin(0, restored)
    assert _kept(tmp_path) == {"b", "c"}  # b failed but holds the best value: it may be evaluated on test


@pytest.fixture(scope="module")
def long_search(ray_address, tmp_path_factory) -> Path:
    """60 trials of tiny FCNs on synthetic glands, ASHA, --top-k 3."""
    storage = tmp_path_factory.mktemp("retention")
    space = storage / "tiny.yaml"
    space.write_text("params:\n  model: fcn\n  depth: 1\n  width: 4\n  batch_size: 8\n  precision: fp32\n"
                     "  lr: {loguniform: [1.0e-4, 3.0e-2]}\n  optimizer: [sgd, adam]\n")
    run_search(SearchOptions(task="warwick", synthetic=True, train_limit=8, space=str(space), trials=60, max_epochs=2,
                             grace_period=1, reduction_factor=2, top_k=3, storage=str(storage), name="long",
                             report=False), progress=lambda line: None)
    return storage / "long"


def test_a_60_trial_search_ends_with_checkpoints_for_its_top_3_only(long_search):
    table = pd.read_csv(long_search / "trials.csv")
    assert len(table) == 60 and set(table["status"]) <= {"finished", "stopped"}
    top = set(table.loc[table["rank"] <= 3, "trial_id"])
    kept = {p.parent.name.removeprefix("trial_") for p in long_search.glob("trial_*/checkpoint_*")}
    assert kept == top
    # the top 3 were evaluated on test from their best checkpoints
    assert set(json.loads((long_search / "test_results.json").read_text())["trials"]) == top
    # every trial keeps its reports and configuration
    assert all((long_search / path / "result.json").is_file() and (long_search / path / "params.json").is_file()
               for path in table["path"])
    disk = json.loads((long_search / "search.json").read_text())["disk"]
    assert set(disk["trials_with_checkpoints"]) == top and disk["checkpoints_deleted"] >= 57
    on_disk = sum(p.stat().st_size for p in long_search.glob("trial_*/checkpoint_*/**/*") if p.is_file())
    assert disk["checkpoint_bytes"] == on_disk > 0
    assert disk["bytes"] >= on_disk
