"""minGRU, minLSTM and the residual block in PyTorch: the twin of mincells.py, scan.py, norms.py and block.py.

    plain:     ids --one-hot--> layer 0 --dropout--> layer 1 ... --> out (nn.Linear)
    residual:  ids --emb--> [x + RNN(norm1 x); y + FFN(norm2 y)] x L --> norm --> out

A layer's recurrence is :class:`MinRNN` (minGRU / minLSTM: ``nn.Linear`` for every gate of the window at
once, then the linear recurrence h_t = a_t h_{t-1} + b_t) or, in the residual block, a one-layer
``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (so the LSTM and GRU can be compared inside the same block). The
linear recurrence is :class:`LinearRecurrence`, an autograd Function with the backward written out as in
scan.py (the gradient of a linear recurrence is the same recurrence run backwards), by the loop on the CPU
and by the doubling scan on a GPU, where log2(T) rounds over the whole window replace T dependent steps
(``torch_scan_form``; docs/mincells.md). Under autocast the recurrence runs in float32.

Weight conversion (``frameworks.layered_to_torch``, NumPy only, and :func:`layered_from_torch`), layer k:

=============================  =================================  =======================================
rnnlab                         TorchLayeredRNN                    how
=============================  =================================  =======================================
l{k}.Wx (In, GH), l{k}.b (GH)  layers.{k}.rnn.proj.weight, .bias  transposed; gate order as rnnlab's
  (minGRU, minLSTM)
l{k}.Wx, Wh, b[, bh]           layers.{k}.rnn.weight_ih_l0 ...    as TorchCharRNN's layer (torch.py)
  (RNN, LSTM, GRU, residual)
l{k}.norm1.g [, .b]            layers.{k}.norm1.weight [, .bias]  as is (nn.RMSNorm / nn.LayerNorm)
l{k}.ff.W1, ff.b1, W2, b2      layers.{k}.ff.0.weight, .bias,     transposed
                               layers.{k}.ff.2.weight, .bias
emb (V, H), norm.g [, norm.b]  emb.weight, norm.weight [, .bias]  as is
Wy (H, V), by                  out.weight, out.bias               transposed
=============================  =================================  =======================================
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.cells import CELLS
from ..nn.norms import EPS
from . import layered_names
from .torch import TORCH_MODULES, TorchCharRNN, layer_from_torch

# --------------------------------------------------------------------------------------------------------
# The linear recurrence on tensors, forward and backward
# --------------------------------------------------------------------------------------------------------


def recurrence_loop(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t, one step per character (scan.linear_recurrence_loop): (T, B, H)."""
    h = torch.empty_like(b)
    h_prev = h0
    for t in range(b.shape[0]):
        torch.addcmul(b[t], a[t], h_prev, out=h[t])              # (B, H)
        h_prev = h[t]
    return h


