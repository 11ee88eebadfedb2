"""The recurrent cells -- vanilla RNN, LSTM, GRU, and minGRU / minLSTM -- side by side, behind one interface.

Every cell is a pair of *stateless* functions, and ``Cell.init`` draws its parameters under one of the
initialisation schemes of ``initializers.py`` (rnnlab, pytorch, keras, blockorth; ``--init``):

    step_forward(zx, state, p, out=None)      -> (next_state, cache)
    step_backward(dstate, cache, p, out=None) -> (dzx, dzh, dprev_state)

``dzx`` is the gradient of the gate pre-activations (flowing to ``Wx``, ``b`` and the layer input) and
``dzh`` that of the recurrent projection ``h_{t-1} @ Wh (+ bh)``; they differ only for the GRU, where the
reset gate sits between the two. The cell does not touch weight gradients: the sequence loop computes
``dWh = sum_t h_{t-1}^T dzh_t`` for all steps as ONE matrix product after BPTT (faster than T small ones).

``zx = x @ Wx + b`` is the input's contribution to every gate, computed for *all* time steps at once by the
sequence loop in ``model.py`` (one matrix product, or a row lookup for character ids, instead of T small
ones). A state is a tuple of (B, H) arrays whose first element is the hidden output ``h``: ``(h,)`` for RNN,
GRU, minGRU and minLSTM, ``(h, c)`` for LSTM. One BPTT loop serves every cell through :data:`CELLS`; minGRU
and minLSTM, whose gates do not read h, also declare a window kernel that the loop runs instead of stepping
(its zx then comes gate-major, (G, T, B, H): ``recurrence.layer_inputs``).

``out`` is where a step writes its results: forward, the new ``h`` followed by the cell's cache arrays
(widths ``Cell.cache_widths`` times H); backward, ``(dzx, dzh)`` (the same array unless the cell has a
recurrent bias). The sequence loop passes slices of arrays it keeps from one training step to the next,
so a step allocates almost nothing (see ``recurrence.Workspace``); called alone, a step allocates them.
The returned state and cache are views of ``out``. The recurrent products read Wh^T from
:func:`recurrent_weights_transposed`: the sequence loop makes it once per sequence as ``p["WhT"]``.

Parameter layout (one layer; ``In`` inputs, ``H`` units, ``G`` gate blocks side by side in column order):

=======  ==  ==================  ==========================================================
cell     G   gate order           parameters
=======  ==  ==================  ==========================================================
rnn      1   (h)                  Wx (In, H),  Wh (H, H),  b (H,)
lstm     4   (i, f, g, o)         Wx (In, 4H), Wh (H, 4H), b (4H,)
gru      3   (r, u, n)            Wx (In, 3H), Wh (H, 3H), b (3H,) input bias, bh (3H,) recurrent bias
mingru   2   (u, h~)              Wx (In, 2H), b (2H,): no Wh (mincells.py)
minlstm  3   (f, i, h~)           Wx (In, 3H), b (3H,): no Wh
=======  ==  ==================  ==========================================================

Keras stores LSTM gates as (i, f, c, o) -- the same order, ``c`` is our ``g`` -- and PyTorch as (i, f, g, o)
with two biases that add up. Our GRU is the "reset after" form of PyTorch ``nn.GRU`` and Keras
``GRU(reset_after=True)``: the reset gate multiplies the *projected* previous state ``h @ Wh_n + bh_n``,
which is why it keeps a separate recurrent bias. The conversions live in ``rnnlab.frameworks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .activations import sigmoid, sigmoid_grad, tanh_grad
from .initializers import DEFAULT_INIT, init_layer
from .mincells import (
    MINGRU_CACHE,
    MINLSTM_CACHE,
    mingru_step_backward,
    mingru_step_forward,
    mingru_window_backward,
    mingru_window_forward,
    minlstm_step_backward,
    minlstm_step_forward,
    minlstm_window_backward,
    minlstm_window_forward,
)

# --------------------------------------------------------------------------------------------------------
# Vanilla RNN
#   h_t = tanh(zx_t + h_{t-1} Wh)                    zx_t = x_t Wx + b
#   dz  = dh_t * (1 - h_t^2)                         (dz: the gradient of a pre-activation, in every cell)
#   dzx_t = dzh_t = dz,   dh_{t-1} = dz Wh^T         (the loop adds dWh = sum_t h_{t-1}^T dzh_t)
# --------------------------------------------------------------------------------------------------------

def new_step_out(widths, batch: int, hidden: int, dtype) -> tuple:
    """Fresh ``out`` arrays for one step: h, then one (B, w*H) array per cache width w."""
    return tuple(np.empty((batch, w * hidden), dtype=dtype) for w in (1, *widths))


def new_grad_out(cache_array: np.ndarray, n_gates: int, separate_dzh: bool) -> tuple:
    """Fresh ``(dzx, dzh)`` for one backward step."""
    B, H = cache_array.shape[0], cache_array.shape[1]
    dzx = np.empty((B, n_gates * H), dtype=cache_array.dtype)
    return dzx, (np.empty_like(dzx) if separate_dzh else dzx)


def recurrent_weights_transposed(p: dict) -> np.ndarray:
    """Wh^T (GH, H): ``p["WhT"]`` where the sequence loop has stored it -- one C-contiguous copy per
    sequence -- else the transposed view ``Wh.T``. With a batch of a few dozen rows, OpenBLAS's products run
    1.1-1.6x faster when the weights are the C-contiguous Wh^T (docs/performance.md): forward as
    (Wh^T h^T)^T (:func:`recurrent_projection`), backward as dz Wh^T."""
    return p["WhT"] if "WhT" in p else p["Wh"].T


def recurrent_projection(h_prev: np.ndarray, p: dict) -> np.ndarray:
    """h_{t-1} Wh (B, GH), computed as (Wh^T h_{t-1}^T)^T: the same product, faster for the LSTM's and
    GRU's wide Wh (see above; the RNN's square Wh gains nothing and keeps ``h_prev @ Wh``); the result is
    a transposed (column-major) view."""
    return (recurrent_weights_transposed(p) @ h_prev.T).T


def rnn_cell_step(zx, state, p, out=None):
    (h_prev,) = state
    (h,) = out or new_step_out((), *h_prev.shape, zx.dtype)
    np.matmul(h_prev, p["Wh"], out=h)                            # (B, H)
    h += zx
    np.tanh(h, out=h)                                            # (B, H)
    return (h,), (h,)


def rnn_cell_step_backward(dstate, cache, p, out=None):
    (dh,) = dstate
    (h,) = cache
    dz, _ = out or new_grad_out(h, 1, False)
    np.multiply(dh, tanh_grad(h), out=dz)                        # (B, H)
    return dz, dz, (dz @ recurrent_weights_transposed(p),)


# --------------------------------------------------------------------------------------------------------
# LSTM  (gate blocks i, f, g, o)
#   [zi, zf, zg, zo] = zx_t + h_{t-1} Wh
#   i = sig(zi)  f = sig(zf)  g = tanh(zg)  o = sig(zo)
#   c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)
# backward, with dh_t and dc_t arriving from above and from step t+1:
#   do = dh * tanh(c_t)                dc = dc_t + dh * o * (1 - tanh(c_t)^2)
#   di = dc * g   df = dc * c_{t-1}   dg = dc * i          dc_{t-1} = dc * f
#   dz = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
#   dzx_t = dzh_t = dz,   dh_{t-1} = dz Wh^T
#
# Speed, same maths: all four gates come from ONE tanh over the (B, 4H) block, because
# sig(z) = (1 + tanh(z/2)) / 2: the i, f, o columns are halved before the tanh and mapped to (1 + t) / 2
# after it -- whole rows times gates `scale` row plus an `offset` row (1 and 0 in the g block). Likewise one
# expression gives every gate's local derivative: with a = scale * t + offset,
#   sig' = s(1 - s) = 1/4 - (s - 1/2)^2      tanh' = 1 - g^2,      i.e.  scale^2 - (gates - offset)^2,
# three in-place passes over the (B, 4H) block and no temporary array.
# In place: the sequence loop may hand the step zx's own slot for `gates` (the gates overwrite the input
# projection) and, backward, the slot of `gates` for dz (the gate gradients overwrite the gates), so each step reads
# what it needs before it writes; the comments marked "order" say which read must come first.
# Every element-wise call is a pass over memory (docs/performance.md counts the bytes, benchmarks/lstm_bytes.py
# measures them): the forward step makes 5 passes over (B, 4H) and 5 over (B, H), the backward 4 and 10.
# lstm_reference_step_forward / _backward below compute the same step as the equations read, with nothing
# fused and nothing in place (tests/nn/test_cells.py checks that both agree).
# --------------------------------------------------------------------------------------------------------

LSTM_CACHE = (4, 1, 1)   # gate activations gates = [i, f, g, o] (B, 4H), c (B, H), tanh(c) (B, H)


@lru_cache(maxsize=32)
def _lstm_block_constants(hidden: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, offset, scale^2) rows of length 4H for the gate blocks i, f, g, o: 0.5 / 0.5 / 0.25 in the
    sigmoid blocks, 1 / 0 / 1 in the tanh block g."""
    scale = np.full(4 * hidden, 0.5, dtype=dtype)
    scale[2 * hidden:3 * hidden] = 1.0
    offset = np.where(scale == 1.0, 0.0, 0.5).astype(dtype)
    return scale, offset, scale * scale


