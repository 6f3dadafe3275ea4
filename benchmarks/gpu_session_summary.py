"""summary.md of a GPU session (benchmarks/gpu_session.sh): the stages, the tests, the two
cross-validations against RESULTS.md's targets, the one-split search against the recorded one,
the placements and the loop throughput, each from the files its stage wrote.

    python benchmarks/gpu_session_summary.py DEST > DEST/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# RESULTS.md's cross-validation targets, and the recorded (eager) GPU searches the configurations came from.
TASKS = {"warwick": {"metric": "dice", "target": 0.90, "recorded": REPO / "reproduction/results/gpu-warwick/trials.md"},
         "mnist": {"metric": "acc", "target": 0.996, "recorded": REPO / "reproduction/results/gpu-mnist/trials.md"}}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def markdown_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the first Markdown table in ``path``, as dicts by header."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")] if path.exists() else []
    if len(lines) < 2:
        return []
    cells = lambda line: [cell.strip() for cell in line.strip("|").split("|")]  # noqa: E731
    header = cells(lines[0])
    return [dict(zip(header, cells(line))) for line in lines[2:]]


def last_line(path: Path, starting: str = "") -> str:
    lines = [line for line in path.read_text().splitlines() if line.startswith(starting)] if path.exists() else []
    return lines[-1].strip() if lines else "(none)"


def stages(dest: Path) -> list[str]:
    rows = [line.split("\t") for line in (dest / "stages.tsv").read_text().splitlines()] \
        if (dest / "stages.tsv").exists() else []
    return ["| stage | status | seconds |", "| --- | --- | --- |"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]


def fold_compute(run: Path, cv: dict) -> str:
    """Trial-seconds of the fold trainings and the refit, from their searches' trial summaries."""
    total, count = 0.0, 0
    for folder in {member["path"].rsplit("/", 1)[0] for entry in cv["ranking"] for member in entry["members"]} | \
            {entry["refit"]["path"].rsplit("/", 1)[0] for entry in cv["ranking"] if entry.get("refit")}:
        for trial in read_json(run / folder / "trials.json") or []:
            total += float(trial.get("time_s") or 0.0)
            count += 1
    return f"{count} trainings (the folds and the refit), {total / 60:.1f} trial-minutes"


def one_split(run: Path, task: str) -> list[str]:
    """The grid search on the one split (CUDA graphs if the tests passed) beside the recorded search."""
    metric, recorded = f"val/{TASKS[task]['metric']}", markdown_rows(TASKS[task]["recorded"])
    test_metric = f"test/{TASKS[task]['metric']}"
    tests = (read_json(run / "test_results.json") or {}).get("trials") or {}
    search = read_json(run / "search.json") or {}
    graphs = (search.get("options") or {}).get("fixed") or {}  # the --set values
    lines = [f"One split ({run.name}, settings fixed: {graphs or 'none'}) against the recorded search "
             f"({TASKS[task]['recorded'].parent.name}, eager):", "",
             f"| lr | recorded trial | recorded best {metric} | this best {metric} | recorded {test_metric} | "
             f"this {test_metric} |", "| --- | --- | --- | --- | --- | --- |"]
    for trial in read_json(run / "trials.json") or []:
        config = trial.get("config") or {}
        lr = f"{config.get('lr', float('nan')):.4g}"
        match = next((row for row in recorded if row.get("lr") == lr), {})
        test = (tests.get(trial.get("trial_id")) or {}).get(test_metric)
        best = trial.get("best_value")
        lines.append(f"| {lr} | {match.get('trial', '?')} | {match.get(f'best {metric}', '?')} | "
                     f"{best if best is None else f'{best:.4f}'} | {match.get(test_metric, '?')} | "
                     f"{'' if test is None else f'{test:.4f}'} |")
    return lines


