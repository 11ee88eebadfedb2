"""Does the LSTM stay healthy from every seed? Issue 13's check of the health guard's premise.

    python benchmarks/health_seeds.py                    # 10 seeds x 300 steps, about 10-20 minutes
    python benchmarks/health_seeds.py --seeds 3 --steps 100 --init blockorth

Runs the issue's command -- the shipped Shakespeare, a 2 x 256 LSTM, batch 32 x 64, Adam 2e-3, global-norm
clip 5, no dropout -- once per seed, and prints per seed the validation loss (the whole held-out split)
against the smoothed training loss at the last step, their gap, the largest |state| per layer, and any
warning the health guard gave. The check: no run with validation above training + 0.5 nats.
"""

from __future__ import annotations

import argparse
import json
import time

from rnnlab.training.config import TrainConfig
from rnnlab.training.health import MAX_GAP
from rnnlab.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--init", default="rnnlab")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    print("| seed | validation | smoothed training | gap | largest |state| per layer | warnings | seconds |")
    print("|---:|---:|---:|---:|---|---|---:|")
    for seed in range(args.seeds):
        config = TrainConfig(dataset="shakespeare", cell="lstm", num_layers=2, hidden_size=256, batch_size=32,
                             seq_length=64, optimizer="adam", learning_rate=2e-3, clip_value=None, clip_norm=5.0,
                             iterations=args.steps, sample_every=args.steps, eval_every=args.steps,
                             eval_tokens=None, num_samples=1, sample_length=10, seed=seed, init=args.init)
        reports, start = [], time.perf_counter()
        Trainer(config, reports.append).run()
        last = reports[-1]
        row = {"seed": seed, "val_loss": last.val_loss, "smooth_loss": last.smooth_loss,
               "gap": last.val_loss - last.smooth_loss, "state_max": last.state_max,
               "warnings": [w for r in reports for w in r.warnings], "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"| {seed} | {row['val_loss']:.3f} | {row['smooth_loss']:.3f} | {row['gap']:+.3f} | "
              f"{', '.join(f'{x:.1f}' for x in row['state_max'])} | {len(row['warnings']) or 'none'} | "
              f"{row['seconds']:.0f} |", flush=True)
    worst = max(row["gap"] for row in rows)
    print(f"\nlargest gap {worst:+.3f} nats: {'no' if worst <= MAX_GAP else 'SOME'} run above training + {MAX_GAP}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