def lstm_cell_step(zx, state, p, out=None):
    h_prev, c_prev = state
    H = h_prev.shape[1]
    h, gates, c, tc = out or new_step_out(LSTM_CACHE, *h_prev.shape, zx.dtype)
    scale, offset, _ = _lstm_block_constants(H, zx.dtype)
    np.add(zx, recurrent_projection(h_prev, p), out=gates)       # (B, 4H) zx + h_prev Wh = [zi, zf, zg, zo]
    gates *= scale
    np.tanh(gates, out=gates)                                            # tanh(z/2) for i, f, o; tanh(z) for g
    gates *= scale
    gates += offset                                                  # (1 + tanh(z/2)) / 2 = sig(z) for i, f, o
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    np.multiply(f, c_prev, out=c)                                # (B, H)
    np.multiply(i, g, out=tc)                                    # (B, H) tc's slot as scratch: no temporary
    c += tc                                                      # c = f c_prev + i g
    np.tanh(c, out=tc)                                           # (B, H)
    np.multiply(o, tc, out=h)                                    # (B, H)
    return (h, c), (c_prev, gates, tc)


def lstm_cell_step_backward(dstate, cache, p, out=None):
    dh, dc_next = dstate
    c_prev, gates, tc = cache
    H = tc.shape[1]
    _, offset, scale2 = _lstm_block_constants(H, gates.dtype)
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]   # views
    dc = np.multiply(tc, tc)                                     # (B, H)
    np.subtract(1.0, dc, out=dc)                                 # 1 - tanh(c_t)^2
    dc *= o
    dc *= dh
    dc += dc_next                                                # dc = dc_t + dh * o * (1 - tanh(c_t)^2)
    dc_prev = dc * f                                             # (B, H); order: reads f before dz may overwrite it
    dgates = np.empty_like(gates)                                # (B, 4H) [di, df, dg, do], before the local derivative
    np.multiply(dc, g, out=dgates[:, :H])                        #   di
    np.multiply(dc, c_prev, out=dgates[:, H:2 * H])              #   df
    np.multiply(dc, i, out=dgates[:, 2 * H:3 * H])               #   dg (reads i: dgates is not the slot of gates)
    np.multiply(dh, tc, out=dgates[:, 3 * H:])                   #   do
    dz, _ = out or new_grad_out(tc, 4, False)                    # (B, 4H), may be the slot of `gates`:
    np.subtract(gates, offset, out=dz)                           # order: every read of i, f, g, o (views) is above
    np.square(dz, out=dz)
    np.subtract(scale2, dz, out=dz)                              # local derivatives scale^2 - (gates - offset)^2
    dz *= dgates                                                 # dz = [di, df, dg, do] * local derivative
    return dz, dz, (dz @ recurrent_weights_transposed(p), dc_prev)


