"""Each NumPy-engine optimisation against the straightforward code it replaced, timed in the same run.

    python benchmarks/fast_paths.py            # about a minute; prints a Markdown table
    OPENBLAS_NUM_THREADS=1 python benchmarks/fast_paths.py   # one core: what each batch shard sees

Shapes are those of the 256/64/100 LSTM benchmark (T=100, B=64, H=256, vocabulary 65), float32. Every pair
is timed interleaved (old, new, old, new, ...) and the median is reported, so the ratio is meaningful on a
noisy machine even when the absolute times are not. tests/training/test_fast_paths.py proves each pair computes the
same numbers.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from rnnlab.nn import model as charmodel
from rnnlab.nn.activations import sigmoid
from rnnlab.nn.cells import CELLS
from rnnlab.nn.recurrence import Workspace, embedding_grad, sequence_forward

T, B, H, V = 100, 64, 256, 65
rng = np.random.default_rng(0)
f32 = np.float32


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def compare(name, old, new, repeats=7):
    old(), new()                                             # warm-up
    old_t, new_t = [], []
    for _ in range(repeats):                                 # interleaved
        old_t += timed(old, 1)
        new_t += timed(new, 1)
    a, b = statistics.median(old_t), statistics.median(new_t)
    print(f"| {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.1f}x |", flush=True)


ids = rng.integers(0, V, size=(T, B))
Wx, b = rng.standard_normal((V, 4 * H)).astype(f32), rng.standard_normal(4 * H).astype(f32)
dzx = rng.standard_normal((T, B, 4 * H)).astype(f32)
hs = rng.standard_normal((T, B, H)).astype(f32)
Wy = rng.standard_normal((H, V)).astype(f32)


def embedding_add_at():
    out = np.zeros((V, 4 * H), f32)
    np.add.at(out, ids.reshape(-1), dzx.reshape(-1, 4 * H))
    return out


def embedding_reduceat():
    flat, rows = ids.reshape(-1), dzx.reshape(-1, 4 * H)
    order = np.argsort(flat, kind="stable")
    s = flat[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    out = np.zeros((V, 4 * H), f32)
    out[s[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def lstm_textbook_step(zx, h, c, Wh):
    z = zx + h @ Wh
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c


lstm = CELLS["lstm"]
p_lstm = {k: v.astype(f32) for k, v in lstm.init(V, H, rng).items()}
zx_all = rng.standard_normal((T, B, 4 * H)).astype(f32)
h0, c0 = np.zeros((B, H), f32), np.zeros((B, H), f32)


def lstm_forward_textbook():
    h, c = h0, c0
    for t in range(T):
        h, c = lstm_textbook_step(zx_all[t], h, c, p_lstm["Wh"])


def lstm_forward_fused():
    sequence_forward(lstm, zx_all, (h0, c0), p_lstm)


_, _, seq_cache = sequence_forward(lstm, zx_all, (h0, c0), p_lstm)
dhs = rng.standard_normal((T, B, H)).astype(f32)


def dWh_per_step():
    dWh = np.zeros_like(p_lstm["Wh"])
    for t in range(T):
        dWh += seq_cache.h_prev[t].T @ dzx[t]
    return dWh


def dWh_one_gemm():
    return seq_cache.h_prev.reshape(T * B, H).T @ dzx.reshape(T * B, 4 * H)


Wh_T = np.ascontiguousarray(p_lstm["Wh"].T)
h_batch, dz_batch = hs[0], dzx[0]                            # (B, H), (B, 4H)


def recurrent_products_plain():
    for _ in range(T):
        h_batch @ p_lstm["Wh"]                                   # forward  h Wh
        dz_batch @ p_lstm["Wh"].T                                # backward dz Wh^T, from the transposed view


def recurrent_products_transposed_copy():
    Wh_T_once = np.ascontiguousarray(p_lstm["Wh"].T)             # once per sequence (with_transposed_weights)
    for _ in range(T):
        Wh_T_once @ h_batch.T                                    # forward  (Wh^T h^T), transposed back as a view
        dz_batch @ Wh_T_once                                     # backward dz Wh^T


config = charmodel.ModelConfig(vocab_size=V, cell="lstm", hidden_size=H)
params = charmodel.init_params(config, rng, f32)
step_ids = rng.integers(0, V, size=(T + 1, B))
workspace = Workspace()


def training_step(ws):
    return lambda: charmodel.loss_and_grads(params, config, step_ids[:-1], step_ids[1:],
                                            charmodel.zero_state(config, B), ws=ws)


if __name__ == "__main__":
    print(f"T={T}, B={B}, H={H}, V={V}, float32; median of 7 interleaved runs\n")
    print("| optimisation | before (ms) | after (ms) | speed-up |\n|---|---:|---:|---:|")
    compare("embedding gradient: np.add.at -> one-hot GEMM", embedding_add_at,
            lambda: embedding_grad(ids, dzx, V), repeats=3)
    compare("embedding gradient: sort + reduceat -> one-hot GEMM", embedding_reduceat,
            lambda: embedding_grad(ids, dzx, V))
    compare("input projection: Wx[ids] + b -> take(Wx + b, ids)", lambda: Wx[ids] + b,
            lambda: np.take(Wx + b, ids, axis=0))
    compare("LSTM forward, 100 steps: 3 sigmoids + 1 tanh -> one tanh in place", lstm_forward_textbook,
            lstm_forward_fused)
    compare("dWh: 100 per-step GEMMs -> one GEMM after BPTT", dWh_per_step, dWh_one_gemm)
    compare("LSTM recurrent products, 100 steps: h Wh, dz Wh.T -> from one C-contiguous Wh^T",
            recurrent_products_plain, recurrent_products_transposed_copy)
    compare("output layer: 3-D matmul -> 2-D GEMM", lambda: hs @ Wy,
            lambda: (hs.reshape(-1, H) @ Wy).reshape(T, B, V))
    compare("LSTM loss_and_grads: fresh arrays -> Workspace (reused, gates over zx)", training_step(None),
            training_step(workspace))
