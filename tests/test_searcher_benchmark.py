"""The searcher benchmark (benchmarks/searchers.py): what it counts, its own data sets, a quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import own_tasks  # noqa: E402
import searchers  # noqa: E402


def test_reach_counts_every_trial_epoch_until_some_trials_best_model_scores_the_target():
    # (timestamp, trial, validation, test figure of that trial's best-by-validation model so far)
    rows = [(10, "a", 0.50, 0.40), (11, "b", 0.60, 0.55), (12, "a", 0.70, 0.62), (13, "b", 0.65, 0.70),
            (14, "a", 0.65, 0.62), (15, "b", 0.90, 0.80)]
    result = searchers.reach_and_curve(list(reversed(rows)), threshold=0.7)  # order: by timestamp
    # b's best model first scores 0.70 at the 4th trial-epoch of the search, 3 s after its first
    assert (result["trial_epochs_to_reach"], result["seconds_to_reach"]) == (4, 3)
    assert result["trial_epochs_total"] == 6 and result["trials"] == 2 and result["best_test"] == 0.80
    # the anytime curve follows the best-by-validation model, not the best test figure: at the
    # 4th epoch a (validation 0.70) still leads b (0.65), so the curve shows a's 0.62
    assert [point[2] for point in result["curve"]] == [0.40, 0.55, 0.62, 0.62, 0.62, 0.80]
    assert searchers.reach_and_curve(rows, threshold=0.95).get("trial_epochs_to_reach") is None


def test_summary_median_and_curves_carry_a_finished_search_on():
    task = searchers.Task("textures", 0.5, trials=4, epochs=2)
    rows = [{"method": "random", "seed": seed, "trial_epochs_to_reach": reach, "seconds_to_reach": 2.0 * (reach or 0),
             "trial_epochs_total": reach or 8, "curve": [[1, 1.0, 0.3], [reach or 8, 9.0, 0.6 if reach else 0.4]]}
            for seed, reach in enumerate((3, 5, 7))]
    rows += [{"method": "portfolio", "seed": 0, "trial_epochs_total": 8, "curve": [[8, 9.0, 0.4]]}]
    summary = searchers.summarise(task, (4, 2), ["random", "portfolio"], rows)
    assert summary["methods"]["random"]["median_trial_epochs"] == 5
    assert summary["methods"]["random"]["median_seconds"] == 10.0
    assert summary["methods"]["portfolio"]["median_trial_epochs"] == ">8 (not reached in most seeds)"
    # at 7 trial-epochs the three random searches stand at 0.6 (ended at 3, carried on), 0.6, 0.6
    assert dict(map(tuple, summary["median_curves"]["random"]))[7] == 0.6
    assert dict(map(tuple, summary["median_curves"]["random"]))[2] == 0.3


def test_epoch_limit_ends_each_trial_and_the_search_at_the_target():
    stopper = searchers.EpochLimit(epochs=1, threshold=0.5)
    assert stopper("t", {"training_iteration": 1, searchers.MONITOR: 0.2}) and not stopper.stop_all()
    assert not searchers.EpochLimit(None, 0.5)("t", {"training_iteration": 9})
    stopper("t", {"training_iteration": 1, searchers.MONITOR: 0.5})
    assert stopper.stop_all()


def test_own_tasks_keep_test_images_apart_from_training_images(tmp_path):
    """The texture sets are read as the own-data layouts, and no test image shares pixels with a
    training image (they come from disjoint rows of each photograph)."""
    from visiontune.data import load_splits

    root = own_tasks.write_textures(tmp_path / "textures", train_per_class=20, test_per_class=5)
    splits = load_splits(str(root), val_size=8)
    assert splits.card.classes == sorted(own_tasks.TEXTURES) and splits.sizes()["test"] == 20
    assert own_tasks.TRAIN_ROWS[1] < own_tasks.TEST_ROWS[0]
    seg = own_tasks.write_texture_seg(tmp_path / "texture-seg", train_count=12, test_count=4)
    seg_splits = load_splits(str(seg), val_size=2)
    assert seg_splits.card.kind == "segmentation" and seg_splits.card.name == "texture-seg"
    masks = seg_splits.train.targets.numpy()
    assert set(np.unique(masks)) == {0, 1} and 0.05 < masks.mean() < 0.6  # blobs on a background


@pytest.mark.slow
def test_quick_benchmark_compares_searchers_and_draws_the_curves(ray_address, tmp_path):
    """One quick run of two methods on the small texture task, on the session's Ray."""
    command = [sys.executable, str(BENCHMARKS / "searchers.py"), "--quick", "--tasks", "textures", "--methods",
               "random,portfolio", "--address", ray_address, "--out", str(tmp_path), "--name", "q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "q.json").read_text())
    summary = result["tasks"]["textures"]
    assert set(summary["methods"]) == {"random", "portfolio"}
    for row in summary["rows"]:
        reach = row.get("trial_epochs_to_reach")
        assert reach is None or reach <= row["trial_epochs_total"]
        assert row["curve"] and all(0.0 <= point[2] <= 1.0 for point in row["curve"])
    assert (tmp_path / "q.png").stat().st_size > 10_000 and not (tmp_path / "q-partial.json").exists()
    assert "SUMMARY textures" in done.stdout
