"""The one sequence loop: run any cell over T time steps, and back-propagate through time (BPTT).

Forward, for t = 1 .. T:               state_t = cell.step_forward(zx_t, state_{t-1})
Backward, for t = T .. 1 (BPTT):       the gradient reaching state_t is the sum of
                                         * dh_t from above (the output layer or the next layer), and
                                         * dstate_t from step t+1 (through the recurrence),
                                       and the cell's step_backward turns it into dzx_t, dzh_t, dstate_{t-1}.
After the loop, for all steps at once:  dWh = sum_t h_{t-1}^T dzh_t      (one (H, T*B) x (T*B, GH) GEMM)
                                        dbh = sum_t dzh_t                 (GRU's recurrent bias)

Inputs enter through ``zx = x @ Wx + b`` for all steps at once (:func:`project_inputs`); for character
ids that product is a row lookup ``(Wx + b)[ids]`` (x is one-hot), and its gradient ``dWx = onehot^T dzx``
(:func:`embedding_grad`) is one small GEMM instead of the slow ``np.add.at``.

With zoneout (regularizers.py) the loop mixes each new state part with the previous one after every step,
s_t = Z_t s_{t-1} + (1 - Z_t) s~_t, and BPTT splits the gradient reaching s_t between the cell's step and
s_{t-1} (:func:`step_loop_forward`, :func:`step_loop_backward`); without it the loop is what it always was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import require
from .regularizers import zoneout_mix, zoneout_mix_backward

if TYPE_CHECKING:                    # cells.py registers mincells.py's window kernels, which use Workspace
    from .cells import Cell

ONE_HOT_GEMM_MAX_VOCAB = 512  # above this, sorting + reduceat beats the one-hot product


def project_inputs(x: np.ndarray, Wx: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """zx = x @ Wx + b for every step: ids (T, B) -> row lookup; features (T, B, In) -> one GEMM.
    ``out`` (T, B, GH), if given, receives the result."""
    T, B = x.shape[:2]
    out = np.empty((T, B, Wx.shape[1]), dtype=Wx.dtype) if out is None else out
    if x.ndim == 2:                                              # character ids: onehot @ Wx + b == (Wx + b)[ids]
        if x.size and (x.min() < 0 or x.max() >= Wx.shape[0]):
            raise IndexError(f"character ids must be in [0, {Wx.shape[0]}), got {x.min()}..{x.max()}")
        return np.take(Wx + b, x, axis=0, out=out, mode="clip")  # (T, B, GH); ids checked, "clip" is unbuffered
    np.matmul(x.reshape(T * B, -1), Wx, out=out.reshape(T * B, -1))
    out += b
    return out                                                   # (T, B, GH)


def one_hot(ids: np.ndarray, n: int, dtype) -> np.ndarray:
    """ids (N,) -> (N, n) rows of zeros with a 1 at each id."""
    onehot = np.zeros((len(ids), n), dtype=dtype)                # (N, n)
    onehot[np.arange(len(ids)), ids] = 1.0
    return onehot


def embedding_grad(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """out[k] = sum of rows[j] with ids[j] == k (k < n): the gradient of the row lookup ``W[ids]``.

    Small vocabularies: ``onehot(ids)^T @ rows`` -- one GEMM. Large ones: sort the ids so equal ones are
    adjacent and sum each run with ``np.add.reduceat``. Both equal ``np.add.at(out, ids, rows)``.
    """
    ids = ids.reshape(-1)                                        # (N,)
    rows = rows.reshape(len(ids), -1)                            # (N, GH)
    if n <= ONE_HOT_GEMM_MAX_VOCAB:
        return one_hot(ids, n, rows.dtype).T @ rows              # (n, GH)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((n, rows.shape[1]), dtype=rows.dtype)         # (n, GH)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def input_grads(x: np.ndarray, dzx: np.ndarray, Wx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward of :func:`project_inputs` -> (dWx, db, dx); dx is None for character ids."""
    GH = dzx.shape[-1]
    dzx2 = dzx.reshape(-1, GH)                                   # (T*B, GH)
    if x.ndim == 2:                                              # every row of dzx belongs to one id, so the
        dWx = embedding_grad(x, dzx2, Wx.shape[0])               # (V, GH) per-id sums add up to db: no pass
        return dWx, dWx.sum(axis=0), None                        # over the (T*B, GH) array for it
    db = dzx2.sum(axis=0)                                        # (GH,)
    T, B, In = x.shape
    x2 = x.reshape(T * B, In)
    return x2.T @ dzx2, db, (dzx2 @ Wx.T).reshape(T, B, In)      # dWx (In, GH), dx (T, B, In)