def lstm_reference_step_forward(zx, state, p):
    """The textbook LSTM step, one line per equation of docs/bptt.md: the algorithmic reference for
    :func:`lstm_cell_step` (same inputs and outputs; no fused tanh, nothing in place, fresh arrays).

        [zi, zf, zg, zo] = zx_t + h_{t-1} Wh
        i = sig(zi)   f = sig(zf)   g = tanh(zg)   o = sig(zo)
        c_t = f * c_{t-1} + i * g        h_t = o * tanh(c_t)
    """
    h_prev, c_prev = state
    H = h_prev.shape[1]
    z = zx + h_prev @ p["Wh"]                                    # (B, 4H) pre-activations
    zi, zf, zg, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
    i = sigmoid(zi)                                              # (B, H) input gate
    f = sigmoid(zf)                                              # (B, H) forget gate
    g = np.tanh(zg)                                              # (B, H) candidate
    o = sigmoid(zo)                                              # (B, H) output gate
    c = f * c_prev + i * g                                       # (B, H) cell state
    tanh_c = np.tanh(c)                                          # (B, H)
    h = o * tanh_c                                               # (B, H) hidden state
    return (h, c), (c_prev, i, f, g, o, tanh_c)


def lstm_reference_step_backward(dstate, cache, p):
    """Backward of :func:`lstm_reference_step_forward`, one line per equation of docs/bptt.md.

        dc = dc_t + dh * o * (1 - tanh(c_t)^2)     do = dh * tanh(c_t)
        di = dc * g   df = dc * c_{t-1}   dg = dc * i   dc_{t-1} = dc * f
        dz = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]        dh_{t-1} = dz Wh^T
    -> (dzx, dzh, (dh_{t-1}, dc_{t-1})) with dzx = dzh = dz, as every cell's step_backward.
    """
    dh, dc_next = dstate
    c_prev, i, f, g, o, tanh_c = cache
    dc = dc_next + dh * o * tanh_grad(tanh_c)                    # (B, H) all the gradient reaching c_t
    do = dh * tanh_c                                             # (B, H)
    di = dc * g                                                  # (B, H)
    df = dc * c_prev                                             # (B, H)
    dg = dc * i                                                  # (B, H)
    dc_prev = dc * f                                             # (B, H) to step t-1
    dzi = di * sigmoid_grad(i)                                   # (B, H) through each gate's activation
    dzf = df * sigmoid_grad(f)
    dzg = dg * tanh_grad(g)
    dzo = do * sigmoid_grad(o)
    dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)            # (B, 4H) pre-activation gradient
    dh_prev = dz @ p["Wh"].T                                     # (B, H) to step t-1
    return dz, dz, (dh_prev, dc_prev)


