"""How many bytes an LSTM time step moves, against this machine's memory bandwidth.

    python benchmarks/lstm_bytes.py                       # H=256, B=64 (the 256/64/100 benchmark), float32
    python benchmarks/lstm_bytes.py --hidden 256 --batch 32

1. Bandwidth: the best of many ``np.copyto`` of a 256 MB array (main memory) and of an array the size of
   one (B, 4H) gate block (it stays in the core's cache), and the time of one tanh per element.
2. Bytes: every NumPy call of one forward and one backward step is counted -- arrays read + written --
   by running the step on an ``ndarray`` subclass whose ``__array_ufunc__`` (every ufunc, operators and
   ``np.matmul`` included) and ``__setitem__`` record the sizes. The count follows the code as it is, for
   the step in ``cells.py`` and for the step it replaced (kept below as ``*_before``).
3. Time: T steps forward and backward of each version, interleaved, best of several runs: once with the
   real recurrent products, once with ``Wh`` replaced by a stand-in whose products cost nothing, so the
   element-wise part alone can be set against the bytes it moves.

Everything runs on one thread (BLAS included): the figures are those of one core, or of one batch shard.
Times are this thread's CPU time (``time.thread_time``), best of N: on a shared machine the wall clock
also counts the time other processes held the core, the thread's CPU time does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from rnnlab.nn.cells import CELLS, LSTM_CACHE, _lstm_block_constants, new_grad_out, new_step_out
from rnnlab.training.parallel import blas_threads

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
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
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

class PrecomputedProduct:
    """Stands in for ``Wh`` (and ``Wh^T``): every product with it returns a precomputed array of the right
    shape at no cost -- ``h Wh`` (B, 4H), ``(Wh^T h^T)`` (4H, B), ``dz Wh^T`` (B, H) -- so a timed step
    counts its element-wise work alone."""

    __array_ufunc__ = None                                        # ndarray @ this -> this.__rmatmul__

    def __init__(self, forward: np.ndarray, backward: np.ndarray):
        self.forward, self.backward = forward, backward           # (B, 4H), (B, H)

    def __rmatmul__(self, other):                                 # h @ Wh or dz @ Wh^T, told apart by width
        return self.forward if other.shape[1] == self.backward.shape[1] else self.backward

    def __matmul__(self, other):                                  # Wh^T @ h^T
        return self.forward.T

    @property
    def T(self):
        return self


def step_loop_times(cell, T, B, H, wh) -> tuple[float, float]:
    """CPU seconds of T forward steps and T backward steps of ``cell`` (gates over zx, gate gradients over
    the gates, as ``sequence_forward`` / ``sequence_backward`` with a Workspace), with ``wh`` as Wh."""
    rng = np.random.default_rng(1)
    zx = rng.standard_normal((T, B, 4 * H)).astype(np.float32)
    hs = np.zeros((T + 1, B, H), np.float32)
    c_all, tc_all = np.empty((T, B, H), np.float32), np.empty((T, B, H), np.float32)
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)
    p = {"Wh": wh, "WhT": wh if isinstance(wh, PrecomputedProduct) else np.ascontiguousarray(wh.T)}  # as the loop
    state, caches = (hs[0], np.zeros((B, H), np.float32)), []
    start = time.thread_time()
    for t in range(T):
        state, cache = cell.step_forward(zx[t], state, p, (hs[t + 1], zx[t], c_all[t], tc_all[t]))
        caches.append(cache)
    middle = time.thread_time()
    dstate = (np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
    for t in reversed(range(T)):
        dstate = (dstate[0] + dhs[t], dstate[1])
        _, _, dstate = cell.step_backward(dstate, caches[t], p, (zx[t], zx[t]))
    return middle - start, time.thread_time() - middle


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
    rng = np.random.default_rng(2)
    real_wh = (rng.standard_normal((H, 4 * H)) * 0.05).astype(np.float32)
    free_wh = PrecomputedProduct(rng.standard_normal((B, 4 * H)).astype(np.float32),
                                 rng.standard_normal((B, H)).astype(np.float32))
    cells = {"before": LSTM_BEFORE, "after": CELLS["lstm"]}
    times = {(name, wh): [] for name in cells for wh in ("real", "free")}
    for _ in range(args.runs):                                    # interleaved
        for name, cell in cells.items():
            for wh_name, wh in (("real", real_wh), ("free", free_wh)):
                times[(name, wh_name)].append(step_loop_times(cell, T, B, H, wh))
    print("| step | version | element-wise calls | element-wise MB per step | ms per T steps, element-wise "
          "only | GB/s | % of in-cache copy | ms per T steps with the products |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for index, direction in enumerate(("forward", "backward")):
        for name in cells:
            ew, _, n = split_bytes(counts[name][direction])
            free = min(run[index] for run in times[(name, "free")])
            real = min(run[index] for run in times[(name, "real")])
            rate = T * ew / free / 1e9
            print(f"| {direction} | {name} | {n} | {ew / 1e6:.2f} | {1e3 * free:.2f} | {rate:.1f} | "
                  f"{100 * rate / cache:.0f} | {1e3 * real:.2f} |")
    for name in ("before", "after"):
        for direction in ("forward", "backward"):
            calls = ", ".join(f"{call} {(r + w) >> 10}K" for call, r, w in counts[name][direction])
            print(f"\n{name}, {direction}: {calls}")


if __name__ == "__main__":
    with blas_threads(1):                                         # one core: the bytes of one thread's step
        main()