def project_inputs_by_gate(x: np.ndarray, Wx: np.ndarray, b: np.ndarray, gates: int,
                           out: np.ndarray | None = None) -> np.ndarray:
    """The same zx as :func:`project_inputs`, gate block by gate block: (G, T, B, H), ``out`` if given.

    The window kernels (mincells.py) work on one gate of a whole window per call; NumPy's element-wise calls
    run 2-5x faster over a contiguous (T, B, H) block than over a (T, B, H) slice of a (T, B, GH) array,
    whose rows of H numbers it would loop over one at a time (docs/mincells.md measures it)."""
    T, B = x.shape[:2]
    H = Wx.shape[1] // gates
    out = np.empty((gates, T, B, H), dtype=Wx.dtype) if out is None else out
    if x.ndim == 2:                                              # ids: a row lookup in each gate's table
        table = np.ascontiguousarray((Wx + b).reshape(-1, gates, H).transpose(1, 0, 2))   # (G, V, H)
        for g in range(gates):
            project_inputs(x, table[g], np.zeros(H, dtype=Wx.dtype), out[g])  # (T, B, H)
        return out
    for g in range(gates):
        project_inputs(x, Wx[:, g * H:(g + 1) * H], b[g * H:(g + 1) * H], out[g])   # (T, B, H), one GEMM each
    return out


def input_grads_by_gate(x: np.ndarray, dzx: np.ndarray, Wx: np.ndarray):
    """Backward of :func:`project_inputs_by_gate`: dzx (G, T, B, H) -> (dWx (In, GH), db (GH,), dx or None)."""
    G, H = dzx.shape[0], dzx.shape[-1]
    if x.ndim == 2 and Wx.shape[0] <= ONE_HOT_GEMM_MAX_VOCAB:   # ids: one one-hot matrix for every gate block
        onehot = one_hot(x.reshape(-1), Wx.shape[0], dzx.dtype)  # (N, V)
        dWx = np.empty(Wx.shape, dtype=dzx.dtype)                # (V, GH)
        for g in range(G):                                       # (dzx_g^T onehot)^T: BLAS's faster orientation
            dWx[:, g * H:(g + 1) * H] = (dzx[g].reshape(-1, H).T @ onehot).T   # (V, H)
        return dWx, dWx.sum(axis=0), None
    blocks = [input_grads(x, dzx[g], Wx[:, g * H:(g + 1) * H]) for g in range(G)]   # per gate block
    dWx = np.concatenate([dWx_g for dWx_g, _, _ in blocks], axis=1)                 # (In, GH)
    db = np.concatenate([db_g for _, db_g, _ in blocks])                           # (GH,)
    dx = None if x.ndim == 2 else sum(dx_g for _, _, dx_g in blocks)                # (T, B, In)
    return dWx, db, dx