# --------------------------------------------------------------------------------------------------------
# GRU, "reset after" (PyTorch nn.GRU, Keras reset_after=True)  (gate blocks r, u, n)
#   [xr, xu, xn] = zx_t = x_t Wx + b          [hr, hu, hn] = h_{t-1} Wh + bh
#   r = sig(xr + hr)   u = sig(xu + hu)   n = tanh(xn + r * hn)
#   h_t = (1 - u) * n + u * h_{t-1}
# (u is the update gate, PyTorch's and Keras' "z": here z always names a pre-activation, dz its gradient.)
# backward:
#   dn = dh (1 - u)    du = dh (h_{t-1} - n)    dzn = dn (1 - n^2)    dr = dzn * hn
#   dzx = [dr r(1-r), du u(1-u), dzn]      dzh = [dr r(1-r), du u(1-u), dzn * r]
#   dh_{t-1} = dh u + dzh Wh^T                (the loop adds dWh = sum h^T dzh and dbh = sum dzh)
# --------------------------------------------------------------------------------------------------------

GRU_CACHE = (3, 1)       # gates [r, u, n] (B, 3H), projected previous state hn (B, H)


def gru_cell_step(zx, state, p, out=None):
    (h_prev,) = state
    H = h_prev.shape[1]
    h, gates, hn = out or new_step_out(GRU_CACHE, *h_prev.shape, zx.dtype)   # gates may be zx's own slot
    hh = recurrent_projection(h_prev, p)                         # (B, 3H) h_prev Wh
    hh += p["bh"]
    ru = gates[:, :2 * H]
    np.add(zx[:, :2 * H], hh[:, :2 * H], out=ru)
    sigmoid(ru, out=ru)                                          # (B, 2H) reset and update gates
    r, u, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    hn[...] = hh[:, 2 * H:]                                      # (B, H) projected previous state
    np.add(zx[:, 2 * H:], r * hn, out=n)
    np.tanh(n, out=n)                                            # (B, H) candidate
    np.subtract(h_prev, n, out=h)
    h *= u
    h += n                                                       # (B, H) = (1 - u) n + u h_prev
    return (h,), (h_prev, gates, hn)


