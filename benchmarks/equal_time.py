"""Validation loss of several runs at equal training time, from their ``--metrics_file``s (docs/results.md).

    python benchmarks/equal_time.py runs/mingru/metrics.jsonl runs/lstm/metrics.jsonl --minutes 5,10,15,20

For each run and each budget: the last validation at or before that many minutes of training (``elapsed_s``,
training steps only), its step, and the best validation so far; then each run's best overall. A step that a
resumed run repeats counts once, its latest record (as ``rnnlab plot`` reads them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def validations(path: Path) -> list[dict]:
    """The records of a metrics file that carry a validation loss, in step order, the latest of a repeated step."""
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("val_loss") is not None:
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def at_budget(records: list[dict], seconds: float) -> tuple[dict | None, float | None]:
    """(the last record within ``seconds`` of training, the best validation loss within it)."""
    within = [r for r in records if r["elapsed_s"] <= seconds]
    return (within[-1], min(r["val_loss"] for r in within)) if within else (None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path)
    parser.add_argument("--minutes", default="5,10,15,20", help="comma-separated training-time budgets")
    parser.add_argument("--labels", default=None, help="comma-separated names (default: each file's folder)")
    args = parser.parse_args()
    labels = args.labels.split(",") if args.labels else [p.parent.name for p in args.metrics]
    budgets = [float(m) for m in args.minutes.split(",")]
    print("| run | " + " | ".join(f"{m:g} min: val (step)" for m in budgets) + " | best (step, minutes) |")
    print("|---|" + "---:|" * (len(budgets) + 1))
    for label, path in zip(labels, args.metrics, strict=True):
        records = validations(path)
        cells = []
        for minutes in budgets:
            last, _ = at_budget(records, 60 * minutes)
            cells.append("" if last is None else f"{last['val_loss']:.3f} ({last['step']:,})")
        best = min(records, key=lambda r: r["val_loss"])
        cells.append(f"**{best['val_loss']:.3f}** ({best['step']:,}, {best['elapsed_s'] / 60:.1f})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
