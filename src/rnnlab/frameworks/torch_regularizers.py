"""The regularisers of nn/regularizers.py in PyTorch, following the NumPy engine's trajectory.

``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` run a whole stack in one fused kernel: nothing can be mixed into the
state between two steps (zoneout), W_h cannot differ from the parameter (weight drop) and the masks between
layers are torch's own. :class:`TorchRegularizedRNN` keeps those modules' parameters -- the same state_dict as
``torch.TorchCharRNN``, so conversion, optimizer state and checkpoints are unchanged -- and computes the
stack itself, one step per character, with the masks the NumPy engine would draw: the engine draws them from
rnnlab's dropout Generator with ``model.draw_masks`` (the same calls, the same order) and hands each process its
columns. So ``--engine torch`` with any of these regularisers follows ``--engine numpy`` step for step (tests:
float64, ten Adam steps). Evaluation (no masks) uses zoneout's expectation, like NumPy.

Per layer k, with rnnlab's masks in torch's layout (gate orders are the same: frameworks/__init__.py):

    x^0 = onehot(ids) * D_in                      (B, V) per sequence: character dropout
    W~_hh = W_hh * M^T                            weight drop; M (H, GH) is rnnlab's layout, W_hh (GH, H)
    s_t = where(Z_t, s_{t-1}, s~_t)               zoneout (evaluation: s~_t + p (s_{t-1} - s~_t))
    x^{k+1} = h^k * D^k                           between layers ((T or 1, B, H))
    logits = (h^{L-1} * D_out) W_y^T + b_y        AR / TAR on h^{L-1} (the engine adds them to the loss)

The steps are PyTorch's own cell equations (docs/frameworks.md), written out: autograd differentiates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn.cells import CELLS
from .torch import TorchCharRNN


def rnn_step(zx, state, W_hh, b_hh):
    """h' = tanh(zx + h W_hh^T + b_hh)."""
    (h,) = state
    return (torch.tanh(zx + F.linear(h, W_hh, b_hh)),)


def lstm_step(zx, state, W_hh, b_hh):
    """[i, f, g, o] = zx + h W_hh^T + b_hh;  c' = sig(f) c + sig(i) tanh(g);  h' = sig(o) tanh(c')."""
    h, c = state
    i, f, g, o = (zx + F.linear(h, W_hh, b_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(zx, state, W_hh, b_hh):
    """r = sig(x_r + h_r), z = sig(x_z + h_z), n = tanh(x_n + r h_n), h' = (1 - z) n + z h (nn.GRU)."""
    (h,) = state
    xr, xz, xn = zx.chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, W_hh, b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1.0 - z) * n + z * h,)


STEPS = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step}


def zoneout(prev: torch.Tensor, new: torch.Tensor, z) -> torch.Tensor:
    """s_t = Z s_{t-1} + (1 - Z) s~_t: a bool mask selects, a rate mixes (the expectation), 0 takes s~_t."""
    if torch.is_tensor(z):
        return torch.where(z, prev, new)
    return new if z == 0 else new + z * (prev - new)


class TorchRegularizedRNN(TorchCharRNN):
    """TorchCharRNN's parameters, the stack computed step by step with the NumPy engine's masks (see the module
    docstring). ``forward(ids, state, masks=None)``: ``masks`` is a ``model.StepMasks`` of tensors (this
    process's columns), None to evaluate. After each call ``top_recurrent`` holds h^{L-1} (T, B, H) for AR and
    TAR."""

    def forward(self, ids: torch.Tensor, state: tuple, masks=None):
        """ids (T, B) int64 -> (logits (T, B, V), final state: a tuple of (L, B, H))."""
        c = self.config
        x = F.one_hot(ids, c.vocab_size).to(self.out.weight.dtype)               # (T, B, V)
        if masks is not None and masks.inputs is not None:
            x = x * masks.inputs                                                  # (B, V) per sequence
        finals = []
        for k in range(c.num_layers):
            W_hh = getattr(self.rnn, f"weight_hh_l{k}")                           # (GH, H)
            if masks is not None and masks.weights is not None:
                W_hh = W_hh * masks.weights[k].T                                  # weight drop
            zx = F.linear(x, getattr(self.rnn, f"weight_ih_l{k}"), getattr(self.rnn, f"bias_ih_l{k}"))  # (T, B, GH)
            z = c.zoneout_rates if masks is None or masks.zoneout is None else masks.zoneout[k]
            layer_state = tuple(part[k] for part in state)
            hs = []
            for t in range(ids.shape[0]):
                new = STEPS[c.cell](zx[t], layer_state, W_hh, getattr(self.rnn, f"bias_hh_l{k}"))
                if c.has_zoneout:
                    new = tuple(zoneout(prev, cand, rate if not torch.is_tensor(rate) else rate[t])
                                for prev, cand, rate in zip(layer_state, new, z, strict=True))
                layer_state = new
                hs.append(new[0])
            x = torch.stack(hs)                                                   # (T, B, H)
            finals.append(layer_state)
            if k < c.num_layers - 1 and masks is not None and masks.dropout is not None:
                x = x * masks.dropout[k]                                          # (T or 1, B, H)
        self.top_recurrent = x
        if masks is not None and masks.output is not None:
            x = x * masks.output                                                  # (1, B, H)
        final = tuple(torch.stack([f[i] for f in finals]) for i in range(CELLS[c.cell].n_states))
        return self.out(x), final


def activation_penalty(h: torch.Tensor, mask: torch.Tensor | None, count: float, ar: float, tar: float):
    """L_AR + L_TAR of h (T, B, H) over the whole batch's ``count`` real characters (regularizers.py)."""
    m = torch.ones(h.shape[:2], dtype=h.dtype, device=h.device) if mask is None else mask.to(h.dtype)
    m = m[..., None]                                                              # (T, B, 1)
    scale = 1.0 / (count * h.shape[-1])
    value = ar * scale * (m * h * h).sum()
    if tar and h.shape[0] > 1:
        d = h[1:] - h[:-1]
        value = value + tar * scale * (m[1:] * d * d).sum()
    return value