def gru_cell_step_backward(dstate, cache, p, out=None):
    (dh,) = dstate
    h_prev, gates, hn = cache
    H = hn.shape[1]
    r, u, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    dzx, dzh = out or new_grad_out(hn, 3, True)                  # (B, 3H) each; dzx may be the gates' slot
    dh_prev = dh * u
    dzn = tanh_grad(n)
    dzn *= dh * (1.0 - u)                                        # d(xn + r hn)
    np.multiply(dzn, hn, out=dzh[:, :H])                         # dr
    np.multiply(dh, h_prev - n, out=dzh[:, H:2 * H])             # du
    dzh[:, :2 * H] *= sigmoid_grad(gates[:, :2 * H])             # through both sigmoids at once
    np.multiply(dzn, r, out=dzh[:, 2 * H:])                      # dzh: r scales the n block ...
    dzx[:, :2 * H] = dzh[:, :2 * H]
    dzx[:, 2 * H:] = dzn                                         # ... dzx: it does not
    dh_prev += dzh @ recurrent_weights_transposed(p)
    return dzx, dzh, (dh_prev,)


def gru_reference_step_forward(zx, state, p):
    """The textbook GRU step, one line per equation above: the algorithmic reference for
    :func:`gru_cell_step` (same inputs and outputs; nothing fused, nothing in place, fresh arrays).

        [xr, xu, xn] = zx_t          [hr, hu, hn] = h_{t-1} Wh + bh
        r = sig(xr + hr)   u = sig(xu + hu)   n = tanh(xn + r * hn)
        h_t = (1 - u) * n + u * h_{t-1}
    """
    (h_prev,) = state
    H = h_prev.shape[1]
    xr, xu, xn = zx[:, :H], zx[:, H:2 * H], zx[:, 2 * H:]        # (B, H) each: the input's share
    hh = h_prev @ p["Wh"] + p["bh"]                              # (B, 3H) the projected previous state
    hr, hu, hn = hh[:, :H], hh[:, H:2 * H], hh[:, 2 * H:]
    r = sigmoid(xr + hr)                                         # (B, H) reset gate
    u = sigmoid(xu + hu)                                         # (B, H) update gate
    n = np.tanh(xn + r * hn)                                     # (B, H) candidate
    h = (1.0 - u) * n + u * h_prev                               # (B, H) hidden state
    return (h,), (h_prev, r, u, n, hn)


def gru_reference_step_backward(dstate, cache, p):
    """Backward of :func:`gru_reference_step_forward`, one line per equation above.

        dn = dh (1 - u)    du = dh (h_{t-1} - n)    dzn = dn (1 - n^2)    dr = dzn * hn
        dzx = [dr r(1-r), du u(1-u), dzn]      dzh = [dr r(1-r), du u(1-u), dzn * r]
        dh_{t-1} = dh u + dzh Wh^T
    -> (dzx, dzh, (dh_{t-1},)), as every cell's step_backward.
    """
    (dh,) = dstate
    h_prev, r, u, n, hn = cache
    dn = dh * (1.0 - u)                                          # (B, H) through h_t = (1 - u) n + u h_{t-1}
    du = dh * (h_prev - n)                                       # (B, H)
    dzn = dn * tanh_grad(n)                                      # (B, H) through n = tanh(xn + r hn)
    dr = dzn * hn                                                # (B, H)
    dzr = dr * sigmoid_grad(r)                                   # (B, H) through r = sig(xr + hr)
    dzu = du * sigmoid_grad(u)                                   # (B, H) through u = sig(xu + hu)
    dzx = np.concatenate([dzr, dzu, dzn], axis=1)                # (B, 3H) the input's pre-activations
    dzh = np.concatenate([dzr, dzu, dzn * r], axis=1)            # (B, 3H) r scales the recurrent n block
    dh_prev = dh * u + dzh @ p["Wh"].T                           # (B, H) to step t-1
    return dzx, dzh, (dh_prev,)


