"""How many interleaved rounds ``rnnlab bench`` needs for a stable median, measured on this machine.

    python benchmarks/bench_rounds.py                            # LSTM 256/64/100, numpy + torch, 25 rounds
    python benchmarks/bench_rounds.py --cell gru --shape 256/32/64/2 --rounds 31

Times one (cell, shape) with ``rnnlab bench``'s own workers and method (interleaved rounds of ~0.5 s with a
settling pause), many rounds, then asks of those rounds: had the bench run only k of them, how far could its
median -- and the NumPy ÷ PyTorch ratio -- have landed from the median of all of them? It draws many random
k-subsets (rounds kept in their pairs, as the bench takes them) and prints the 5th-95th percentile range of
the k-round median relative to the all-round median, and the same for the ratio, for k = 3, 5, 7, 9, 11.
Also the spread (max - min) / median of k rounds that the bench's flag is based on.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from rnnlab.tools.bench import Shape, Worker, bench_one
from rnnlab.training.parallel import resolve_threads


def percentile_range(values, reference) -> str:
    low, high = np.percentile(np.asarray(values) / reference - 1.0, [5, 95])
    return f"{100 * low:+.1f} … {100 * high:+.1f} %"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--shape", default="256/64/100")
    parser.add_argument("--engines", default="numpy,torch")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--draws", type=int, default=4000)
    args = parser.parse_args(argv)
    shape, engines = Shape.parse(args.shape), args.engines.split(",")
    print(f"{args.cell} {shape}, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    workers = [Worker(engine, resolve_threads(None)) for engine in engines]
    try:
        rows = bench_one(args.cell, shape, workers, args.rounds, 0.5)
    finally:
        for worker in workers:
            worker.kill()
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    rounds = {row["engine"]: np.asarray(row["round_seconds_per_step"]) for row in rows}
    ratio_all = (statistics.median(rounds[engines[1]]) / statistics.median(rounds[engines[0]])
                 if len(engines) > 1 else None)
    rng = np.random.default_rng(0)
    print(f"| k rounds | {engines[0]} median vs all rounds (5-95 %) | " +
          (f"{engines[0]} ÷ {engines[1]} vs all rounds (5-95 %) | " if ratio_all else "") +
          "median spread of k rounds | rows over 15 % |")
    print("|---:|---|" + ("---|" if ratio_all else "") + "---:|---:|")
    for k in (3, 5, 7, 9, 11):
        if k > args.rounds:
            break
        medians, ratios, spreads = [], [], []
        for _ in range(args.draws):
            pick = rng.choice(args.rounds, size=k, replace=False)
            own = np.median(rounds[engines[0]][pick])
            medians.append(own)
            spreads.append((rounds[engines[0]][pick].max() - rounds[engines[0]][pick].min()) / own)
            if ratio_all:
                ratios.append(np.median(rounds[engines[1]][pick]) / own)
        line = f"| {k} | {percentile_range(medians, np.median(rounds[engines[0]]))} | "
        if ratio_all:
            line += f"{percentile_range(ratios, ratio_all)} | "
        line += f"{100 * np.median(spreads):.0f} % | {100 * np.mean(np.asarray(spreads) > 0.15):.0f} % |"
        print(line)
    for engine in engines:
        times = 1e3 * rounds[engine]
        print(f"\n{engine} rounds (ms/step): " + ", ".join(f"{t:.1f}" for t in times))


if __name__ == "__main__":
    main()
