"""Normalisation over the features of each position: RMSNorm and LayerNorm, each next to its backward.

For one position's H features x (every array here is (..., H); statistics over the last axis):

RMSNorm (Zhang & Sennrich 2019), gain g:

    r = 1 / sqrt(mean(x^2) + eps)        xh = x r        y = g * xh
  backward, with dxh = dy * g:
    dg = sum over positions of dy * xh
    dx = r (dxh - xh mean(dxh * xh))

LayerNorm (Ba, Kiros & Hinton 2016), gain g and bias b:

    mu = mean(x)    r = 1 / sqrt(mean((x - mu)^2) + eps)    xh = (x - mu) r    y = g * xh + b
  backward, with dxh = dy * g:
    dg = sum dy * xh      db = sum dy
    dx = r (dxh - mean(dxh) - xh mean(dxh * xh))

Why dx has that form: xh is x scaled by r (and shifted by mu), and r itself depends on every x_j through
the mean of squares. d r / d x_j = -r^3 x_j / H (RMSNorm), so dx_j = r dxh_j - (r^3 x_j / H) sum_k dxh_k x_k =
r (dxh_j - xh_j mean(dxh xh)); LayerNorm adds the mean's path, which removes mean(dxh). tests/nn/test_block.py
checks both against finite differences and against torch.nn.RMSNorm / LayerNorm.

eps = 1e-5 for both (PyTorch's LayerNorm default; the twins pass it to RMSNorm explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-5
NORMS = ("rms", "layer")   # --norm


@dataclass
class NormCache:
    xh: np.ndarray          # (..., H) the normalised input
    r: np.ndarray           # (..., 1) 1 / sqrt(mean square + eps)
    centred: bool           # LayerNorm (the mean was removed) or RMSNorm


def norm_forward(x: np.ndarray, g: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, NormCache]:
    """RMSNorm (b is None) or LayerNorm (with its bias b): x (..., H) -> (y (..., H), cache)."""
    centred = b is not None
    if centred:
        x = x - x.mean(axis=-1, keepdims=True)                   # (..., H) x - mu
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS)   # (..., 1)
    xh = x * r                                                   # (..., H)
    y = xh * g
    if centred:
        y += b
    return y, NormCache(xh, r, centred)


def norm_backward(dy: np.ndarray, cache: NormCache, g: np.ndarray) -> tuple[np.ndarray, dict]:
    """dy (..., H) -> (dx (..., H), {"g": dg (H,)[, "b": db (H,)]})."""
    H = dy.shape[-1]
    grads = {"g": (dy * cache.xh).reshape(-1, H).sum(axis=0)}    # (H,)
    if cache.centred:
        grads["b"] = dy.reshape(-1, H).sum(axis=0)
    dxh = dy * g                                                 # (..., H)
    inner = np.mean(dxh * cache.xh, axis=-1, keepdims=True)       # (..., 1) mean(dxh xh)
    dx = dxh - cache.xh * inner
    if cache.centred:
        dx -= dxh.mean(axis=-1, keepdims=True)                   # the mean's path
    dx *= cache.r
    return dx, grads
