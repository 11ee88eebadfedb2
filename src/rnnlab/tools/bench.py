"""``rnnlab bench``: one full training step, NumPy vs PyTorch vs Keras, measured side by side.

A *training step* is what every engine's ``train_step`` does: forward, softmax cross-entropy, backward
(BPTT), clipping and an Adam update, on a (T, B) batch over a 65-character vocabulary.

Method (these machines are shared and noisy, so only ratios from one run mean much):

* each (cell, engine) runs in its own worker subprocess, new for every shape, so its peak RSS is its own
  (``--quick`` reuses the workers to save start-up time; its RSS column is then a running maximum);
* every engine gets the same number of threads (``--threads``, default: the cores available to the
  process): the NumPy engine's batch shards or BLAS threads (``parallel.py``), ``torch.set_num_threads``,
  TensorFlow's intra-op pool;
* the workers are warmed up, then timed in interleaved rounds (every engine of every cell of the shape, one
  after the other: numpy, torch, keras of the first cell, then of the next, ...) of about ``round_s``
  seconds each, so engines *and cells* compare round by round (the window kernels of minGRU / minLSTM
  against the stepping cells: :func:`cross_cell_ratios`); the median time per step is reported with the
  fastest and slowest round, and a row whose rounds spread (max - min) / median by more than
  ``SPREAD_LIMIT`` is flagged: the machine's load changed under it, and its ratios should be measured again;
* the float32 GEMM peak of this machine is measured in the same run (best of several 1024^3 products),
  and each engine's achieved GFLOP/s is the model's matrix FLOPs per step divided by its time per step;
  the 1-minute load average is recorded before and after.

Model FLOPs per step (the same count for every engine, so GFLOP/s ratios equal speed ratios): forward,
per layer 2*T*B*H*(G*H) for the recurrence plus 2*T*B*H*(G*H) for the input projection of every layer
above the first, and 2*T*B*H*V for the output layer; backward twice that (the gradients with respect to
the weights and to the inputs). The first layer's input projection is a row lookup for character ids and
is not counted.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import files
from ..data.batches import Batch
from ..errors import RnnlabError, require
from ..frameworks import engine_optimizer_options
from ..memory import require_memory
from ..nn.cells import CELLS
from ..nn.model import ModelConfig, init_params, training_bytes
from ..nn.optim import make_optimizer
from ..training.engines import EngineSettings, engine_class
from ..training.parallel import resolve_threads
from .blas import openblas_kernels

VOCAB = 65
# (hidden, batch, seq, layers); (256, 32, 64, 2) is the README's Shakespeare training shape (2 x 256, batch
# 32 x 64); the long windows of T = 256 and 1,024 are where minGRU / minLSTM's window kernels pay (mincells.py)
SHAPES = ((50, 1, 10, 1), (128, 32, 64, 1), (256, 64, 100, 1), (512, 64, 100, 1), (256, 32, 64, 2),
          (256, 32, 256, 1), (256, 32, 1024, 1))
DEFAULT_CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")
QUICK_SHAPES = ((50, 1, 10, 1), (128, 32, 64, 1))
DEFAULT_ROUNDS = 7   # more rounds narrowed the median little beyond 7 (benchmarks/bench_rounds.py, performance.md)
# (slowest - fastest round) / median above this: flagged; the targets turn on ratios near 1.0x and 1.5x
SPREAD_LIMIT = 0.15
# Pause before each timing round: PyTorch's OpenMP and TensorFlow's Eigen threads spin-wait for a while after
# their work ends, and would otherwise steal the CPU from whichever engine is timed next.
SETTLE_S = 0.3
# name -> the engine it times; numpy-unsplit is the NumPy engine as it was before batch shards (the whole
# batch on one thread, BLAS on all of them), for before/after comparisons in one run.
BENCH_ENGINES = {"numpy": "numpy", "numpy-unsplit": "numpy", "torch": "torch", "keras": "keras-tape"}


@dataclass(frozen=True)
class Shape:
    hidden: int
    batch: int
    seq: int
    layers: int = 1

    @classmethod
    def parse(cls, text: str, layers: int = 1) -> Shape:
        """HIDDEN/BATCH/SEQ (``layers`` stacked layers) or HIDDEN/BATCH/SEQ/LAYERS."""
        try:
            sizes = [int(part) for part in text.split("/")]
            if len(sizes) not in (3, 4):
                raise ValueError
        except ValueError:
            raise RnnlabError(f"shape {text!r} is not HIDDEN/BATCH/SEQ[/LAYERS], e.g. 256/64/100") from None
        require(min(sizes) > 0, f"shape {text!r} must have positive sizes")
        return cls(*sizes) if len(sizes) == 4 else cls(*sizes, layers)

    def __str__(self) -> str:
        return f"{self.hidden}/{self.batch}/{self.seq}" + (f"/{self.layers}" if self.layers != 1 else "")


def flops_per_step(cell: str, shape: Shape, vocab: int = VOCAB) -> float:
    """Matrix FLOPs of one training step (forward + backward), see the module docstring. minGRU and minLSTM
    have no recurrent product: only the input projections of the layers above the first."""
    H, B, T, G, L = shape.hidden, shape.batch, shape.seq, CELLS[cell].n_gates, shape.layers
    products = (2 * L - 1) if CELLS[cell].recurrent_weights else (L - 1)
    forward = products * 2 * T * B * H * (G * H) + 2 * T * B * H * vocab
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

def set_framework_threads(engine_name: str, threads: int) -> None:
    """Give PyTorch or TensorFlow ``threads`` threads, like the NumPy engine (before either has run)."""
    if engine_name == "torch":
        import torch
        torch.set_num_threads(threads)
    elif engine_name == "keras":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def worker(engine_name: str, threads: int, device: str = "cpu") -> None:
    """``build CELL H/B/T[/L]`` makes a model and a batch; ``time N`` answers the seconds N steps took;
    ``quit`` answers the process's peak RSS. ``device``: where the torch engine computes."""
    engine = batch = state = None
    set_framework_threads(engine_name, threads)

    def steps(n):
        for _ in range(n):
            loss, _ = engine.train_step(batch, state)   # the state is not carried: every step times the same work
        float(loss)                                      # a GPU queues its steps: wait until they are done

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "build":
            cell, shape = command[1], Shape.parse(command[2])
            rng = np.random.default_rng(0)
            config = ModelConfig(vocab_size=VOCAB, cell=cell, hidden_size=shape.hidden, num_layers=shape.layers)
            params = init_params(config, rng, np.float32)
            name = BENCH_ENGINES[engine_name]
            settings = EngineSettings(clip_value=None, clip_norm=5.0, threads=threads,
                                      device=device if engine_name == "torch" else "cpu")
            adam = make_optimizer("adam", 1e-3, **engine_optimizer_options(name, "adam"))  # its own conventions
            extra = {"shard_rows": None} if engine_name == "numpy-unsplit" else {}
            engine = engine_class(name)(config, params, adam, settings, np.random.default_rng(1), **extra)
            ids = rng.integers(0, VOCAB, size=(shape.seq + 1, shape.batch))
            batch = Batch(ids[:-1], ids[1:], None, False, 0)
            state = engine.zero_state(shape.batch)
            shards = getattr(engine, "shards", None)
            how = shards.describe(shape.batch) if shards is not None else f"{threads} threads"
            print(json.dumps({"built": True, "parallelism": how}), flush=True)
        elif command[0] == "time":
            seconds = _timed(functools.partial(steps, int(command[1])))
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
    def __init__(self, engine: str, threads: int, device: str = "cpu"):
        self.engine = engine
        command = [sys.executable, "-m", "rnnlab.tools.bench", "--worker", engine, str(threads), device]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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

    def build(self, cell: str, shape: Shape) -> str:
        """-> how the engine runs this shape on its threads (e.g. "2 shards x 1 BLAS thread")."""
        return self._send(f"build {cell} {shape.hidden}/{shape.batch}/{shape.seq}/{shape.layers}")["parallelism"]

    def time(self, steps: int) -> float:
        return self._send(f"time {steps}")["seconds"]

    def peak_rss_mb(self) -> float:
        peak = self._send("quit")["peak_rss_mb"]
        self.proc.wait(timeout=60)
        return peak

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


