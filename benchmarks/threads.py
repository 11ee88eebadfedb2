"""Batch shards on threads against the unsplit step, timed interleaved in one process.

    python benchmarks/threads.py                               # the bench's LSTM/GRU shapes, 2 threads
    python benchmarks/threads.py --specs lstm/128/16/64/1,lstm/128/32/64/1 --threads 2

For each CELL/HIDDEN/BATCH/SEQ/LAYERS, three NumPy engines take turns on the same batch, one training step
(forward, loss, BPTT, clip, Adam) at a time, ``--rounds`` times:

* ``1 thread``   -- the unsplit step, BLAS on one thread (``--threads 1``);
* ``unsplit``    -- the unsplit step, BLAS on N threads (the engine before batch shards);
* ``shards``     -- N batch shards on N threads, one BLAS thread each (``parallel.py``).

It prints the median milliseconds per step, the median of the per-round ratios and the ratio of the fastest
rounds (on a shared machine the fastest round of each is the one least disturbed by other processes; with
many short rounds it is the better estimate of what the machine can do alone). The shard size at which
``shards`` stops beating ``unsplit`` is what ``parallel.plan_shards`` is chosen from.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from rnnlab.data.batches import Batch
from rnnlab.nn.model import ModelConfig, init_params
from rnnlab.nn.optim import make_optimizer
from rnnlab.training.engines import NumpyEngine
from rnnlab.training.parallel import available_cores
from rnnlab.training.trainer import TrainConfig

SPECS = "lstm/128/32/64/1,lstm/256/64/100/1,lstm/512/64/100/1,lstm/256/32/64/2,gru/256/32/64/2"


def make_engine(cell, H, B, T, L, threads, shard_rows):
    config = ModelConfig(vocab_size=65, cell=cell, hidden_size=H, num_layers=L)
    rng = np.random.default_rng(0)
    params = init_params(config, rng, np.float32)
    engine = NumpyEngine(config, params, make_optimizer("adam", 1e-3), TrainConfig(clip_value=None, clip_norm=5.0,
                         threads=threads), np.random.default_rng(1), shard_rows=shard_rows)
    ids = rng.integers(0, 65, size=(T + 1, B))
    batch = Batch(ids[:-1], ids[1:], None, False, 0)
    state = engine.zero_state(B)
    return lambda: engine.train_step(batch, state)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default=SPECS, help="comma-separated CELL/HIDDEN/BATCH/SEQ/LAYERS")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3, help="training steps per engine and round")
    args = parser.parse_args(argv)
    print(f"{args.threads} threads, {available_cores()} cores available, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps\n")
    print("| cell/H/B/T/L | 1 thread ms | unsplit ms | shards ms | shards ÷ unsplit speed-up (round range) | "
          "shards ÷ 1 thread | fastest rounds: 1 thread / unsplit / shards ms | shards ÷ unsplit, fastest |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for spec in args.specs.split(","):
        cell, *sizes = spec.split("/")
        H, B, T, L = (int(x) for x in sizes)
        variants = {"one": make_engine(cell, H, B, T, L, 1, None),
                    "unsplit": make_engine(cell, H, B, T, L, args.threads, None),
                    "shards": make_engine(cell, H, B, T, L, args.threads, 1)}
        times = {name: [] for name in variants}
        for step in variants.values():                           # warm up: workspaces, thread pool
            step(), step()
        for _ in range(args.rounds):
            for name, step in variants.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[name].append((time.perf_counter() - start) / args.steps)
        median = {name: statistics.median(t) for name, t in times.items()}
        paired = sorted(u / s for u, s in zip(times["unsplit"], times["shards"], strict=True))
        versus_one = statistics.median(o / s for o, s in zip(times["one"], times["shards"], strict=True))
        fastest = {name: min(t) for name, t in times.items()}
        print(f"| {spec} | {1e3 * median['one']:.1f} | {1e3 * median['unsplit']:.1f} | {1e3 * median['shards']:.1f} | "
              f"**{statistics.median(paired):.2f}×** ({paired[0]:.2f}–{paired[-1]:.2f}) | {versus_one:.2f}× | "
              f"{1e3 * fastest['one']:.1f} / {1e3 * fastest['unsplit']:.1f} / {1e3 * fastest['shards']:.1f} | "
              f"{fastest['unsplit'] / fastest['shards']:.2f}× |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