def layer_inputs(cell: Cell, x: np.ndarray, p: dict, ws: Workspace | None = None, name: str = "",
                 scale: np.ndarray | None = None) -> np.ndarray:
    """zx of one layer in the layout its cell reads: (T, B, GH) for the step loop, gate-major (G, T, B, H) for a
    window kernel; in the workspace's ``{name}zx`` array when there is one. ``scale`` (T, B), for character
    ids only: each row's share of the input, zx_t = s_t Wx[id_t] + b (character dropout, regularizers.py)."""
    Wx = p["Wx"]
    T, B = x.shape[:2]
    b = p["b"] if scale is None else np.zeros_like(p["b"])      # with a scale the bias is added after it
    if cell.window_forward is None:
        zx = project_inputs(x, Wx, b, workspace_empty(ws, f"{name}zx", (T, B, Wx.shape[1]), Wx.dtype))
        if scale is not None:
            zx *= scale[..., None]                               # (T, B, GH) s_t Wx[id_t]
            zx += p["b"]
        return zx
    shape = (cell.n_gates, T, B, Wx.shape[1] // cell.n_gates)
    zx = project_inputs_by_gate(x, Wx, b, cell.n_gates, workspace_empty(ws, f"{name}zx", shape, Wx.dtype))
    if scale is not None:
        zx *= scale[..., None]                                   # (G, T, B, H)
        zx += p["b"].reshape(cell.n_gates, 1, 1, -1)
    return zx


def layer_input_grads(cell: Cell, x: np.ndarray, dzx: np.ndarray, Wx: np.ndarray, scale: np.ndarray | None = None):
    """Backward of :func:`layer_inputs` -> (dWx, db, dx or None for ids). With a ``scale`` s (T, B):
    dWx[k] = sum_{id_t = k} s_t dzx_t and db = sum_t dzx_t."""
    grads = input_grads if cell.window_forward is None else input_grads_by_gate
    if scale is None:
        return grads(x, dzx, Wx)
    dWx, _, dx = grads(x, dzx * scale[..., None], Wx)            # the rows as they entered
    GH = Wx.shape[1]
    db = (dzx.reshape(-1, GH).sum(axis=0) if cell.window_forward is None     # (GH,) the bias is not scaled
          else dzx.reshape(cell.n_gates, -1, GH // cell.n_gates).sum(axis=1).reshape(GH))
    return dWx, db, dx


class Workspace:
    """Arrays kept from one training step to the next, handed out by name.

    A training step needs the same large arrays every time: the (T, B, GH) input projections, the cache of
    every step, the gate gradients. Allocating them afresh is not free: memory that size comes straight
    from the operating system and is zeroed page by page on first touch -- measured at a fifth of an LSTM
    step at 256/64/100 (750,000 page faults in 50 steps). A Workspace allocates each once and returns a view
    of the right shape, growing the buffer when a longer batch comes. Without one (``ws=None``) every call
    allocates, which is what evaluation and sampling do. Whoever holds a workspace must be done with its
    arrays before the next call that uses it overwrites them.
    """

    def __init__(self):
        self._buffers = {}

    def empty(self, name: str, shape: tuple, dtype) -> np.ndarray:
        dtype, size = np.dtype(dtype), int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self._buffers.values())


def workspace_empty(ws: Workspace | None, name: str, shape: tuple, dtype) -> np.ndarray:
    """``ws.empty(name, shape, dtype)``, or a fresh array without a workspace."""
    return np.empty(shape, dtype=dtype) if ws is None else ws.empty(name, shape, dtype)


def with_transposed_weights(p: dict, steps: int) -> dict:
    """p plus ``WhT``, a C-contiguous copy of Wh^T made once for the whole sequence (the products of every
    step run faster from it: ``cells.recurrent_weights_transposed``). A single step -- sampling, one
    character at a time -- would spend more on the copy than it saves, and keeps the view."""
    return {**p, "WhT": np.ascontiguousarray(p["Wh"].T)} if steps > 1 else p    # (GH, H)


@dataclass
class SequenceCache:
    h_prev: np.ndarray      # (T, B, H): the hidden state entering each step (h_0 .. h_{T-1})
    steps: list             # the cell's cache of every step (views of the workspace arrays)
    spare: np.ndarray | None = None  # with a workspace: zx's (T, B, GH) array, for the gate gradients
    zoneout: tuple | None = None     # per state part, Z: (T, B, H) bool masks or the rate (step_loop_forward)


def sequence_forward(cell: Cell, zx: np.ndarray, state0: tuple, p: dict, ws: Workspace | None = None, name: str = "",
                     zoneout: tuple | None = None):
    """Run ``cell`` over zx (T, B, GH) from state0 -> (hs (T, B, H), final state, cache): the cell's window
    kernel if it has one (minGRU, minLSTM: the whole window at once, mincells.py), else one step per
    character (:func:`step_loop_forward`, which also runs ``zoneout``: per state part, Z or its rate)."""
    if cell.window_forward is not None:
        require(zoneout is None, f"zoneout needs a cell stepped one character at a time, not {cell.name}'s "
                                 "window kernel")
        return cell.window_forward(zx, state0, p, ws, name)
    return step_loop_forward(cell, zx, state0, p, ws, name, zoneout)


def sequence_backward(cell: Cell, dhs: np.ndarray, cache, p: dict, dstate_final: tuple | None = None,
                      ws: Workspace | None = None, name: str = ""):
    """BPTT: dhs (T, B, H) = dL/dh_t from above -> (dzx (T, B, GH), grads {Wh[, bh]}, dstate0), by the cell's
    window kernel if it has one, else :func:`step_loop_backward`."""
    if cell.window_backward is not None:
        return cell.window_backward(dhs, cache, p, dstate_final, ws, name)
    return step_loop_backward(cell, dhs, cache, p, dstate_final, ws, name)


def step_loop_forward(cell: Cell, zx: np.ndarray, state0: tuple, p: dict, ws: Workspace | None = None, name: str = "",
                      zoneout: tuple | None = None):
    """Run ``cell`` one step per character over zx (T, B, GH) from state0 -> (hs (T, B, H), final state,
    SequenceCache). Every cell can run this way (minGRU's and minLSTM's textbook steps too).

    Each step writes into slot t of arrays kept in ``ws`` under ``name``; the final state is a copy, so it
    stays valid when the workspace is reused. With a workspace, memory is reused hard: the gate activations
    overwrite ``zx`` (slot t of zx is dead once step t has read it), and :func:`sequence_backward` then writes the
    gate gradients over the gates -- one (T, B, GH) array per layer instead of three. Such a cache can be
    back-propagated once.

    ``zoneout`` (regularizers.py), per state part: Z for all steps (T, B, H) bool, or the rate (evaluation: the
    expectation), or 0 (that part is not zoned out). After step t each part becomes
    s_t = Z_t s_{t-1} + (1 - Z_t) s~_t. The cell then writes its own s~_t into arrays of its own (h~ apart
    from hs: the RNN's cache is its h~), and s_t -- what the next step and the layer above read -- into hs
    and one array per further state part (the LSTM's c), so that BPTT finds both.
    """
    T, (B, H) = zx.shape[0], state0[0].shape
    hs_all = workspace_empty(ws, f"{name}hs", (T + 1, B, H), zx.dtype)   # (T+1, B, H): h_0, h_1 .. h_T
    hs_all[0] = state0[0]
    new_h, zoned = hs_all[1:], []                               # without zoneout the cell writes h_t itself
    if zoneout is not None:
        new_h = workspace_empty(ws, f"{name}h_new", (T, B, H), zx.dtype)   # (T, B, H) h~_t
        zoned = [workspace_empty(ws, f"{name}state{k}", (T, B, H), zx.dtype) for k in range(1, cell.n_states)]
    caches = []                                                  # per cache array of the cell: (T, B, w*H)
    for k, width in enumerate(cell.cache_widths):
        if k == 0 and ws is not None and cell.gates_over_input:
            caches.append(zx)                                    # the gates overwrite the input projection
        else:
            caches.append(workspace_empty(ws, f"{name}cache{k}", (T, B, width * H), zx.dtype))
    state, steps = (hs_all[0], *state0[1:]), []
    p = with_transposed_weights(p, T) if cell.recurrent_weights else p
    for t in range(T):
        out = (new_h[t], *(cache[t] for cache in caches))
        prev = state
        state, step_cache = cell.step_forward(zx[t], state, p, out)
        if zoneout is not None:                                  # s_t = Z_t s_{t-1} + (1 - Z_t) s~_t
            state = tuple(zoneout_step(*parts, t) for parts in zip(prev, state, zoneout,
                                                                    (hs_all[t + 1], *(a[t] for a in zoned)),
                                                                    strict=True))
        steps.append(step_cache)
    final = tuple(part.copy() for part in state)
    return hs_all[1:], final, SequenceCache(hs_all[:-1], steps, zx if ws is not None else None,
                                            None if zoneout is None else tuple(zoneout))


def zoneout_step(prev: np.ndarray, new: np.ndarray, z, out: np.ndarray, t: int) -> np.ndarray:
    """One state part after step t, into ``out``: the mix with Z_t (slot t of a mask, or the rate), or s~_t
    itself for a part that is not zoned out (rate 0)."""
    if isinstance(z, np.ndarray):
        return zoneout_mix(prev, new, z[t], out)
    if z == 0:
        np.copyto(out, new)
        return out
    return zoneout_mix(prev, new, z, out)


def step_loop_backward(cell: Cell, dhs: np.ndarray, cache: SequenceCache, p: dict, dstate_final: tuple | None = None,
                       ws: Workspace | None = None, name: str = ""):
    """BPTT one step per character: dhs (T, B, H) = dL/dh_t from above -> (dzx (T, B, GH), grads {Wh[, bh]}
    ({} for a cell without recurrent weights), dstate0).

    ``dstate_final`` is the gradient arriving at the last state from outside the window; truncated BPTT
    passes None (zero): the window's future is cut off. A cache made with zoneout splits ds_t, all the
    gradient reaching the zoned state s_t: (1 - Z_t) ds_t goes through the cell's step, Z_t ds_t straight to
    s_{t-1} (``regularizers.zoneout_mix_backward``).
    """
    T, B = dhs.shape[:2]
    GH = cell.n_gates * dhs.shape[2]
    dzx = cache.spare if cache.spare is not None else np.empty((T, B, GH), dtype=dhs.dtype)  # (T, B, GH)
    dzh = workspace_empty(ws, f"{name}dzh", (T, B, GH), dhs.dtype) if cell.recurrent_bias else dzx  # GRU only
    dstate = dstate_final or tuple(np.zeros_like(dhs[0]) for _ in range(cell.n_states))
    p = with_transposed_weights(p, T) if cell.recurrent_weights else p
    zoneout = cache.zoneout
    for t in reversed(range(T)):
        dstate = (dstate[0] + dhs[t], *dstate[1:])              # from above + from step t+1
        if zoneout is not None:                                  # -> (to the cell's s~_t, straight to s_{t-1})
            split = [zoneout_mix_backward(ds, z[t] if isinstance(z, np.ndarray) else z)
                     for ds, z in zip(dstate, zoneout, strict=True)]
            dstate = tuple(d_new for d_new, _ in split)
        _, _, dstate = cell.step_backward(dstate, cache.steps[t], p, (dzx[t], dzh[t]))
        if zoneout is not None:
            dstate = tuple(d_cell + d_direct for d_cell, (_, d_direct) in zip(dstate, split, strict=True))
    grads = recurrent_grads(cache.h_prev, dzh, cell.recurrent_bias) if cell.recurrent_weights else {}
    return dzx, grads, dstate


def recurrent_grads(h_prev: np.ndarray, dzh: np.ndarray, recurrent_bias: bool) -> dict:
    """After the backward loop: dWh = sum_t h_{t-1}^T dzh_t (one GEMM over all steps) [, dbh = sum_t dzh_t].
    h_prev (T, B, H), dzh (T, B, GH). Also used by step-by-step loops (the seq2seq decoder)."""
    H, GH = h_prev.shape[-1], dzh.shape[-1]
    dzh2 = dzh.reshape(-1, GH)                                   # (T*B, GH)
    grads = {"Wh": h_prev.reshape(-1, H).T @ dzh2}              # (H, GH), all steps in one GEMM
    if recurrent_bias:
        grads["bh"] = dzh2.sum(axis=0)                           # (GH,)
    return grads