def cross_validation(dest: Path, task: str) -> list[str]:
    run = dest / "runs" / f"cv-{task}"
    cv = read_json(run / "cv" / "cv.json")
    target, name = TASKS[task]["target"], TASKS[task]["metric"]
    lines = [f"## Cross-validation: {task} (target: test {name} >= {target} for the out-of-fold winner's fold ensemble)", ""]
    if not cv:
        return lines + [f"no cv.json ({run}/cv/cv.json): see {task}'s stage log", ""]
    winner = next(entry for entry in cv["ranking"] if entry["trial_id"] == cv["winner"]) \
        if isinstance(cv.get("winner"), str) else cv["ranking"][0]
    ensemble = winner["ensemble_test"][f"test/{name}"]
    verdict = "met" if ensemble >= target else f"missed by {target - ensemble:.4f}"
    refit = winner.get("refit") or {}
    lines += [f"- winner {winner['trial_id']} ({json.dumps(winner['config'])})",
              f"- out of fold {name} {winner[f'oof/{name}']:.4f} (folds {winner['fold_mean']:.4f} +- "
              f"{winner['fold_std']:.4f}); one split's validation {winner['val_one_split']:.4f}",
              f"- fold ensemble, test {name} **{ensemble:.4f}**: target {verdict}",
              f"- refit on all {cv['images']} ({refit.get('epochs', '?')} epochs): test {name} "
              f"{refit.get(f'test/{name}', float('nan')):.4f}",
              f"- optimism (estimate - test): one split {winner['val_one_split'] - ensemble:+.4f}, out of fold "
              f"{winner[f'oof/{name}'] - ensemble:+.4f}",
              f"- compute: {fold_compute(run, cv)} ({cv['folds']} folds x {len(cv['ranking'])} configurations, "
              f"{cv['epochs']} epochs)", ""]
    table = run / "analysis-cv" / "cv.md"
    lines += (table.read_text().splitlines() if table.exists() else ["(no cv.md)"]) + [""]
    return lines + one_split(run, task) + [""]


def placement(dest: Path) -> list[str]:
    figures = read_json(dest / "placement" / "gpu_placement.json")
    if not figures:
        return ["## Placements", "", "no figures (see placement.log)", ""]
    lines = ["## Placements (four trials per GPU)", "",
             f"Large set {figures['large_set_gb']:.1f} GB (GPU {figures.get('gpu_memory_gb') or 0:.0f} GB); "
             f"--placement device on it: {figures.get('device_on_large_set', 'not asked (no GPU)')}", "",
             "| run | placement | data GB | images/s (sum of 4) | per trial | GPU peak GB | GPU util median / mean % | "
             "host peak above idle GB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in ("streamed", "on_device"):
        run = figures[key]
        util = (f"{run['gpu_util_median']:.0f} / {run['gpu_util_mean']:.0f}" if run.get("gpu_samples") else "-")
        peak = f"{run['gpu_memory_peak_gb']:.1f}" if run.get("gpu_samples") else "-"
        lines.append(f"| {key} | {run['placement']} | {run['data_gb']:.2f} | {run['images_per_s_total']:,} | "
                     f"{', '.join(f'{rate:,}' for rate in run['images_per_s_per_trial'])} | {peak} | {util} | "
                     f"{run['host_memory_peak_above_idle_gb']:.1f} |")
    return lines + ["", f"streamed / on device: {figures['streamed_over_device']:.2f}x", ""]


def main(argv: list[str]) -> int:
    dest = Path(argv[0])
    env = (dest / "env.txt").read_text().strip() if (dest / "env.txt").exists() else "(no env.txt)"
    out = ["# GPU session", "", "```", env, "```", "", "## Stages", ""] + stages(dest) + [""]
    out += ["## Tests", "", last_line(dest / "tests.log", ""), ""]
    for task in TASKS:
        out += cross_validation(dest, task)
    out += placement(dest)
    out += ["## Loop throughput", "", last_line(dest / "loop.log", "SUMMARY"), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
