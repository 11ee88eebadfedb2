"""The one sequence loop: run any cell over T time steps, and back-propagate through time (BPTT).

Forward, for t = 1 .. T:               state_t = cell.step_forward(zx_t, state_{t-1})
Backward, for t = T .. 1 (BPTT):       the gradient reaching state_t is the sum of
                                         * dh_t from above (the output layer or the next layer), and
                                         * dstate_t from step t+1 (through the recurrence),
                                       and the cell's step_backward turns it into dzx_t and dstate_{t-1}.

Inputs enter through ``zx = x @ Wx + b`` for all steps at once (:func:`project_inputs`); for character
ids that product is a row lookup ``Wx[ids]`` (x is one-hot), and its gradient a row-wise sum
(:func:`scatter_add_rows`) instead of a one-hot matrix product or the slow ``np.add.at``.
"""

from __future__ import annotations

import numpy as np

from .cells import Cell


def project_inputs(x: np.ndarray, Wx: np.ndarray, b: np.ndarray) -> np.ndarray:
    """zx = x @ Wx + b for every step: ids (T, B) -> row lookup; features (T, B, In) -> one GEMM."""
    if x.ndim == 2:                                              # character ids: one-hot @ Wx == Wx[ids]
        return Wx[x] + b                                         # (T, B, GH)
    return x @ Wx + b                                            # (T, B, GH)


def scatter_add_rows(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """out[k] = sum of rows[j] with ids[j] == k, for k < n: the gradient of a row lookup.

    Sorting the ids groups equal ones, and ``np.add.reduceat`` sums each group in one vectorised pass.
    """
    ids = ids.reshape(-1)                                        # (N,)
    rows = rows.reshape(len(ids), -1)                            # (N, GH)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((n, rows.shape[1]), dtype=rows.dtype)         # (n, GH)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def input_grads(x: np.ndarray, dzx: np.ndarray, Wx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward of :func:`project_inputs` -> (dWx, db, dx); dx is None for character ids."""
    db = dzx.reshape(-1, dzx.shape[-1]).sum(axis=0)              # (GH,)
    if x.ndim == 2:
        return scatter_add_rows(x, dzx, Wx.shape[0]), db, None   # (V, GH)
    In = x.shape[-1]
    dWx = x.reshape(-1, In).T @ dzx.reshape(-1, dzx.shape[-1])   # (In, GH)
    return dWx, db, dzx @ Wx.T                                   # dx (T, B, In)


def rnn_forward(cell: Cell, zx: np.ndarray, state0: tuple, p: dict):
    """Run ``cell`` over zx (T, B, GH) from state0 -> (hs (T, B, H), final state, caches)."""
    T = zx.shape[0]
    state = state0
    hs = np.empty((T, *state0[0].shape), dtype=zx.dtype)         # (T, B, H)
    caches = []
    for t in range(T):
        state, cache = cell.step_forward(zx[t], state, p)
        hs[t] = state[0]
        caches.append(cache)
    return hs, state, caches


def rnn_backward(cell: Cell, dhs: np.ndarray, caches: list, p: dict, dstate_final: tuple | None = None):
    """BPTT: dhs (T, B, H) = dL/dh_t from above -> (dzx (T, B, GH), grads {Wh[, bh]}, dstate0).

    ``dstate_final`` is the gradient arriving at the last state from outside the window; truncated BPTT
    passes None (zero): the window's future is cut off.
    """
    T = dhs.shape[0]
    grads = {name: np.zeros_like(value) for name, value in p.items() if name not in ("Wx", "b")}
    dstate = dstate_final or tuple(np.zeros_like(dhs[0]) for _ in range(cell.n_states))
    dzx = np.empty((T, dhs.shape[1], p["Wh"].shape[1]), dtype=dhs.dtype)  # (T, B, GH)
    for t in reversed(range(T)):
        dstate = (dstate[0] + dhs[t], *dstate[1:])              # from above + from step t+1
        dzx[t], dstate = cell.step_backward(dstate, caches[t], p, grads)
    return dzx, grads, dstate
