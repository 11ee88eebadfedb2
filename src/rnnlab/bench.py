"""``rnnlab bench``: one full training step, NumPy vs PyTorch vs Keras, measured side by side.

A *training step* is what every engine's ``train_step`` does: forward, softmax cross-entropy, backward
(BPTT), clipping and an Adam update, on a (T, B) batch over a 65-character vocabulary.

Method (these machines are shared and noisy, so only ratios from one run mean much):

* each engine runs in its own worker subprocess, new for every (cell, shape), so its peak RSS is its own
  (``--quick`` reuses the workers to save start-up time; its RSS column is then a running maximum);
* the workers are warmed up, then timed in interleaved rounds (numpy, torch, keras, numpy, ...) of about
  ``round_s`` seconds each, and the median time per step is reported;
* the float32 GEMM peak of this machine is measured in the same run (best of several 1024^3 products),
  and each engine's achieved GFLOP/s is the model's matrix FLOPs per step divided by its time per step.

Model FLOPs per step (the same count for every engine, so GFLOP/s ratios equal speed ratios):
forward 2*T*B*H*(G*H) for the recurrence plus 2*T*B*H*V for the output layer; backward twice that (the
gradients with respect to the weights and to the inputs). The input projection is a row lookup for
character ids and is not counted.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batches import Batch
from .blas import openblas_kernels
from .cells import CELLS
from .engines import engine_class
from .errors import RnnlabError, require
from .model import ModelConfig, init_params
from .frameworks import engine_optimizer_options
from .optim import make_optimizer
from .train import TrainConfig

VOCAB = 65
SHAPES = ((50, 1, 10), (128, 32, 64), (256, 64, 100), (512, 64, 100))   # (hidden, batch, seq)
QUICK_SHAPES = ((50, 1, 10), (128, 32, 64))
# Pause before each timing round: PyTorch's OpenMP and TensorFlow's Eigen threads spin-wait for a while after
# their work ends, and would otherwise steal the CPU from whichever engine is timed next.
SETTLE_S = 0.3
BENCH_ENGINES = {"numpy": "numpy", "torch": "torch", "keras": "keras-tape"}  # keras: its compiled tape loop


@dataclass(frozen=True)
class Shape:
    hidden: int
    batch: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> "Shape":
        try:
            hidden, batch, seq = (int(part) for part in text.split("/"))
        except ValueError:
            raise RnnlabError(f"shape {text!r} is not HIDDEN/BATCH/SEQ, e.g. 256/64/100") from None
        require(min(hidden, batch, seq) > 0, f"shape {text!r} must have positive sizes")
        return cls(hidden, batch, seq)

    def __str__(self) -> str:
        return f"{self.hidden}/{self.batch}/{self.seq}"


def flops_per_step(cell: str, shape: Shape, vocab: int = VOCAB) -> float:
    """Matrix FLOPs of one training step (forward + backward), see the module docstring."""
    H, B, T, G = shape.hidden, shape.batch, shape.seq, CELLS[cell].n_gates
    forward = 2 * T * B * H * (G * H) + 2 * T * B * H * vocab
    return 3.0 * forward


def gemm_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n x n matrix product with NumPy's BLAS (all its threads)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- the worker: one engine, answering build / time / quit commands on stdin ------------------------------

def worker(engine_name: str) -> None:
    """``build CELL H/B/T`` makes a model and a batch; ``time N`` answers the seconds N steps took;
    ``quit`` answers the process's peak RSS."""
    engine = batch = state = None

    def steps(n):
        for _ in range(n):
            engine.train_step(batch, state)   # the state is not carried: every step times the same work

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "build":
            cell, shape = command[1], Shape.parse(command[2])
            rng = np.random.default_rng(0)
            config = ModelConfig(vocab_size=VOCAB, cell=cell, hidden_size=shape.hidden)
            params = init_params(config, rng, np.float32)
            train_config = TrainConfig(clip_value=None, clip_norm=5.0)
            name = BENCH_ENGINES[engine_name]
            adam = make_optimizer("adam", 1e-3, **engine_optimizer_options(name, "adam"))  # its own conventions
            engine = engine_class(name)(config, params, adam, train_config, np.random.default_rng(1))
            ids = rng.integers(0, VOCAB, size=(shape.seq + 1, shape.batch))
            batch = Batch(ids[:-1], ids[1:], None, False, 0)
            state = engine.zero_state(shape.batch)
            print(json.dumps({"built": True}), flush=True)
        elif command[0] == "time":
            seconds = _timed(lambda: steps(int(command[1])))
            print(json.dumps({"seconds": seconds}), flush=True)
        elif command[0] in ("rss", "quit"):
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)
            if command[0] == "quit":
                return


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM from /proc (ru_maxrss would be wrong here: a child
    inherits its parent's ru_maxrss across fork + exec); elsewhere ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024                          # kB -> MB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)         # bytes on macOS, kB elsewhere


class Worker:
    def __init__(self, engine: str):
        self.engine = engine
        self.proc = subprocess.Popen([sys.executable, "-m", "rnnlab.bench", "--worker", engine],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self._read()

    def _send(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            last = (self.proc.stderr.read().strip().splitlines() or ["no message"])[-1]
            raise RnnlabError(f"bench worker for {self.engine} failed: {last[-300:]}")
        return json.loads(line)

    def build(self, cell: str, shape: Shape) -> None:
        self._send(f"build {cell} {shape}")

    def time(self, steps: int) -> float:
        return self._send(f"time {steps}")["seconds"]

    def peak_rss_mb(self) -> float:
        peak = self._send("quit")["peak_rss_mb"]
        self.proc.wait(timeout=60)
        return peak

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


FRAMEWORK_MODULE = {"numpy": "numpy", "torch": "torch", "keras": "tensorflow"}


def available_engines(requested) -> list[str]:
    """The requested engines whose framework is installed (numpy always is). Only looked up, not imported:
    the parent process stays small, and each worker imports just its own framework."""
    for name in requested:
        require(name in BENCH_ENGINES, f"unknown bench engine {name!r}: use {', '.join(BENCH_ENGINES)}")
    return [name for name in requested if importlib.util.find_spec(FRAMEWORK_MODULE[name]) is not None]


def bench_one(cell: str, shape: Shape, workers: list, rounds: int, round_s: float) -> list[dict]:
    """Interleaved timing of every engine on one (cell, shape) -> one row per engine (RSS added later)."""
    steps, times = {}, {w.engine: [] for w in workers}
    for w in workers:                           # build, warm up, and find the step count filling one round
        w.build(cell, shape)
        w.time(2)
        per_step = max(w.time(3) / 3, 1e-6)
        steps[w.engine] = max(1, int(round_s / per_step))
    for _ in range(rounds):
        for w in workers:
            time.sleep(SETTLE_S)
            times[w.engine].append(w.time(steps[w.engine]) / steps[w.engine])
    flops = flops_per_step(cell, shape)
    rows = []
    for w in workers:
        seconds = statistics.median(times[w.engine])
        rows.append({"cell": cell, "hidden": shape.hidden, "batch": shape.batch, "seq": shape.seq,
                     "engine": w.engine, "seconds_per_step": seconds,
                     "tokens_per_s": shape.batch * shape.seq / seconds, "gflops": flops / seconds / 1e9,
                     "rounds": rounds, "steps_per_round": steps[w.engine]})
    return rows


def add_ratios(rows: list[dict]) -> None:
    """NumPy's speed-up and memory ratio against each framework measured on the same (cell, shape)."""
    numpy_row = next((r for r in rows if r["engine"] == "numpy"), None)
    for row in rows:
        if numpy_row is not None and row is not numpy_row:
            numpy_row[f"speedup_vs_{row['engine']}"] = numpy_row["tokens_per_s"] / row["tokens_per_s"]
            numpy_row[f"rss_ratio_vs_{row['engine']}"] = numpy_row["peak_rss_mb"] / row["peak_rss_mb"]


def run_bench(cells, shapes, engines, rounds: int = 5, round_s: float = 0.5, fresh_workers: bool = True,
              on_row=None) -> dict:
    """Every (shape, cell) for every installed engine. With ``fresh_workers`` each (shape, cell) gets new
    worker processes, so peak RSS is that configuration's own; without (``--quick``) the workers are reused
    and the reported peak RSS is the largest seen so far in that worker."""
    engines = available_engines(engines)
    peak = gemm_peak_gflops()
    rows, workers = [], []
    try:
        for shape in shapes:
            for cell in cells:
                if fresh_workers or not workers:
                    workers = [Worker(engine) for engine in engines]
                group = bench_one(cell, shape, workers, rounds, round_s)
                if fresh_workers:
                    rss = {w.engine: w.peak_rss_mb() for w in workers}
                else:
                    rss = {w.engine: w._send("rss")["peak_rss_mb"] for w in workers}
                for row in group:
                    row["peak_rss_mb"] = rss[row["engine"]]
                add_ratios(group)
                for row in group:
                    rows.append(row)
                    if on_row:
                        on_row(row)
    finally:
        for w in workers:
            w.kill()
    peak = max(peak, gemm_peak_gflops())  # the machine's best, measured before and after the engines
    for row in rows:
        row["gemm_peak_gflops"] = peak
        row["peak_fraction"] = row["gflops"] / peak
    return {"gemm_peak_gflops": peak, "blas_kernels": openblas_kernels(), "engines": engines, "rows": rows}


def format_table(result: dict) -> str:
    kernels = result.get("blas_kernels") or "unknown"
    lines = [f"float32 GEMM peak (NumPy BLAS, this run): {result['gemm_peak_gflops']:.1f} GFLOP/s "
             f"(OpenBLAS kernels: {kernels})", "",
             "| cell | H/B/T | engine | tokens/s | GFLOP/s | % peak | peak RSS MB | numpy speed-up |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        speedups = ", ".join(f"{r[k]:.2f}x vs {k[len('speedup_vs_'):]}" for k in r if k.startswith("speedup_vs_"))
        lines.append(f"| {r['cell']} | {r['hidden']}/{r['batch']}/{r['seq']} | {r['engine']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {speedups} |")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    worker(sys.argv[2])