FRAMEWORK_MODULE = {"numpy": "numpy", "numpy-unsplit": "numpy", "torch": "torch", "keras": "tensorflow"}


def available_engines(requested) -> list[str]:
    """The requested engines whose framework is installed (numpy always is). Only looked up, not imported:
    the parent process stays small, and each worker imports just its own framework."""
    for name in requested:
        require(name in BENCH_ENGINES, f"unknown bench engine {name!r}: use {', '.join(BENCH_ENGINES)}")
    return [name for name in requested if importlib.util.find_spec(FRAMEWORK_MODULE[name]) is not None]


def bench_one(cell: str, shape: Shape, workers: list, rounds: int, round_s: float) -> list[dict]:
    """Interleaved timing of every engine on one (cell, shape) -> one row per engine (RSS added later)."""
    return bench_interleaved([(cell, w) for w in workers], shape, rounds, round_s)


def bench_interleaved(entries: list, shape: Shape, rounds: int, round_s: float) -> list[dict]:
    """Interleaved timing of (cell, worker) entries on one shape -- every engine of every cell, round i of each
    one after the other, so that cells as well as engines can be compared round by round -> one row per
    entry (RSS added later)."""
    steps, times, how = {}, {index: [] for index in range(len(entries))}, {}
    for index, (cell, w) in enumerate(entries):   # build, warm up, and find the step count filling one round
        how[index] = w.build(cell, shape)
        w.time(2)
        per_step = max(w.time(3) / 3, 1e-6)
        steps[index] = max(1, int(round_s / per_step))
    for _ in range(rounds):
        for index, (_, w) in enumerate(entries):
            time.sleep(SETTLE_S)
            times[index].append(w.time(steps[index]) / steps[index])
    rows = []
    for index, (cell, w) in enumerate(entries):
        rounds_s = times[index]
        seconds = statistics.median(rounds_s)
        rows.append({"cell": cell, "hidden": shape.hidden, "batch": shape.batch, "seq": shape.seq,
                     "layers": shape.layers, "engine": w.engine, "parallelism": how[index],
                     "seconds_per_step": seconds, "min_seconds_per_step": min(rounds_s),
                     "max_seconds_per_step": max(rounds_s), "round_seconds_per_step": rounds_s,
                     "spread": (max(rounds_s) - min(rounds_s)) / seconds,
                     "tokens_per_s": shape.batch * shape.seq / seconds,
                     "gflops": flops_per_step(cell, shape) / seconds / 1e9,
                     "rounds": rounds, "steps_per_round": steps[index]})
    for row in rows:
        row["noisy"] = row["spread"] > SPREAD_LIMIT
    return rows


