"""The GPU session's summary (benchmarks/gpu_session_summary.py): what the next GPU session will
quote in RESULTS.md, read from a recorded cross-validation (the CPU run's cv.json)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_session_summary as summary  # noqa: E402

RECORDED = REPO / "reproduction" / "results" / "cpu-warwick-cv"


def _session(tmp_path: Path, ensemble: float | None = None) -> Path:
    """A session folder holding the recorded WARWICK cross-validation as the cv-warwick stage writes it."""
    run = tmp_path / "runs" / "cv-warwick"
    (run / "cv").mkdir(parents=True)
    (run / "analysis-cv").mkdir()
    cv = json.loads((RECORDED / "cv.json").read_text())
    if ensemble is not None:
        cv["ranking"][0]["ensemble_test"]["test/dice"] = ensemble
    (run / "cv" / "cv.json").write_text(json.dumps(cv))
    shutil.copy(RECORDED / "cv.md", run / "analysis-cv" / "cv.md")
    (tmp_path / "stages.tsv").write_text("tests\tpassed\t41\ncv-warwick\tpassed\t250\ncv-mnist\tskipped\t0\n")
    return tmp_path


def test_the_winner_its_estimates_and_the_targets_verdict_come_from_cv_json(tmp_path):
    lines = summary.cross_validation(_session(tmp_path), "warwick")
    text = "\n".join(lines)
    assert "winner 624eef11" in text
    assert "out of fold dice 0.8621 (folds 0.8621 +- 0.0173); one split's validation 0.8932" in text
    assert "fold ensemble, test dice **0.8422**: target missed by 0.0578" in text  # 0.90 - 0.8422
    assert "refit on all 85 (40 epochs): test dice 0.8492" in text
    # optimism = estimate - test of the ensemble: the one split's and the out-of-fold figure's
    assert "optimism (estimate - test): one split +0.0510, out of fold +0.0199" in text
    assert any(line.startswith("| 1 | 624eef11 | unet |") for line in lines)  # the cv.md table follows


def test_a_fold_ensemble_at_the_target_is_met(tmp_path):
    text = "\n".join(summary.cross_validation(_session(tmp_path, ensemble=0.9012), "warwick"))
    assert "test dice **0.9012**: target met" in text


def test_a_missing_stage_is_said_not_invented(tmp_path):
    session = _session(tmp_path)
    lines = summary.cross_validation(session, "mnist")
    assert any("no cv.json" in line for line in lines) and not any(line.startswith("- winner") for line in lines)
    assert summary.stages(session)[-1] == "| cv-mnist | skipped | 0 |"
    assert summary.placement(session)[2] == "no figures (see placement.log)"