def recurrence_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same h by log2(T) rounds over the whole window (scan.linear_recurrence_scan): b_t <- b_t + a_t
    b_{t-d}, a_t <- a_t a_{t-d} for d = 1, 2, 4, ..."""
    T = b.shape[0]
    b, a = b.clone(), a.clone()
    b[0].addcmul_(a[0], h0)                                      # fold h_0 into the first step
    d = 1
    while d < T:
        b[d:] += a[d:] * b[:-d]                                  # the product first: then the in-place sum
        if 2 * d < T:
            a[d:] = a[d:] * a[:-d]
        d *= 2
    return b


TORCH_RECURRENCES = {"loop": recurrence_loop, "scan": recurrence_scan}


def torch_scan_form(device: torch.device) -> str:
    """The CPU steps (2.6x faster than the scan at 256/32/256, as in NumPy: B * H numbers per step already
    fill its vector units); a GPU scans (T dependent steps would each be a kernel launch)."""
    return "loop" if device.type == "cpu" else "scan"


class LinearRecurrence(torch.autograd.Function):
    """h = recurrence(a, b, h0) with the backward of scan.py: g_T = dh_T, g_t = a_{t+1} g_{t+1} + dh_t (the
    same recurrence, reversed), then da_t = g_t h_{t-1}, db_t = g_t, dh_0 = a_1 g_1."""

    @staticmethod
    def forward(ctx, a, b, h0, form):
        h = TORCH_RECURRENCES[form](a, b, h0)                    # (T, B, H)
        ctx.save_for_backward(a, h0, h)
        ctx.form = form
        return h

    @staticmethod
    def backward(ctx, dh):
        a, h0, h = ctx.saved_tensors
        g = torch.empty_like(dh)                                 # (T, B, H)
        g[-1] = dh[-1]
        if dh.shape[0] > 1:                                      # g_{T-1} .. g_1 from g_T, in reversed time
            g[:-1] = TORCH_RECURRENCES[ctx.form](a[1:].flip(0), dh[:-1].flip(0), dh[-1]).flip(0)
        h_prev = torch.cat([h0[None], h[:-1]])                   # (T, B, H)
        return g * h_prev, g, a[0] * g[0], None


# --------------------------------------------------------------------------------------------------------
# The layers
# --------------------------------------------------------------------------------------------------------

def mingru_coefficients(zx: torch.Tensor):
    """[zu, h~] (T, B, 2H) -> (a, b) = (1 - u, u h~), u = sig(zu)."""
    zu, h_tilde = zx.chunk(2, dim=-1)
    u = torch.sigmoid(zu)
    return 1.0 - u, u * h_tilde


def minlstm_coefficients(zx: torch.Tensor):
    """[zf, zi, h~] (T, B, 3H) -> (a, b) = (f', i' h~) with f' = sig(softplus(-zi) - softplus(-zf))."""
    zf, zi, h_tilde = zx.chunk(3, dim=-1)
    f_prime = torch.sigmoid(F.softplus(-zi) - F.softplus(-zf))
    return f_prime, (1.0 - f_prime) * h_tilde


MIN_COEFFICIENTS = {"mingru": mingru_coefficients, "minlstm": minlstm_coefficients}


class MinRNN(nn.Module):
    """One minGRU / minLSTM layer: x (T, B, In), h0 (B, H) -> (h (T, B, H), h_T)."""

    def __init__(self, cell: str, input_size: int, hidden: int, dtype: torch.dtype):
        super().__init__()
        self.cell = cell
        self.proj = nn.Linear(input_size, CELLS[cell].n_gates * hidden, dtype=dtype)

    def forward(self, x: torch.Tensor, h0: torch.Tensor):
        a, b = MIN_COEFFICIENTS[self.cell](self.proj(x))         # (T, B, H) each
        wide = torch.promote_types(h0.dtype, torch.float32)      # under autocast: float32, not 16 bits
        h = LinearRecurrence.apply(a.to(wide), b.to(wide), h0.to(wide), torch_scan_form(x.device)).to(h0.dtype)
        return h, h[-1]


def recurrent_layer(cell: str, input_size: int, hidden: int, dtype: torch.dtype) -> nn.Module:
    """MinRNN for the min cells; a one-layer nn.RNN / LSTM / GRU (its second bias frozen for RNN and LSTM,
    as in TorchCharRNN) for the others."""
    if not CELLS[cell].recurrent_weights:
        return MinRNN(cell, input_size, hidden, dtype)
    module = TORCH_MODULES[cell](input_size, hidden, num_layers=1, dtype=dtype)
    if cell != "gru":
        module.bias_hh_l0.requires_grad_(False)
    return module


def run_recurrent(module: nn.Module, x: torch.Tensor, state: tuple) -> tuple:
    """x (T, B, In) and the layer's state ((h,) or (h, c), each (B, H)) -> (hs (T, B, H), final state)."""
    if isinstance(module, MinRNN):
        hs, last = module(x, state[0])
        return hs, (last,)
    hs, final = module(x, tuple(s[None] for s in state) if len(state) == 2 else state[0][None])
    return hs, tuple(s[0] for s in final) if isinstance(final, tuple) else (final[0],)