def add_ratios(rows: list[dict]) -> None:
    """NumPy's speed-up and memory ratio against each other engine measured on the same (cell, shape): the
    ratio of the medians, and the range of the per-round ratios (round i of numpy against round i of the
    other engine, timed one after the other: a slow change of the machine's load cancels in each)."""
    numpy_row = next((r for r in rows if r["engine"] == "numpy"), None)
    for row in rows:
        if numpy_row is not None and row is not numpy_row:
            numpy_row[f"speedup_vs_{row['engine']}"] = numpy_row["tokens_per_s"] / row["tokens_per_s"]
            paired = [other / mine for mine, other in zip(numpy_row["round_seconds_per_step"],
                                                          row["round_seconds_per_step"], strict=True)]
            numpy_row[f"speedup_range_vs_{row['engine']}"] = [min(paired), max(paired)]
            numpy_row[f"rss_ratio_vs_{row['engine']}"] = numpy_row["peak_rss_mb"] / row["peak_rss_mb"]


def cross_cell_ratios(rows: list[dict]) -> list[dict]:
    """Every row of a cell that runs a window at a time (minGRU, minLSTM) against every row of a cell that
    steps (RNN, LSTM, GRU) on the same shape, timed interleaved in the same rounds: {shape, cell, engine,
    vs_cell, vs_engine, speedup (ratio of the medians), speedup_range (of the per-round ratios)}."""
    found = []
    for row in rows:
        if CELLS[row["cell"]].window_forward is None:
            continue
        for other in rows:
            same_shape = all(other[k] == row[k] for k in ("hidden", "batch", "seq", "layers"))
            if not same_shape or CELLS[other["cell"]].window_forward is not None:
                continue
            paired = [theirs / mine for mine, theirs in zip(row["round_seconds_per_step"],
                                                            other["round_seconds_per_step"], strict=True)]
            found.append({"shape": str(Shape(row["hidden"], row["batch"], row["seq"], row["layers"])),
                          "cell": row["cell"], "engine": row["engine"], "vs_cell": other["cell"],
                          "vs_engine": other["engine"], "speedup": row["tokens_per_s"] / other["tokens_per_s"],
                          "speedup_range": [min(paired), max(paired)]})
    return found


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): how busy the machine was."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_bench(cells, shapes, engines, rounds: int = DEFAULT_ROUNDS, round_s: float = 0.5,
              fresh_workers: bool = True, on_row=None, threads: int | None = None,
              device: str = "cpu") -> dict:
    """Every (shape, cell) for every installed engine, each with ``threads`` threads (None: the cores
    available), the torch engine on ``device``. With ``fresh_workers`` each (shape, cell) gets new worker
    processes, so peak RSS is that configuration's own; without (``--quick``) the workers are reused and the
    reported peak RSS is the largest seen so far in that worker."""
    engines = available_engines(engines)
    threads = resolve_threads(threads)
    load_before = load_average()
    peak = gemm_peak_gflops()
    rows, workers = [], {}
    try:
        for shape in shapes:                    # every cell and engine of a shape, timed in the same rounds
            if fresh_workers or not workers:
                for w in workers.values():
                    w.kill()
                workers = {(cell, engine): Worker(engine, threads, device) for cell in cells for engine in engines}
            group = bench_interleaved([(cell, w) for (cell, _), w in workers.items()], shape, rounds, round_s)
            if fresh_workers:
                rss = {key: w.peak_rss_mb() for key, w in workers.items()}
            else:
                rss = {key: w._send("rss")["peak_rss_mb"] for key, w in workers.items()}
            for row in group:
                row["peak_rss_mb"] = rss[row["cell"], row["engine"]]
            for cell in cells:
                add_ratios([row for row in group if row["cell"] == cell])
            for row in group:
                rows.append(row)
                if on_row:
                    on_row(row)
    finally:
        for w in workers.values():
            w.kill()
    peak = max(peak, gemm_peak_gflops())  # the machine's best, measured before and after the engines
    for row in rows:
        row["gemm_peak_gflops"] = peak
        row["peak_fraction"] = row["gflops"] / peak
    return {"gemm_peak_gflops": peak, "blas_kernels": openblas_kernels(), "engines": engines, "threads": threads,
            "cores_available": resolve_threads(None), "load_average": [load_before, load_average()],
            "spread_limit": SPREAD_LIMIT, "rows": rows, "cross_cell": cross_cell_ratios(rows)}