@dataclass(frozen=True)
class Cell:
    """One recurrent cell type: what the sequence loop and the initialisers need to know, and its two steps.

    ``recurrent_bias``: the layer has a bias ``bh`` on the recurrent projection that is *not* the same as
    adding it to ``b`` (GRU: the reset gate multiplies ``h Wh_n + bh_n``); the sequence loop then keeps
    ``dzh`` apart from ``dzx`` and adds ``dbh = sum_t dzh_t``. ``forget_gate``: the gate block whose bias
    ``--forget_bias`` sets, or None. ``gates_over_input``: the forward step reads ``zx`` before it writes its
    gate activations (its first cache array, as wide as ``zx``), so the loop may hand it ``zx``'s own slot
    for them, and the backward step may then write the gate gradients there.

    ``recurrent_weights``: the layer has ``Wh`` (False for minGRU / minLSTM: their gates read the input
    only; the sequence loop then computes no dWh). ``window_forward`` / ``window_backward``: a kernel that
    runs a whole window at once -- ``(zx, state0, p, ws, name) -> (hs, final state, cache)`` and
    ``(dhs, cache, p, dstate_final, ws, name) -> (dzx, recurrent grads, dstate0)``, the signatures of
    ``recurrence.sequence_forward`` / ``sequence_backward``, which run it instead of stepping (mincells.py).
    """

    name: str
    n_gates: int
    n_states: int
    cache_widths: tuple      # per-step arrays the forward step fills besides h, in units of H
    step_forward: Callable
    step_backward: Callable
    recurrent_bias: bool = False
    forget_gate: int | None = None
    gates_over_input: bool = False
    recurrent_weights: bool = True
    window_forward: Callable | None = None
    window_backward: Callable | None = None

    def init(self, input_size: int, hidden: int, rng: np.random.Generator, scheme: str = DEFAULT_INIT,
             forget_bias: float | None = None) -> dict:
        """One layer's parameters {Wx, Wh, b[, bh]} (float64) under an initialisation scheme."""
        return init_layer(self, input_size, hidden, rng, scheme, forget_bias)

    def param_shapes(self, input_size: int, hidden: int) -> dict:
        """{name: shape} of one layer's parameters (what ``init`` returns), without allocating them."""
        GH = self.n_gates * hidden
        shapes = {"Wx": (input_size, GH), "Wh": (hidden, GH), "b": (GH,)}
        if not self.recurrent_weights:
            del shapes["Wh"]
        return {**shapes, "bh": (GH,)} if self.recurrent_bias else shapes

    def zero_state(self, batch: int, hidden: int, dtype) -> tuple:
        return tuple(np.zeros((batch, hidden), dtype=dtype) for _ in range(self.n_states))


CELLS = {
    "rnn": Cell("rnn", 1, 1, (), rnn_cell_step, rnn_cell_step_backward),
    "lstm": Cell("lstm", 4, 2, LSTM_CACHE, lstm_cell_step, lstm_cell_step_backward, forget_gate=1,
                 gates_over_input=True),
    "gru": Cell("gru", 3, 1, GRU_CACHE, gru_cell_step, gru_cell_step_backward, recurrent_bias=True,
                gates_over_input=True),
    # gates from the input only: a linear recurrence, run a window at a time (mincells.py, scan.py)
    "mingru": Cell("mingru", 2, 1, MINGRU_CACHE, mingru_step_forward, mingru_step_backward, recurrent_weights=False,
                   window_forward=mingru_window_forward, window_backward=mingru_window_backward),
    "minlstm": Cell("minlstm", 3, 1, MINLSTM_CACHE, minlstm_step_forward, minlstm_step_backward, forget_gate=0,
                    recurrent_weights=False, window_forward=minlstm_window_forward,
                    window_backward=minlstm_window_backward),
}
