"""Summary of gpu_check.sh: GPU utilisation during the search and time to 0.99 validation accuracy.

    python benchmarks/gpu_summary.py UTILISATION.csv RUN_FOLDER LOOP_OUTPUT.txt
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

TARGET = 0.99


def utilisation(csv_path: Path) -> tuple[float | None, float | None, int]:
    """Median and mean GPU utilisation (%) over the samples, and their count."""
    values = []
    for line in csv_path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].replace(".", "", 1).isdigit():
            values.append(float(parts[1]))
    if not values:
        return None, None, 0
    return statistics.median(values), statistics.fmean(values), len(values)


def time_to_target(run: Path, target: float = TARGET) -> tuple[float | None, float]:
    """Seconds from the search's first trial start to the first epoch with val/acc >= target; and the span."""
    from visiontune.runfolder import load_search

    rows = [row for trial in load_search(run).trials for row in trial.epochs.to_dict("records")]
    if not rows:
        return None, 0.0
    start = min(row["timestamp"] - row.get("time_total_s", 0.0) for row in rows)
    end = max(row["timestamp"] for row in rows)
    hits = [row["timestamp"] for row in rows if row.get("val/acc", 0.0) >= target]
    return (min(hits) - start if hits else None), end - start


def main(argv: list[str]) -> int:
    csv_path, run, loop = Path(argv[0]), Path(argv[1]), Path(argv[2])
    median, mean, count = utilisation(csv_path)
    reached, span = time_to_target(run)
    loop_summary = next((line for line in loop.read_text().splitlines() if line.startswith("SUMMARY")), "no loop summary")
    print(loop_summary)
    util = f"median {median:.0f}%, mean {mean:.0f}% over {count} samples" if count else "no samples"
    print(f"GPU utilisation during the 16-trial search (4 per GPU): {util}")
    reach = f"{reached:.0f} s" if reached is not None else f"not within the search ({span:.0f} s)"
    print(f"SUMMARY gpu check: search {span:.0f} s, first val/acc >= {TARGET} after {reach}; GPU {util}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
