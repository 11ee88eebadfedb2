"""The recurrent cells -- vanilla RNN, LSTM, GRU -- side by side, behind one interface.

Every cell is a pair of *stateless* functions plus an initialiser:

    step_forward(zx, state, p)          -> (next_state, cache)
    step_backward(dstate, cache, p, g)  -> (dzx, dprev_state)      (adds dWh, and dbh for GRU, into g)

``zx = x @ Wx + b`` is the input's contribution to every gate, computed for *all* time steps at once by the
sequence loop in ``model.py`` (one matrix product, or a row lookup for character ids, instead of T small
ones). A state is a tuple of (B, H) arrays whose first element is the hidden output ``h``: ``(h,)`` for RNN
and GRU, ``(h, c)`` for LSTM. One BPTT loop serves all three cells through :data:`CELLS`.

Parameter layout (one layer; ``In`` inputs, ``H`` units, ``G`` gate blocks side by side in column order):

=====  ==  ==================  ==========================================================
cell   G   gate order           parameters
=====  ==  ==================  ==========================================================
rnn    1   (a)                  Wx (In, H),  Wh (H, H),  b (H,)
lstm   4   (i, f, g, o)         Wx (In, 4H), Wh (H, 4H), b (4H,)   -- f slice of b starts at 1
gru    3   (r, z, n)            Wx (In, 3H), Wh (H, 3H), b (3H,) input bias, bh (3H,) recurrent bias
=====  ==  ==================  ==========================================================

Keras stores LSTM gates as (i, f, c, o) -- the same order, ``c`` is our ``g`` -- and PyTorch as (i, f, g, o)
with two biases that add up. Our GRU is the "reset after" form of PyTorch ``nn.GRU`` and Keras
``GRU(reset_after=True)``: the reset gate multiplies the *projected* previous state ``h @ Wh_n + bh_n``,
which is why it keeps a separate recurrent bias. The conversions live in ``rnnlab.frameworks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .activations import sigmoid, sigmoid_grad, tanh, tanh_grad


def uniform(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape)


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random (n, n) orthogonal matrix: keeps ||h @ Wh|| = ||h||, so early gradients neither explode nor
    vanish through the recurrence (Saxe et al. 2014; Keras' default recurrent initialiser)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def init_gates(input_size: int, hidden: int, n_gates: int, rng: np.random.Generator) -> dict:
    """Wx ~ U(+-1/sqrt(H)) (PyTorch's scale), Wh orthogonal per gate block, b = 0 (float64)."""
    return {
        "Wx": uniform(rng, (input_size, n_gates * hidden), 1.0 / np.sqrt(hidden)),
        "Wh": np.concatenate([orthogonal(rng, hidden) for _ in range(n_gates)], axis=1),
        "b": np.zeros(n_gates * hidden),
    }


# --------------------------------------------------------------------------------------------------------
# Vanilla RNN
#   a_t = tanh(zx_t + h_{t-1} Wh)                    zx_t = x_t Wx + b
#   da  = dh_t * (1 - a_t^2)
#   dWh += h_{t-1}^T da,   dh_{t-1} = da Wh^T,   dzx_t = da
# --------------------------------------------------------------------------------------------------------

def rnn_init(input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    return init_gates(input_size, hidden, 1, rng)


def rnn_cell_step(zx, state, p):
    (h_prev,) = state
    h = tanh(zx + h_prev @ p["Wh"])                              # (B, H)
    return (h,), (h_prev, h)


def rnn_cell_step_backward(dstate, cache, p, grads):
    (dh,) = dstate
    h_prev, h = cache
    da = dh * tanh_grad(h)                                       # (B, H)
    grads["Wh"] += h_prev.T @ da                                 # (H, H)
    return da, (da @ p["Wh"].T,)


# --------------------------------------------------------------------------------------------------------
# LSTM  (gate blocks i, f, g, o)
#   [zi, zf, zg, zo] = zx_t + h_{t-1} Wh
#   i = sig(zi)  f = sig(zf)  g = tanh(zg)  o = sig(zo)
#   c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)
# backward, with dh_t and dc_t arriving from above and from step t+1:
#   do = dh * tanh(c_t)                dc = dc_t + dh * o * (1 - tanh(c_t)^2)
#   di = dc * g   df = dc * c_{t-1}   dg = dc * i          dc_{t-1} = dc * f
#   dz = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
#   dWh += h_{t-1}^T dz,   dh_{t-1} = dz Wh^T,   dzx_t = dz
# --------------------------------------------------------------------------------------------------------

def lstm_init(input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    p = init_gates(input_size, hidden, 4, rng)
    p["b"][hidden:2 * hidden] = 1.0  # forget-gate bias 1: remember by default (Keras unit_forget_bias)
    return p


def lstm_cell_step(zx, state, p):
    h_prev, c_prev = state
    H = h_prev.shape[1]
    z = zx + h_prev @ p["Wh"]                                    # (B, 4H)
    i = sigmoid(z[:, :H])                                        # (B, H) input gate
    f = sigmoid(z[:, H:2 * H])                                   # (B, H) forget gate
    g = tanh(z[:, 2 * H:3 * H])                                  # (B, H) candidate
    o = sigmoid(z[:, 3 * H:])                                    # (B, H) output gate
    c = f * c_prev + i * g                                       # (B, H)
    tc = tanh(c)                                                 # (B, H)
    h = o * tc                                                   # (B, H)
    return (h, c), (h_prev, c_prev, i, f, g, o, tc)


def lstm_cell_step_backward(dstate, cache, p, grads):
    dh, dc_next = dstate
    h_prev, c_prev, i, f, g, o, tc = cache
    dc = dc_next + dh * o * tanh_grad(tc)                        # (B, H)
    dz = np.concatenate([
        dc * g * sigmoid_grad(i),                                # d zi
        dc * c_prev * sigmoid_grad(f),                           # d zf
        dc * i * tanh_grad(g),                                   # d zg
        dh * tc * sigmoid_grad(o),                               # d zo
    ], axis=1)                                                   # (B, 4H)
    grads["Wh"] += h_prev.T @ dz                                 # (H, 4H)
    return dz, (dz @ p["Wh"].T, dc * f)


# --------------------------------------------------------------------------------------------------------
# GRU, "reset after" (PyTorch nn.GRU, Keras reset_after=True)  (gate blocks r, z, n)
#   [xr, xz, xn] = zx_t = x_t Wx + b          [hr, hz, hn] = h_{t-1} Wh + bh
#   r = sig(xr + hr)   z = sig(xz + hz)   n = tanh(xn + r * hn)
#   h_t = (1 - z) * n + z * h_{t-1}
# backward:
#   dn = dh (1 - z)    dz = dh (h_{t-1} - n)    da_n = dn (1 - n^2)    dr = da_n * hn
#   dzx = [dr r(1-r), dz z(1-z), da_n]      dhh = [dr r(1-r), dz z(1-z), da_n * r]
#   dWh += h_{t-1}^T dhh,  dbh += sum dhh,  dh_{t-1} = dh z + dhh Wh^T
# --------------------------------------------------------------------------------------------------------

def gru_init(input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    p = init_gates(input_size, hidden, 3, rng)
    p["bh"] = np.zeros(3 * hidden)
    return p


def gru_cell_step(zx, state, p):
    (h_prev,) = state
    H = h_prev.shape[1]
    hh = h_prev @ p["Wh"] + p["bh"]                              # (B, 3H)
    r = sigmoid(zx[:, :H] + hh[:, :H])                           # (B, H) reset gate
    z = sigmoid(zx[:, H:2 * H] + hh[:, H:2 * H])                 # (B, H) update gate
    hn = hh[:, 2 * H:]                                           # (B, H) projected previous state
    n = tanh(zx[:, 2 * H:] + r * hn)                             # (B, H) candidate
    h = (1.0 - z) * n + z * h_prev                               # (B, H)
    return (h,), (h_prev, r, z, n, hn)


def gru_cell_step_backward(dstate, cache, p, grads):
    (dh,) = dstate
    h_prev, r, z, n, hn = cache
    dan = dh * (1.0 - z) * tanh_grad(n)                          # (B, H)
    dar = dan * hn * sigmoid_grad(r)                             # (B, H)
    daz = dh * (h_prev - n) * sigmoid_grad(z)                    # (B, H)
    dzx = np.concatenate([dar, daz, dan], axis=1)                # (B, 3H)
    dhh = np.concatenate([dar, daz, dan * r], axis=1)            # (B, 3H)
    grads["Wh"] += h_prev.T @ dhh                                # (H, 3H)
    grads["bh"] += dhh.sum(axis=0)                               # (3H,)
    return dzx, (dh * z + dhh @ p["Wh"].T,)


@dataclass(frozen=True)
class Cell:
    """One recurrent cell type: its gate count, state arity and its three functions."""

    name: str
    n_gates: int
    n_states: int
    init: Callable[[int, int, np.random.Generator], dict]
    step_forward: Callable
    step_backward: Callable

    def zero_state(self, batch: int, hidden: int, dtype) -> tuple:
        return tuple(np.zeros((batch, hidden), dtype=dtype) for _ in range(self.n_states))


CELLS = {
    "rnn": Cell("rnn", 1, 1, rnn_init, rnn_cell_step, rnn_cell_step_backward),
    "lstm": Cell("lstm", 4, 2, lstm_init, lstm_cell_step, lstm_cell_step_backward),
    "gru": Cell("gru", 3, 1, gru_init, gru_cell_step, gru_cell_step_backward),
}