def make_norm(kind: str, hidden: int, dtype: torch.dtype) -> nn.Module:
    return nn.RMSNorm(hidden, eps=EPS, dtype=dtype) if kind == "rms" else nn.LayerNorm(hidden, eps=EPS, dtype=dtype)


class ResidualLayer(nn.Module):
    """y = x + D1 RNN(norm1 x);  x' = y + D2 FFN(norm2 y),  FFN = Linear, GELU (tanh), Linear (block.py)."""

    def __init__(self, config, dtype: torch.dtype):
        super().__init__()
        H, ffn = config.hidden_size, config.ffn_size
        self.dropout = config.dropout
        self.norm1 = make_norm(config.norm, H, dtype)
        self.rnn = recurrent_layer(config.cell, H, H, dtype)
        self.norm2 = make_norm(config.norm, H, dtype)
        self.ff = nn.Sequential(nn.Linear(H, ffn, dtype=dtype), nn.GELU(approximate="tanh"),
                                nn.Linear(ffn, H, dtype=dtype))

    def forward(self, x: torch.Tensor, state: tuple):
        hs, final = run_recurrent(self.rnn, self.norm1(x), state)
        y = x + F.dropout(hs, self.dropout, self.training)
        return y + F.dropout(self.ff(self.norm2(y)), self.dropout, self.training), final


class TorchLayeredRNN(nn.Module):
    """rnnlab's CharModel for min cells and the residual block; ``state`` is a tuple of (L, B, H) tensors."""

    def __init__(self, config, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        if config.residual:
            self.emb = nn.Embedding(V, H, dtype=dtype)
            self.layers = nn.ModuleList([ResidualLayer(config, dtype) for _ in range(L)])
            self.norm = make_norm(config.norm, H, dtype)
        else:
            self.layers = nn.ModuleList([recurrent_layer(config.cell, V if k == 0 else H, H, dtype) for k in range(L)])
        self.out = nn.Linear(H, V, dtype=dtype)

    # the same state, and the same weight loading through torch.to_torch / from_torch (which dispatch here)
    zero_state = TorchCharRNN.zero_state
    load_numpy = TorchCharRNN.load_numpy
    numpy_params = TorchCharRNN.numpy_params

    def forward(self, ids: torch.Tensor, state: tuple):
        """ids (T, B) int64 -> (logits (T, B, V), final state)."""
        c = self.config
        if c.residual:
            x = self.emb(ids)                                                    # (T, B, H)
        else:
            x = F.one_hot(ids, c.vocab_size).to(self.out.weight.dtype)            # (T, B, V)
        finals = []
        for k, layer in enumerate(self.layers):
            layer_state = tuple(part[k] for part in state)
            if c.residual:
                x, final = layer(x, layer_state)
            else:
                x, final = run_recurrent(layer, x, layer_state)
                if k < c.num_layers - 1:
                    x = F.dropout(x, c.dropout, self.training)                   # between stacked layers
            finals.append(final)
        if c.residual:
            x = self.norm(x)
        final = tuple(torch.stack([f[i] for f in finals]) for i in range(len(finals[0])))
        return self.out(x), final


# --------------------------------------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------------------------------------

def layered_from_torch(state: dict, config) -> dict:
    """{TorchLayeredRNN state_dict name: NumPy array} -> rnnlab params (the names: ``frameworks.layered_names``;
    the other direction, NumPy only, is ``frameworks.layered_to_torch``)."""
    params = {name: state[torch_name].T if transposed else state[torch_name]
              for torch_name, name, transposed in layered_names(config)}
    if CELLS[config.cell].recurrent_weights:
        for k in range(config.num_layers):
            layer = layer_from_torch(state, config.cell, f"layers.{k}.rnn.", 0)
            params.update({f"l{k}.{name}": value for name, value in layer.items()})
    return {name: np.ascontiguousarray(value) for name, value in params.items()}
