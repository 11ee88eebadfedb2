"""The regularisers recurrent nets need (AWD-LSTM, Merity et al. 2017; zoneout, Krueger et al. 2016), each a
small function with its equation and its derivative. ``model.py`` decides where each one acts in the stack;
``recurrence.py`` runs zoneout inside the one sequence loop. docs/regularization.md has the full story.

Every random draw of a training step is made once, for the whole batch, by :func:`model.draw_masks` (so
that batch shards on threads slice the very masks the unsplit step uses), from the run's dropout Generator.
Nothing is drawn for a regulariser that is off: the default step draws exactly what it always drew.

Inverted dropout (every mask here is one): keep = 1 - q, D = Bernoulli(keep) / keep, E[D] = 1, so
evaluation uses the weights and activations as they are.

1. Dropout on a sequence, "locked" / variational (Gal & Ghahramani 2016): ONE mask per sequence, reused at
   every time step -- shape (1, B, H), broadcast over T -- instead of a new one per character (T, B, H):

       x_t = h_t * D          dh_t = dx_t * D                                  (the same D at every t)

2. Character dropout, the locked dropout of a one-hot input (``--dropout_input``): the input of a character
   model is x_t = onehot(id_t) (V,), so a locked mask D (B, V) over its V dimensions keeps or drops each
   *character type* for the whole sequence (AWD-LSTM's embedding dropout; Gal & Ghahramani's word dropout):

       zx_t = (x_t * D) Wx + b = s_t Wx[id_t] + b        s_t = D[id_t]       (:func:`input_dropout_scale`)
       dWx[k] = sum_{t: id_t = k} s_t dzx_t              db = sum_t dzx_t

3. Weight drop (DropConnect on the recurrent matrix, Wan et al. 2013; AWD-LSTM's WeightDrop): one mask M
   (H, G*H) per training step on W_h, the same for every sequence and step of the batch:

       W~_h = W_h * M            (every step of the sequence loop reads W~_h)
       dW_h = dW~_h * M          (:func:`drop_weights`, :func:`weight_drop_grad`)

4. Zoneout (Krueger et al. 2016): each unit of each state part keeps its previous value with probability p
   (a new mask Z per time step, true where the unit keeps its value; no scaling), and at evaluation the
   expectation, Z = p:

       s_t = Z_t * s_{t-1} + (1 - Z_t) * s~_t             s~_t: what the cell computed from s_{t-1}
       ds~_t = (1 - Z_t) * ds_t      ds_{t-1} += Z_t * ds_t                   (:func:`zoneout_mix`)

   The LSTM zones out its cell state c (rate p_c) and hidden state h (rate p_h) separately; h~_t = o
   tanh(c~_t) reads the cell's own c~_t, as in the paper.

5. Activation regularisation (AR) and temporal activation regularisation (TAR) on the top recurrent layer's
   output h_t (T, B, H), over the M real characters of the batch (mask m):

       L_AR  = alpha / (M H) * sum_t m_t ||h_t||^2
       L_TAR = beta  / (M H) * sum_{t >= 2} m_t ||h_t - h_{t-1}||^2             (within the window)
       dh_t  = 2 alpha / (M H) m_t h_t + 2 beta / (M H) (m_t d_t - m_{t+1} d_{t+1}),   d_t = h_t - h_{t-1}

   AWD-LSTM writes the same means (``.pow(2).mean()``), so its alpha = 2, beta = 1 carry over; its TAR divides
   by (T - 1) B H where this divides by T B H (M H): one normaliser for both, which a batch shard can use.
"""

from __future__ import annotations

import numpy as np


def dropout_mask(rate: float, shape: tuple, rng: np.random.Generator, dtype) -> np.ndarray:
    """Inverted dropout: 1/keep with probability keep = 1 - rate, else 0 (any shape; (1, B, H) is locked)."""
    keep = 1.0 - rate
    return (rng.random(shape) < keep).astype(dtype) / keep


def input_dropout_scale(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """s_t = D[id_t]: ids (T, B), the locked character mask D (B, V) -> the scale of each input row (T, B)."""
    return np.take_along_axis(mask, ids.T, axis=1).T             # (T, B): mask[b, ids[t, b]]


def drop_weights(p: dict, mask: np.ndarray | None) -> dict:
    """A layer's parameters with W~_h = W_h * M in place of W_h (M (H, G*H), None: unchanged)."""
    return p if mask is None else {**p, "Wh": p["Wh"] * mask}   # (H, GH)


def weight_drop_grad(grads: dict, mask: np.ndarray | None) -> dict:
    """dW_h = dW~_h * M: the gradient of the dropped matrix back onto W_h (in place)."""
    if mask is not None:
        grads["Wh"] *= mask                                      # (H, GH)
    return grads


def zoneout_mask(rate: float, shape: tuple, rng: np.random.Generator, dtype=None) -> np.ndarray:
    """Z: true (the unit keeps its previous value) with probability ``rate`` -- a bool array, shape (T, B, H)."""
    return rng.random(shape) < rate


def zoneout_mix(prev: np.ndarray, new: np.ndarray, z, out: np.ndarray) -> np.ndarray:
    """s_t = Z s_{t-1} + (1 - Z) s~_t into ``out`` (B, H). ``z``: a (B, H) bool mask (training: each unit takes
    exactly one of the two values), or the rate itself (evaluation: the expectation s~_t + p (s_{t-1} - s~_t))."""
    if isinstance(z, np.ndarray):
        np.copyto(out, new)
        np.copyto(out, prev, where=z)
        return out
    np.subtract(prev, new, out=out)
    out *= z
    out += new
    return out


def zoneout_mix_backward(ds: np.ndarray, z) -> tuple[np.ndarray, np.ndarray]:
    """ds = dL/ds_t (B, H) -> (ds~_t = (1 - Z) ds, the direct share of ds_{t-1} = Z ds)."""
    direct = ds * z                                              # (B, H); a bool Z selects
    return ds - direct, direct


def activation_penalty(h: np.ndarray, mask: np.ndarray | None, count: float, ar: float, tar: float):
    """L_AR + L_TAR of the top layer's output h (T, B, H) (module docstring, 5.) -> (value, dL/dh (T, B, H)).
    ``mask`` (T, B) marks the real characters (None: all); ``count`` is M, the batch's real characters."""
    T, B, H = h.shape
    m = np.ones((T, B, 1), dtype=h.dtype) if mask is None else mask.astype(h.dtype)[..., None]   # (T, B, 1)
    scale = 1.0 / (float(count) * H)
    value, dh = 0.0, np.zeros_like(h)                            # (T, B, H)
    if ar:
        mh = m * h                                               # (T, B, H)
        value += ar * scale * float((mh * h).sum())
        dh += (2.0 * ar * scale) * mh
    if tar and T > 1:
        d = m[1:] * (h[1:] - h[:-1])                             # (T-1, B, H): m_t d_t for t >= 2
        value += tar * scale * float((d * d).sum())
        d *= 2.0 * tar * scale
        dh[1:] += d                                              # h_t appears with +
        dh[:-1] -= d                                             # h_{t-1} with -
    return value, dh
