"""The residual block (``--block residual``): the stack minGRU and minLSTM are trained in, for every cell.

``model.py`` stacks L of these layers between an embedding and the output layer; the plain stack
(``--block plain``, the default) is untouched by any of it. One layer, on the residual stream x (T, B, H):

    y  = x + D1 * RNN(norm(x; g1))                 pre-normalisation, the recurrent layer, a residual
    x' = y + D2 * FFN(norm(y; g2))                 pre-normalisation, a feed-forward layer, a residual
    FFN(v) = gelu(v W1 + b1) W2 + b2               H -> F = ffn_mult * H -> H

D1, D2 are inverted-dropout masks on the two branches (training only). ``norm`` is RMSNorm or LayerNorm
(``--norm``, norms.py). The stack around it:

    x^0 = E[ids]   (the embedding E (V, H): x is one-hot)        logits = norm(x^L; g) Wy + by

Backward, one layer, given dx' = dL/dx' (the residual paths add a gradient unchanged):

    df = dx' * D2      dv, dW1, db1, dW2, db2 = FFN backward      dy = dx' + norm backward(dv)
    dh = dy * D1       dzx, dx_u = the recurrent layer's BPTT     dx = dy + norm backward(dx_u)

The residual paths are why deep stacks of these train: dL/dx reaches every layer directly, not only
through every layer above. What a layer *carries* from one character to the next is its recurrent state
(h; the LSTM's h and c), exactly as in the plain stack -- the residual stream x is recomputed from the text
and the states at every position; ``rnnlab visualize`` shows the states.

Parameters of layer k (besides the cell's ``l{k}.Wx``, ``l{k}.b`` [, ``Wh``, ``bh``] with ``Wx`` (H, GH)):
``l{k}.norm1.g`` (H,), ``l{k}.norm2.g`` (H,) [+ ``.b`` for LayerNorm], ``l{k}.ff.W1`` (H, F), ``l{k}.ff.b1``
(F,), ``l{k}.ff.W2`` (F, H), ``l{k}.ff.b2`` (H,); of the stack: ``emb`` (V, H), ``norm.g`` [, ``norm.b``].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import gelu_and_grad
from .initializers import init_output
from .norms import NormCache, norm_backward, norm_forward
from .recurrence import layer_input_grads, layer_inputs, sequence_backward, sequence_forward

BLOCKS = ("plain", "residual")   # --block


def norm_param_shapes(prefix: str, hidden: int, norm: str) -> dict:
    """{name: shape} of one normalisation's gain (and LayerNorm's bias)."""
    return {f"{prefix}g": (hidden,), **({f"{prefix}b": (hidden,)} if norm == "layer" else {})}


def block_param_shapes(hidden: int, ffn_size: int, norm: str) -> dict:
    """One layer's block parameters besides the cell's, named as in a layer (``norm1.g``, ``ff.W1``, ...)."""
    return {**norm_param_shapes("norm1.", hidden, norm), **norm_param_shapes("norm2.", hidden, norm),
            "ff.W1": (hidden, ffn_size), "ff.b1": (ffn_size,), "ff.W2": (ffn_size, hidden), "ff.b2": (hidden,)}


def init_norm(prefix: str, hidden: int, norm: str) -> dict:
    """Gain 1, bias 0: a fresh normalisation passes the normalised input through unchanged."""
    return {name: np.ones(shape) if name.endswith("g") else np.zeros(shape)
            for name, shape in norm_param_shapes(prefix, hidden, norm).items()}


def init_block(hidden: int, ffn_size: int, norm: str, rng: np.random.Generator, scheme: str) -> dict:
    """One layer's block parameters (float64): norms at gain 1, the feed-forward layer's two matrices as the
    scheme draws a dense layer (its output layer's initialiser: Glorot for rnnlab / keras, nn.Linear's for
    pytorch)."""
    first, second = init_output(hidden, ffn_size, rng, scheme), init_output(ffn_size, hidden, rng, scheme)
    return {**init_norm("norm1.", hidden, norm), **init_norm("norm2.", hidden, norm),
            "ff.W1": first["Wy"], "ff.b1": first["by"], "ff.W2": second["Wy"], "ff.b2": second["by"]}


def norm_of(p: dict, prefix: str) -> tuple:
    """(g, b or None) of one normalisation in a parameter dict."""
    return p[f"{prefix}g"], p.get(f"{prefix}b")


def norm_grads(prefix: str, grads: dict) -> dict:
    return {f"{prefix}{name}": value for name, value in grads.items()}


# --------------------------------------------------------------------------------------------------------
# The feed-forward layer
# --------------------------------------------------------------------------------------------------------

def feed_forward(v: np.ndarray, p: dict) -> tuple[np.ndarray, tuple]:
    """FFN(v) = gelu(v W1 + b1) W2 + b2: v (T, B, H) -> ((T, B, H), cache)."""
    H, F = p["ff.W1"].shape
    v2 = v.reshape(-1, H)                                        # (TB, H)
    z = v2 @ p["ff.W1"] + p["ff.b1"]                             # (TB, F) pre-activation
    a, gelu_z = gelu_and_grad(z)                                 # (TB, F) gelu(z) and gelu'(z), for backward
    out = a @ p["ff.W2"] + p["ff.b2"]                            # (TB, H)
    return out.reshape(v.shape), (v2, gelu_z, a)


def feed_forward_backward(dout: np.ndarray, cache: tuple, p: dict) -> tuple[np.ndarray, dict]:
    """dout (T, B, H) -> (dv (T, B, H), {ff.W1, ff.b1, ff.W2, ff.b2})."""
    v2, gelu_z, a = cache
    d2 = dout.reshape(v2.shape)                                  # (TB, H)
    dz = d2 @ p["ff.W2"].T                                       # (TB, F) da
    dz *= gelu_z                                                 # dz = da gelu'(z)
    grads = {"ff.W2": a.T @ d2, "ff.b2": d2.sum(axis=0), "ff.W1": v2.T @ dz, "ff.b1": dz.sum(axis=0)}
    return (dz @ p["ff.W1"].T).reshape(dout.shape), grads


# --------------------------------------------------------------------------------------------------------
# One layer of the block
# --------------------------------------------------------------------------------------------------------

@dataclass
class LayerCache:
    norm1: NormCache
    u: np.ndarray               # (T, B, H) norm(x): the recurrent layer's input
    sequence: object            # the recurrent layer's cache (recurrence.sequence_forward)
    norm2: NormCache
    ffn: tuple
    masks: tuple                # (D1, D2), each (T, B, H) or None
    hs: np.ndarray | None = None   # (T, B, H) the recurrent layer's output (the top layer's: AR, TAR)


def residual_layer_forward(cell, x: np.ndarray, p: dict, state: tuple, masks=(None, None), ws=None, name: str = "",
                           zoneout: tuple | None = None):
    """One layer: x (T, B, H) -> (x' (T, B, H), the recurrent layer's final state, LayerCache); ``zoneout`` as
    in recurrence.sequence_forward."""
    g, b = norm_of(p, "norm1.")
    u, norm1 = norm_forward(x, g, b)                             # (T, B, H)
    zx = layer_inputs(cell, u, p, ws, name)                      # (T, B, GH) or (G, T, B, H)
    hs, final, sequence = sequence_forward(cell, zx, state, p, ws, name, zoneout)   # (T, B, H)
    y = x + (hs if masks[0] is None else hs * masks[0])          # residual
    g, b = norm_of(p, "norm2.")
    v, norm2 = norm_forward(y, g, b)
    f, ffn = feed_forward(v, p)                                  # (T, B, H)
    out = y + (f if masks[1] is None else f * masks[1])          # residual
    return out, final, LayerCache(norm1, u, sequence, norm2, ffn, tuple(masks), hs)


def residual_layer_backward(cell, dout: np.ndarray, cache: LayerCache, p: dict, ws=None, name: str = "",
                            dhs_extra: np.ndarray | None = None):
    """dout = dL/dx' (T, B, H) -> (dx (T, B, H), grads of every parameter of the layer). ``dhs_extra``: a
    gradient on the recurrent layer's output besides the residual branch's (AR, TAR)."""
    d1, d2 = cache.masks
    dv, grads = feed_forward_backward(dout if d2 is None else dout * d2, cache.ffn, p)
    dy, norm_g = norm_backward(dv, cache.norm2, p["norm2.g"])
    dy += dout                                                   # the residual path
    grads.update(norm_grads("norm2.", norm_g))
    dhs = dy if d1 is None else dy * d1                          # (T, B, H)
    if dhs_extra is not None:
        dhs = dhs + dhs_extra
    dzx, recurrent, _ = sequence_backward(cell, dhs, cache.sequence, p, ws=ws, name=name)
    grads.update(recurrent)
    grads["Wx"], grads["b"], du = layer_input_grads(cell, cache.u, dzx, p["Wx"])
    dx, norm_g = norm_backward(du, cache.norm1, p["norm1.g"])
    dx += dy                                                     # the residual path
    grads.update(norm_grads("norm1.", norm_g))
    return dx, grads
