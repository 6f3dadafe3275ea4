"""search.recovery's reading of a trial folder, without Ray: which checkpoints are complete, and
which reports it restores to result.json (the resume tests in test_search.py run it on Ray)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from visiontune.search.recovery import CheckpointRecovery
from visiontune.storage import RunStore


def _checkpoint(trial: Path, index: int, epochs: list[int], state: bytes = b"weights", recorded: int | None = None):
    folder = trial / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(state)
    reports = [{"epoch": epoch, "val/acc": epoch / 10} for epoch in epochs]
    (folder / "reports.json").write_text(json.dumps({"reports": reports,
                                                     "state_bytes": len(state) if recorded is None else recorded}))


def test_complete_checkpoints_and_the_reports_restored_to_result_json(tmp_path):
    store = RunStore(str(tmp_path), "run")
    trial = tmp_path / "run" / "trial_t1"
    _checkpoint(trial, 1, [1, 2])
    _checkpoint(trial, 3, [3, 4])  # a trial resumed once from a checkpoint without reports: history from epoch 3
    _checkpoint(trial, 4, [3, 4, 5], recorded=999)  # its state file's copy was cut short
    (trial / "checkpoint_000002").mkdir()  # written before checkpoints held reports
    (trial / "checkpoint_000002" / "state.pt").write_bytes(b"old")
    (trial / "result.json").write_text(json.dumps({"epoch": 1, "training_iteration": 1}) + "\n"
                                       + json.dumps({"epoch": 2, "training_iteration": 2}) + "\n"
                                       + '{"epoch": 3, "trai')  # the kill cut the copy short here
    recovery = CheckpointRecovery(store, progress=lambda line: None)

    complete = recovery.complete_checkpoints("t1")
    assert [name for name, _ in complete] == ["checkpoint_000001", "checkpoint_000003"]

    staging = tmp_path / "staging" / "trial_t1"
    fake_trial = SimpleNamespace(trial_id="t1", storage=SimpleNamespace(trial_driver_staging_path=str(staging)))
    recovery._restore_reports(fake_trial, complete[-1][1], last_number=4)
    for copy in (trial / "result.json", staging / "result.json"):  # storage's and the driver's staging copy
        lines = [json.loads(line) for line in copy.read_text().splitlines()]
        assert [(r["epoch"], r["training_iteration"]) for r in lines] == [(1, 1), (2, 2), (3, 3), (4, 4)]
        assert [r.get("checkpoint_dir_name") for r in lines[2:]] == ["checkpoint_000002", "checkpoint_000003"]
        assert lines[3]["val/acc"] == 0.4 and lines[3]["trial_id"] == "t1"


def test_nothing_is_rewritten_when_result_json_has_every_report(tmp_path):
    store = RunStore(str(tmp_path), "run")
    trial = tmp_path / "run" / "trial_t2"
    _checkpoint(trial, 1, [1, 2])
    text = json.dumps({"epoch": 1}) + "\n" + json.dumps({"epoch": 2}) + "\n"
    (trial / "result.json").write_text(text)
    recovery = CheckpointRecovery(store, progress=lambda line: None)
    staging = tmp_path / "staging"
    fake_trial = SimpleNamespace(trial_id="t2", storage=SimpleNamespace(trial_driver_staging_path=str(staging)))
    recovery._restore_reports(fake_trial, recovery.complete_checkpoints("t2")[-1][1], last_number=2)
    assert (trial / "result.json").read_text() == text and not staging.exists()
