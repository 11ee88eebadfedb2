"""Softmax cross-entropy from logits, with its gradient, and the units it is reported in.

For logits z (V values) and target class k at each of N positions, with mask m_n in {0, 1}:

    p_n  = softmax(z_n)
    L    = - (1 / M) * sum_n m_n log p_n[k_n],          M = sum_n m_n  (the number of real characters)
    dL/dz_n = (m_n / M) (p_n - onehot(k_n))

The gradient of softmax followed by -log is simply ``p - onehot``: the softmax Jacobian and the 1/p of the
log cancel. L is the mean over real characters, so it is in **nats per character**; padded positions
(m = 0) add nothing to the loss and nothing to the gradient.

``count`` overrides M: a shard of a batch (``parallel.py``) divides by the *whole* batch's number of real
characters, so the shards' losses and gradients simply add up to those of the whole batch.
"""

from __future__ import annotations

import math

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
                          count: float | None = None):
    """-> ``(loss, dlogits)`` for logits (..., V), integer targets (...) and an optional 0/1 mask (...);
    ``count``: the M to divide by (default: the mask's sum, this batch's real characters)."""
    V = logits.shape[-1]
    z = logits.reshape(-1, V)                                    # (N, V)
    k = targets.reshape(-1)                                      # (N,)
    m = np.ones(k.shape, dtype=z.dtype) if mask is None else mask.reshape(-1).astype(z.dtype)  # (N,)
    count = m.sum() if count is None else m.dtype.type(count)   # the same float type either way
    if count == 0:
        return 0.0, np.zeros_like(logits)
    rows = np.arange(len(k))
    dz = z - z.max(axis=1, keepdims=True)                        # (N, V)  shifted logits
    shifted_target = dz[rows, k]                                 # (N,)
    np.exp(dz, out=dz)                                           # (N, V)  in place: e^(shifted z)
    norm = dz.sum(axis=1)                                        # (N,)
    nll = np.log(norm) - shifted_target                          # (N,)  -log p[k] = log sum_j e^z_j - z_k
    loss = float((nll * m).sum() / count)
    dz /= norm[:, None]                                          # (N, V)  p = softmax(z)
    dz[rows, k] -= 1.0                                           # p - onehot(k)
    dz *= (m / count)[:, None]                                   # masked mean
    return loss, dz.reshape(logits.shape)


def bits_per_char(nats: float) -> float:
    """bits = nats / ln 2."""
    return nats / math.log(2.0)


def perplexity(nats: float) -> float:
    """perplexity = e^nats: the effective number of equally likely next characters."""
    return math.exp(min(nats, 700.0))  # e^700 is near float64's limit; beyond that report it capped
