"""How many bytes an LSTM time step moves, against this machine's memory bandwidth.

    python benchmarks/lstm_bytes.py                       # H=256, B=64 (the 256/64/100 benchmark), float32
    python benchmarks/lstm_bytes.py --hidden 256 --batch 32

1. Bandwidth: the best of many ``np.copyto`` of a 256 MB array (main memory) and of an array the size of
   one (B, 4H) gate block (it stays in the core's cache), and the time of one tanh per element.
2. Bytes: every NumPy call of one forward and one backward step is counted -- arrays read + written --
   by running the step on an ``ndarray`` subclass whose ``__array_ufunc__`` (every ufunc, operators and
   ``np.matmul`` included) and ``__setitem__`` record the sizes. The count follows the code as it is, for
   the step in ``cells.py`` and for the step it replaced (kept below as ``*_before``).
3. Time: T steps forward and backward of each version, interleaved, best and median of several runs, with
   the recurrent products ``h Wh`` and ``dz Wh^T`` timed alone so the element-wise part can be set against
   the bytes it moves.

Everything runs on one thread (BLAS included): the figures are those of one core, or of one batch shard.
Timings are best-of-N: on a shared machine the minimum is the closest to an unloaded run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from rnnlab.cells import CELLS, _lstm_block_constants, new_grad_out, new_step_out, LSTM_CACHE
from rnnlab.parallel import blas_threads
from rnnlab.recurrence import Workspace, sequence_backward, sequence_forward


# ---- the step as it was before issue 17 (for the byte count and the timing) -----------------------------

def lstm_step_forward_before(zx, state, p, out=None):
    h_prev, c_prev = state
    H = h_prev.shape[1]
    h, gates, c, tc = out or new_step_out(LSTM_CACHE, *h_prev.shape, zx.dtype)
    scale, offset, _ = _lstm_block_constants(H, zx.dtype)
    np.add(zx, h_prev @ p["Wh"], out=gates)
    gates *= scale
    np.tanh(gates, out=gates)
    gates *= scale
    gates += offset
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    np.multiply(f, c_prev, out=c)
    c += i * g
    np.tanh(c, out=tc)
    np.multiply(o, tc, out=h)
    return (h, c), (c_prev, gates, tc)


def lstm_step_backward_before(dstate, cache, p, out=None):
    dh, dc_next = dstate
    c_prev, gates, tc = cache
    H = tc.shape[1]
    k = np.zeros(4 * H, dtype=gates.dtype)
    k[2 * H:3 * H] = 1.0
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dc = 1.0 - tc * tc
    dc *= o
    dc *= dh
    dc += dc_next
    dc_prev = dc * f
    local = np.subtract(1.0, gates)
    local *= gates + k
    dg = dc * i
    dz, _ = out or new_grad_out(tc, 4, False)
    np.multiply(dc, g, out=dz[:, :H])
    np.multiply(dc, c_prev, out=dz[:, H:2 * H])
    dz[:, 2 * H:3 * H] = dg
    np.multiply(dh, tc, out=dz[:, 3 * H:])
    dz *= local
    return dz, dz, (dz @ p["Wh"].T, dc_prev)


LSTM_BEFORE = dataclasses.replace(CELLS["lstm"], step_forward=lstm_step_forward_before,
                                  step_backward=lstm_step_backward_before)


# ---- 1. bandwidth ---------------------------------------------------------------------------------------

def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """GB/s of np.copyto (bytes read + written) for an array of ``nbytes``."""
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    inner = max(1, (64 << 20) // nbytes)                      # enough calls per timing to dwarf the timer
    seconds = best_time(lambda: [np.copyto(b, a) for _ in range(inner)], repeats) / inner
    return 2 * nbytes / seconds / 1e9


def tanh_ns_per_element(n: int, repeats: int) -> float:
    a = np.linspace(-3, 3, n, dtype=np.float32)
    return best_time(lambda: np.tanh(a, out=a.copy()), repeats) / n * 1e9


# ---- 2. bytes per call ----------------------------------------------------------------------------------

class Counted(np.ndarray):
    """An ndarray that logs (call, bytes read, bytes written) for every ufunc call and item assignment."""

    log: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, Counted) else x for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Counted) else o for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        read = sum(x.nbytes for x in plain if isinstance(x, np.ndarray))
        written = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
        Counted.log.append((ufunc.__name__, read, written))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(Counted) if isinstance(result, np.ndarray) else result

    def __setitem__(self, key, value):
        value = np.asarray(value)
        Counted.log.append(("copy", value.nbytes, self.view(np.ndarray)[key].nbytes))
        self.view(np.ndarray)[key] = value.view(np.ndarray)


def count_step(forward, backward, B: int, H: int) -> dict:
    """-> {"forward"/"backward": [(call, read, written), ...]} for one step, gates over zx as in training."""
    rng = np.random.default_rng(0)
    counted = lambda shape: rng.standard_normal(shape).astype(np.float32).view(Counted)
    p = {"Wh": counted((H, 4 * H))}
    zx, h, c = counted((B, 4 * H)), counted((B, H)), counted((B, H))
    out = (counted((B, H)), zx, counted((B, H)), counted((B, H)))
    Counted.log = []
    _, cache = forward(zx, (h, c), p, out)
    calls = {"forward": Counted.log}
    Counted.log = []
    backward((counted((B, H)), counted((B, H))), cache, p, (cache[1], cache[1]))
    calls["backward"] = Counted.log
    return calls


def split_bytes(calls) -> tuple[int, int, int]:
    """-> (element-wise bytes, matmul bytes, number of element-wise calls)."""
    elementwise = sum(r + w for name, r, w in calls if name != "matmul")
    matmul = sum(r + w for name, r, w in calls if name == "matmul")
    return elementwise, matmul, sum(1 for name, _, _ in calls if name != "matmul")


# ---- 3. time --------------------------------------------------------------------------------------------

def sequence_times(cell, T, B, H, runs: int):
    """(forward seconds, backward seconds) lists of T steps with a Workspace, as in training."""
    rng = np.random.default_rng(1)
    p = {k: v.astype(np.float32) for k, v in CELLS["lstm"].init(H, H, rng).items()}
    zx_source = rng.standard_normal((T, B, 4 * H)).astype(np.float32)
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)
    state0 = (np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
    ws = Workspace()
    forward, backward = [], []
    for _ in range(runs):
        zx = ws.empty("zx", zx_source.shape, np.float32)
        np.copyto(zx, zx_source)
        start = time.perf_counter()
        _, _, cache = sequence_forward(cell, zx, state0, p, ws)
        middle = time.perf_counter()
        sequence_backward(cell, dhs, cache, p, ws=ws)
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return forward, backward


def matmul_times(T, B, H, runs: int) -> tuple[float, float]:
    """Best seconds of T products h @ Wh (B, H)x(H, 4H) and T products dz @ Wh^T (B, 4H)x(4H, H)."""
    rng = np.random.default_rng(2)
    Wh = rng.standard_normal((H, 4 * H)).astype(np.float32)
    h, dz = rng.standard_normal((B, H)).astype(np.float32), rng.standard_normal((B, 4 * H)).astype(np.float32)
    return (best_time(lambda: [h @ Wh for _ in range(T)], runs), best_time(lambda: [dz @ Wh.T for _ in range(T)], runs))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    T, B, H = args.seq, args.batch, args.hidden
    block = B * 4 * H * 4
    dram, cache = copy_bandwidth(256 << 20, 5), copy_bandwidth(block, 50)
    tanh_ns = tanh_ns_per_element(B * 4 * H, 200)
    print(f"T={T}, B={B}, H={H}, float32, one thread")
    print(f"np.copyto bandwidth, read + written: {dram:.1f} GB/s for 256 MB (main memory), {cache:.1f} GB/s for "
          f"{block >> 10} KB (one (B, 4H) block, in cache); tanh {tanh_ns:.2f} ns per element\n")

    counts = {"before": count_step(lstm_step_forward_before, lstm_step_backward_before, B, H),
              "after": count_step(CELLS["lstm"].step_forward, CELLS["lstm"].step_backward, B, H)}
    fw_mm, bw_mm = matmul_times(T, B, H, args.runs)
    times = {"before": ([], []), "after": ([], [])}
    for _ in range(args.runs):                                    # interleaved, one run of T steps each
        for name, cell in (("before", LSTM_BEFORE), ("after", CELLS["lstm"])):
            forward, backward = sequence_times(cell, T, B, H, 1)
            times[name][0].extend(forward)
            times[name][1].extend(backward)
    print("| step | version | element-wise calls | element-wise MB moved | matmul MB | best ms (T steps) | "
          "median ms | element-wise GB/s (best, less the matmuls) | % of the in-cache copy rate |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for direction, index, mm in (("forward", 0, fw_mm), ("backward", 1, bw_mm)):
        for name in ("before", "after"):
            ew, mmb, n = split_bytes(counts[name][direction])
            best, median = min(times[name][index]), statistics.median(times[name][index])
            rate = T * ew / max(best - mm, 1e-9) / 1e9
            print(f"| {direction} | {name} | {n} | {ew / 1e6:.2f} | {mmb / 1e6:.2f} | {1e3 * best:.2f} | "
                  f"{1e3 * median:.2f} | {rate:.1f} | {100 * rate / cache:.0f} |")
    print(f"\nmatmuls alone (best, T steps): h Wh {1e3 * fw_mm:.2f} ms, dz Wh^T {1e3 * bw_mm:.2f} ms")
    for name in ("before", "after"):
        for direction in ("forward", "backward"):
            print(f"\n{name}, {direction}: " + ", ".join(f"{call} {(r + w) >> 10}K" for call, r, w in counts[name][direction]))


if __name__ == "__main__":
    with blas_threads(1):                                         # one core: the bytes of one thread's step
        main()
