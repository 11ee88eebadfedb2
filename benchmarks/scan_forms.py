"""The linear recurrence of minGRU / minLSTM four ways, timed side by side: which form each engine should run.

    python benchmarks/scan_forms.py                                   # T, B, H = 256, 32, 256 on the CPU
    python benchmarks/scan_forms.py --shape 256/32/1024 --json benchmarks/results/scan_forms.json
    python benchmarks/scan_forms.py --device cuda --shape 256/32/1024  # the torch forms on a GPU (docs/gpu.md)

One minGRU layer, forward and backward (the gradient of every gate pre-activation and of h_0, from a random
gradient at every step), float32, from the same gate pre-activations:

* numpy textbook     the one sequence loop of recurrence.py over mincells.mingru_step_forward/_backward:
                     the gates computed one character at a time, as every other cell runs
* numpy window-loop  mincells.mingru_window_*: all gates at once, the recurrence stepped (scan.py's loop) --
                     what the NumPy engine runs
* numpy window-scan  the same with the doubling scan (log2 T rounds over the whole window)
* numpy log-space    Feng et al.'s form, forward only (scan.log_space_scan; it needs b > 0, so it is fed |b|):
                     what the paper's form would cost here
* torch loop / scan  torch_layers.MinRNN's recurrence (LinearRecurrence) both ways, forward + backward through
                     autograd, on --device

Rounds are interleaved (every form once per round) and the median per form is reported with its spread;
compare forms within one run only (docs/performance.md on this machine's noise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from rnnlab.nn import mincells
from rnnlab.nn.cells import CELLS
from rnnlab.nn.recurrence import step_loop_backward, step_loop_forward
from rnnlab.nn.scan import log_space_scan


def numpy_forms(zx_rows: np.ndarray, zx: np.ndarray, h0: np.ndarray, dh: np.ndarray) -> dict:
    """name -> a no-argument function doing one forward + backward."""
    cell = CELLS["mingru"]

    def textbook():
        _, _, cache = step_loop_forward(cell, zx_rows, (h0,), {})
        step_loop_backward(cell, dh, cache, {})

    def window(form):
        def run():
            _, _, cache = mincells.mingru_window_forward(zx, (h0,), {}, form=form)
            mincells.mingru_window_backward(dh, cache, {})
        return run

    a, b = 1.0 - 1.0 / (1.0 + np.exp(-zx[0])), np.abs(zx[1])
    return {"numpy textbook": textbook, "numpy window-loop": window("loop"), "numpy window-scan": window("scan"),
            "numpy log-space (forward only)": lambda: log_space_scan(a, b, np.abs(h0))}


def torch_forms(zx: np.ndarray, h0: np.ndarray, dh: np.ndarray, device: str) -> dict:
    import torch

    from rnnlab.frameworks.torch_layers import LinearRecurrence, mingru_coefficients
    where = torch.device(device)
    zx_t = torch.from_numpy(np.concatenate(list(zx), axis=-1)).to(where).requires_grad_()   # (T, B, 2H)
    h0_t, dh_t = (torch.from_numpy(x).to(where) for x in (h0, dh))

    def form(name):
        def run():
            a, b = mingru_coefficients(zx_t)
            LinearRecurrence.apply(a, b, h0_t, name).backward(dh_t)
            if where.type == "cuda":
                torch.cuda.synchronize()
        return run

    return {f"torch {where.type} loop": form("loop"), f"torch {where.type} scan": form("scan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="256/32/256", help="HIDDEN/BATCH/SEQ")
    parser.add_argument("--device", default="cpu", help="where the torch forms run: cpu, cuda, cuda:N")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--numpy", action=argparse.BooleanOptionalAction, default=True,
                        help="time the NumPy forms too (--no-numpy: torch only, e.g. on a GPU)")
    parser.add_argument("--json", default=None, help="also write the timings here")
    args = parser.parse_args()
    H, B, T = (int(x) for x in args.shape.split("/"))
    rng = np.random.default_rng(0)
    zx_rows = (1.5 * rng.standard_normal((T, B, 2 * H))).astype(np.float32)          # (T, B, 2H) [zu | h~]
    zx = np.ascontiguousarray(zx_rows.reshape(T, B, 2, H).transpose(2, 0, 1, 3))      # (2, T, B, H) gate-major
    h0, dh = rng.standard_normal((B, H)).astype(np.float32), rng.standard_normal((T, B, H)).astype(np.float32)
    forms = numpy_forms(zx_rows, zx, h0, dh) if args.numpy else {}
    try:
        forms.update(torch_forms(zx, h0, dh, args.device))
    except ImportError:
        print("torch is not installed: NumPy forms only")
    times = {name: [] for name in forms}
    for run in forms.values():
        run()                                                                           # warm up
    for _ in range(args.rounds):
        for name, run in forms.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    print(f"minGRU layer, forward + backward, T/B/H = {T}/{B}/{H}, float32, {args.rounds} rounds, load {load}")
    base = statistics.median(times.get("numpy window-loop", next(iter(times.values()))))
    for name, seconds in times.items():
        median = statistics.median(seconds)
        spread = (max(seconds) - min(seconds)) / median
        rows.append({"form": name, "ms": 1e3 * median, "spread": spread, "tokens_per_s": B * T / median})
        print(f"  {name:32s} {1e3 * median:9.2f} ms  ({spread:4.0%} spread)  {B * T / median:12,.0f} tok/s  "
              f"{median / base:6.2f}x the window-loop's time")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": [H, B, T], "device": args.device, "load_average": load,
                                               "rounds": args.rounds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