def paired_range(row: dict, engine: str) -> str:
    """" [low-high]": the range of the per-round speed-ups against ``engine``, where the row has it."""
    low_high = row.get(f"speedup_range_vs_{engine}")
    return f" [{low_high[0]:.2f}-{low_high[1]:.2f}]" if low_high else ""


def format_table(result: dict) -> str:
    kernels = result.get("blas_kernels") or "unknown"
    load = ", ".join("?" if x is None else f"{x:.1f}" for x in result.get("load_average", []))
    lines = [f"float32 GEMM peak (NumPy BLAS, this run): {result['gemm_peak_gflops']:.1f} GFLOP/s "
             f"(OpenBLAS kernels: {kernels}); {result.get('threads', '?')} threads per engine "
             f"({result.get('cores_available', '?')} cores available); load average before, after: {load}",
             f"ms/step: median (fastest-slowest) of {result['rows'][0]['rounds'] if result['rows'] else 0} "
             f"interleaved rounds; ! = rounds spread by more than "
             f"{100 * result.get('spread_limit', SPREAD_LIMIT):.0f} % "
             "of the median: the load changed, measure that row again; [a-b]: the range of the per-round speed-ups",
             "",
             "| cell | H/B/T[/L] | engine | threads | ms/step | tokens/s | GFLOP/s | % peak | peak RSS MB "
             "| numpy speed-up |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        speedups = ", ".join(f"{r[k]:.2f}x vs {k[len('speedup_vs_'):]}" + paired_range(r, k[len('speedup_vs_'):])
                             for k in r if k.startswith("speedup_vs_"))
        shape = str(Shape(r["hidden"], r["batch"], r["seq"], r.get("layers", 1)))
        timing = (f"{1e3 * r['seconds_per_step']:.1f} ({1e3 * r['min_seconds_per_step']:.1f}-"
                  f"{1e3 * r['max_seconds_per_step']:.1f}){' !' if r['noisy'] else ''}")
        lines.append(f"| {r['cell']} | {shape} | {r['engine']} | {r['parallelism']} | {timing} | "
                     f"{r['tokens_per_s']:,.0f} | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {speedups} |")
    if result.get("cross_cell"):
        lines += ["", "Window kernels against stepping cells, same shape, same rounds (speed-up: tokens/s ratio of "
                  "the medians [range of the per-round ratios]):", "",
                  "| H/B/T[/L] | cell, engine | against | speed-up |", "|---|---|---|---:|"]
        lines += [f"| {c['shape']} | {c['cell']}, {c['engine']} | {c['vs_cell']}, {c['vs_engine']} | "
                  f"{c['speedup']:.2f}x [{c['speedup_range'][0]:.2f}-{c['speedup_range'][1]:.2f}] |"
                  for c in result["cross_cell"]]
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])


def require_shapes_fit(cells: list[str], shapes: list) -> None:
    """Refuse, before any timing, a shape whose training step would not fit in memory (twice NumPy's need:
    a framework engine holds more)."""
    for cell in cells:
        for shape in shapes:
            config = ModelConfig(VOCAB, cell, shape.hidden, shape.layers)
            need = training_bytes(config, shape.batch, shape.seq, 4, 2)
            require_memory(2 * need, f"timing {cell} at shape {shape} (twice NumPy's memory: a framework engine "
                           "holds more)", "give smaller --shapes")


def write_json(path, result: dict, overwrite: bool = False) -> Path:
    """The bench's rows as JSON through the output guard, marked as rnnlab's (files.BENCH recognises it)."""
    document = {"generator": f"{files.GENERATOR} bench", **result}
    return files.write_file(path, json.dumps(document, indent=1).encode("utf-8"), files.BENCH, "--json", overwrite)
