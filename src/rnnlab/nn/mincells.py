"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gated cells whose gates read only the input.

The GRU's and LSTM's gates read h_{t-1} through W_h and a tanh, so step t cannot start before step t-1 ends.
Drop h_{t-1} from the gates and the tanh from the candidate, and what is left is a *linear* recurrence
h_t = a_t * h_{t-1} + b_t (``scan.py``) whose a_t and b_t come from the input alone: every gate of a whole
window is one matrix product (or a row lookup for character ids) before the recurrence starts.

minGRU (gate blocks u, h~; the paper's z_t is u here -- rnnlab keeps z for pre-activations -- and it weighs
the candidate, as in the paper, where the GRU's u weighs h_{t-1}):

    [zu, h~] = zx_t = x_t Wx + b                    no W_h, no reset gate
    u = sig(zu)                                     update gate
    h_t = (1 - u) * h_{t-1} + u * h~                a_t = 1 - u,  b_t = u * h~
  backward (dh_t: all the gradient reaching h_t):
    du = dh_t * (h~ - h_{t-1})     dzu = du * u (1 - u)     dh~ = dh_t * u     dh_{t-1} = dh_t * (1 - u)

minLSTM (gate blocks f, i, h~; no output gate, no cell state apart from h):

    [zf, zi, h~] = zx_t
    f = sig(zf)   i = sig(zi)
    f' = f / (f + i)   i' = i / (f + i)             normalised: f' + i' = 1, so h stays a convex combination
    h_t = f' * h_{t-1} + i' * h~                    a_t = f',  b_t = i' * h~
  backward, with s = f + i:
    df' = dh_t * h_{t-1}    di' = dh_t * h~    dh~ = dh_t * i'    dh_{t-1} = dh_t * f'
    df = (df' - di') i / s^2    di = (di' - df') f / s^2    dzf = df f (1 - f)    dzi = di i (1 - i)

Each cell comes twice, as the lab shows every fast kernel beside its reference:

* the textbook step -- ``*_step_forward`` / ``*_step_backward``, one line per equation above, behind the
  interface of every cell in cells.py, so the one sequence loop (recurrence.py) runs them one character
  at a time;
* the window kernel -- ``*_window_forward`` / ``*_window_backward``: every gate of the window at once, then
  the linear recurrence by the loop or the parallel scan of scan.py, then every gate gradient at once.
  This is what training runs (``Cell.window_forward``). minLSTM's kernel computes f' in a form that cannot
  divide 0 by 0 (two sigmoids that both round to 0 for very negative zf, zi would):

      f' = f / (f + i) = sig(log f - log i) = sig(softplus(-zi) - softplus(-zf))       i' = 1 - f'
      with d = softplus(-zi) - softplus(-zf):   dd = (df' - di') f' i'
      dzf = dd (1 - f)    dzi = -dd (1 - i)      (d softplus(-z)/dz = -(1 - sig(z)))

tests/nn/test_mincells.py proves step = window (loop and scan) forward and backward, and both against finite
differences, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import sigmoid, sigmoid_grad
from .recurrence import workspace_empty
from .scan import DEFAULT_FORM, linear_recurrence, linear_recurrence_backward


def _step_out(out, batch: int, hidden: int, count: int, dtype) -> tuple:
    """``out`` of a step (h, then its cache arrays), or fresh (B, H) arrays."""
    return out or tuple(np.empty((batch, hidden), dtype=dtype) for _ in range(count))


# --------------------------------------------------------------------------------------------------------
# minGRU: the textbook step
# --------------------------------------------------------------------------------------------------------

MINGRU_CACHE = (1,)      # u (B, H); the step also keeps h_{t-1} and a view of h~ in zx


def mingru_step_forward(zx, state, p, out=None):
    """One character: zx (B, 2H) = [zu, h~], state (h_{t-1},) -> ((h_t,), (h_{t-1}, u, h~))."""
    (h_prev,) = state
    H = h_prev.shape[1]
    h, u = _step_out(out, *h_prev.shape, 2, zx.dtype)
    sigmoid(zx[:, :H], out=u)                                    # (B, H) u = sig(zu)
    h_tilde = zx[:, H:]                                          # (B, H) candidate: linear in x
    h[...] = (1.0 - u) * h_prev + u * h_tilde                    # (B, H)
    return (h,), (h_prev, u, h_tilde)


def mingru_step_backward(dstate, cache, p, out=None):
    (dh,) = dstate
    h_prev, u, h_tilde = cache
    H = u.shape[1]
    dzx = out[0] if out else np.empty((u.shape[0], 2 * H), dtype=u.dtype)   # (B, 2H)
    du = dh * (h_tilde - h_prev)                                 # (B, H)
    dzx[:, :H] = du * sigmoid_grad(u)                            # dzu
    dzx[:, H:] = dh * u                                          # dh~
    dh_prev = dh * (1.0 - u)                                     # (B, H) to step t-1
    return dzx, dzx, (dh_prev,)


# --------------------------------------------------------------------------------------------------------
# minLSTM: the textbook step
# --------------------------------------------------------------------------------------------------------

MINLSTM_CACHE = (1, 1)   # f, i (B, H) each; the step also keeps h_{t-1} and a view of h~ in zx


def minlstm_step_forward(zx, state, p, out=None):
    """One character: zx (B, 3H) = [zf, zi, h~], state (h_{t-1},) -> ((h_t,), (h_{t-1}, f, i, h~))."""
    (h_prev,) = state
    H = h_prev.shape[1]
    h, f, i = _step_out(out, *h_prev.shape, 3, zx.dtype)
    sigmoid(zx[:, :H], out=f)                                    # (B, H) forget gate
    sigmoid(zx[:, H:2 * H], out=i)                               # (B, H) input gate
    h_tilde = zx[:, 2 * H:]                                      # (B, H) candidate
    f_prime = f / (f + i)                                        # (B, H) normalised: f' + i' = 1
    i_prime = i / (f + i)
    h[...] = f_prime * h_prev + i_prime * h_tilde                # (B, H)
    return (h,), (h_prev, f, i, h_tilde)


def minlstm_step_backward(dstate, cache, p, out=None):
    (dh,) = dstate
    h_prev, f, i, h_tilde = cache
    H = f.shape[1]
    dzx = out[0] if out else np.empty((f.shape[0], 3 * H), dtype=f.dtype)   # (B, 3H)
    s = f + i                                                    # (B, H)
    df_prime = dh * h_prev                                       # (B, H)
    di_prime = dh * h_tilde
    df = (df_prime - di_prime) * i / (s * s)                     # through f' = f/s and i' = i/s
    di = (di_prime - df_prime) * f / (s * s)
    dzx[:, :H] = df * sigmoid_grad(f)                            # dzf
    dzx[:, H:2 * H] = di * sigmoid_grad(i)                       # dzi
    dzx[:, 2 * H:] = dh * i / s                                  # dh~ = dh i'
    dh_prev = dh * f / s                                         # (B, H) dh f'
    return dzx, dzx, (dh_prev,)


# --------------------------------------------------------------------------------------------------------
# The window kernels: all gates at once, the linear recurrence, all gate gradients at once.
#
# Memory and passes. Every element-wise call is a pass over a (T, B, H) array, and they are most of a step's
# time (docs/mincells.md), so the kernels make few of them and allocate nothing when the sequence loop hands
# them a Workspace: then -- as the step loop does with gates_over_input -- the gates are written over their
# own pre-activations in zx (zx belongs to the caller's workspace), and the backward writes the gate
# gradients over the gates, so dzx is zx's own array. Without a workspace nothing passed in is changed.
# The comments marked "order" say which read must come before a write.
# --------------------------------------------------------------------------------------------------------

@dataclass
class WindowCache:
    """What a window's backward needs: the recurrence's a, the states entering each step, the cell's gate
    arrays (minGRU [u, h~], minLSTM [zf, zi, h~] as the (G, T, B, H) array ``gates``, plus minLSTM's i'),
    and how the recurrence was run."""

    a: np.ndarray           # (T, B, H) the recurrence's coefficients
    h_prev: np.ndarray      # (T, B, H) h_0 .. h_{T-1}
    hs: np.ndarray          # (T, B, H) h_1 .. h_T (the same array as h_prev, one step on)
    gates: np.ndarray       # (G, T, B, H) zx's array (with a workspace) or a copy, holding the gates
    extra: tuple            # more (T, B, H) gate arrays (minLSTM: i')
    form: str               # "loop" or "scan": the backward runs its recurrence the same way
    in_place: bool          # gates is the caller's zx (a workspace): the backward may write dzx over it


def run_recurrence(a, b, state0, ws, name: str, form: str):
    """h_t = a_t h_{t-1} + b_t from state0 = (h_0,) -> (hs (T, B, H), final state, h_prev (T, B, H))."""
    T, B, H = b.shape
    hs_all = workspace_empty(ws, f"{name}hs", (T + 1, B, H), b.dtype)   # h_0, h_1 .. h_T
    hs_all[0] = state0[0]
    linear_recurrence(a, b, hs_all[0], hs_all[1:], form)
    return hs_all[1:], (hs_all[T].copy(),), hs_all[:-1]


def final_grad(dstate_final):
    """The gradient arriving at h_T from after the window: (dh_T,) -> dh_T; None (truncated BPTT) stays None."""
    return None if dstate_final is None else dstate_final[0]


def gates_array(zx, ws):
    """zx itself when the caller's workspace owns it (the gates go over it), else a copy to write them in."""
    return zx if ws is not None else zx.copy()


def mingru_window_forward(zx, state0, p, ws=None, name="", form: str = DEFAULT_FORM):
    """zx (2, T, B, H) gate-major [zu, h~] -> (hs (T, B, H), final state, WindowCache): u for every step,
    then the recurrence."""
    gates = gates_array(zx, ws)                                  # (2, T, B, H) [zu, h~] -> [u, h~]
    u, h_tilde = gates
    sigmoid(u, out=u)                                            # (T, B, H) every update gate at once
    a = workspace_empty(ws, f"{name}a", u.shape, zx.dtype)
    np.subtract(1.0, u, out=a)                                   # a_t = 1 - u
    b = workspace_empty(ws, f"{name}b", u.shape, zx.dtype)
    np.multiply(u, h_tilde, out=b)                               # b_t = u h~
    hs, final, h_prev = run_recurrence(a, b, state0, ws, name, form)
    return hs, final, WindowCache(a, h_prev, hs, gates, (), form, ws is not None)


def mingru_window_backward(dhs, cache: WindowCache, p, dstate_final=None, ws=None, name=""):
    """dhs (T, B, H) from above -> (dzx (2, T, B, H), {} (no recurrent weights), (dh_0,)).

    With db = dL/db_t from the reversed recurrence (all the gradient reaching h_t) and da = db h_{t-1}:
    du = db h~ - da = db (h~ - h_{t-1}), so dzu = du u (1 - u) = db (h_t - h_{t-1}) (1 - u) -- because
    u (h~ - h_{t-1}) = h_t - h_{t-1}, the step's own change, which needs no h~ and one pass less -- and
    dh~ = db u."""
    db = workspace_empty(ws, f"{name}db", cache.a.shape, dhs.dtype)
    db, dh0 = linear_recurrence_backward(cache.a, dhs, final_grad(dstate_final), cache.form, db)   # (T, B, H)
    u = cache.gates[0]
    dzx = cache.gates if cache.in_place else np.empty_like(cache.gates)   # (2, T, B, H)
    np.multiply(db, u, out=dzx[1])                               # dh~ = db u, over h~
    dzu = dzx[0]                                                 # over u: read it above, not below
    np.subtract(cache.hs, cache.h_prev, out=dzu)                 # h_t - h_{t-1} = u (h~ - h_{t-1})
    dzu *= db
    dzu *= cache.a                                               # dzu = db (h_t - h_{t-1}) (1 - u)
    return dzx, {}, (dh0,)


def softplus(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no log(0) for very negative x
    (and 10x faster than np.logaddexp(0, x), which NumPy does not vectorise)."""
    out = np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(x, 0.0)
    return out


def minlstm_window_forward(zx, state0, p, ws=None, name="", form: str = DEFAULT_FORM):
    """zx (3, T, B, H) gate-major [zf, zi, h~] -> (hs (T, B, H), final state, WindowCache), with
    f' = sig(softplus(-zi) - softplus(-zf))."""
    gates = gates_array(zx, ws)                                  # (3, T, B, H) [zf, zi, h~], kept for backward
    zf, zi, h_tilde = gates
    a = workspace_empty(ws, f"{name}a", h_tilde.shape, zx.dtype)
    softplus(-zi, out=a)                                         # -log i
    a -= softplus(-zf)                                           # d = log f - log i
    i_prime = workspace_empty(ws, f"{name}i", h_tilde.shape, zx.dtype)
    sigmoid(a, out=a)                                            # a_t = f' = sig(d) = f / (f + i)
    np.subtract(1.0, a, out=i_prime)                             # i' = 1 - f' = i / (f + i)
    b = workspace_empty(ws, f"{name}b", h_tilde.shape, zx.dtype)
    np.multiply(i_prime, h_tilde, out=b)                         # b_t = i' h~
    hs, final, h_prev = run_recurrence(a, b, state0, ws, name, form)
    return hs, final, WindowCache(a, h_prev, hs, gates, (i_prime,), form, ws is not None)


def minlstm_window_backward(dhs, cache: WindowCache, p, dstate_final=None, ws=None, name=""):
    """dhs (T, B, H) from above -> (dzx (3, T, B, H), {}, (dh_0,)).

    da = df' = db h_{t-1} and di' = db h~ give dd = (df' - di') f' i' = db (h_{t-1} - h~) f' i'
    = -db (h_t - h_{t-1}) f' (because i' (h~ - h_{t-1}) = h_t - h_{t-1}, the step's own change), then
    dzf = dd (1 - f), dzi = -dd (1 - i) and dh~ = db i'."""
    (i_prime,) = cache.extra
    db = workspace_empty(ws, f"{name}db", i_prime.shape, dhs.dtype)
    db, dh0 = linear_recurrence_backward(cache.a, dhs, final_grad(dstate_final), cache.form, db)   # (T, B, H)
    zf, zi, _ = cache.gates
    dd = workspace_empty(ws, f"{name}t", i_prime.shape, dhs.dtype)
    np.subtract(cache.h_prev, cache.hs, out=dd)                  # (T, B, H) -(h_t - h_{t-1})
    dd *= db
    dd *= cache.a                                                # dd = -db (h_t - h_{t-1}) f'
    dzx = cache.gates if cache.in_place else np.empty_like(cache.gates)   # (3, T, B, H)
    np.multiply(db, i_prime, out=dzx[2])                         # dh~ = db i', over h~
    for z, dz, sign in ((zf, dzx[0], 1.0), (zi, dzx[1], -1.0)):
        np.negative(z, out=dz)
        sigmoid(dz, out=dz)                                      # 1 - f = sig(-zf) (1 - i), over zf (zi)
        dz *= dd                                                 # dzf = dd (1 - f)
        if sign < 0:
            np.negative(dz, out=dz)                              # dzi = -dd (1 - i)
    return dzx, {}, (dh0,)
