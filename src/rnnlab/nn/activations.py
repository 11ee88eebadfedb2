"""Activation functions, each next to its derivative.

The derivatives are written in terms of the function's *output* (``a``, an activation), because that is what the forward
pass caches: the backward pass then needs no extra exponentials. (GELU's, at the end, needs its input.)

    tanh:     a = (e^z - e^-z) / (e^z + e^-z)          da/dz = 1 - a^2
    sigmoid:  a = 1 / (1 + e^-z)                        da/dz = a (1 - a)
    softmax:  p_i = e^(z_i / tau) / sum_j e^(z_j / tau)   dp_i/dz_j = p_i (delta_ij - p_j) / tau

Numerical stability:

* softmax subtracts ``max(z)`` first; the result is unchanged (the factor e^-max cancels) but no e^z
  overflows.
* sigmoid is computed as ``(1 + tanh(z / 2)) / 2`` -- the identity sigma(z) = (1 + tanh(z/2)) / 2 -- which
  never overflows for large negative z, unlike ``1 / (1 + exp(-z))``.
"""

from __future__ import annotations

import numpy as np

from ..errors import require


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def tanh_grad(a: np.ndarray) -> np.ndarray:
    """d tanh(z)/dz expressed through a = tanh(z): 1 - a^2."""
    return 1.0 - a * a


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """0.5 (1 + tanh(z / 2)), written into ``out`` if given (which may be z itself)."""
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def sigmoid_grad(a: np.ndarray) -> np.ndarray:
    """d sigma(z)/dz expressed through a = sigma(z): a (1 - a)."""
    return a * (1.0 - a)


def softmax(z: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """Probabilities from logits, sharpened (tau < 1) or flattened (tau > 1) by the temperature tau.

    tau -> 0 puts all the mass on the largest logit (greedy); tau -> infinity gives the uniform distribution.
    """
    require(temperature > 0, f"temperature must be > 0, got {temperature}")
    z = np.asarray(z)
    e = np.exp((z - z.max(axis=axis, keepdims=True)) / temperature)  # max first: nothing overflows, even
    return e / e.sum(axis=axis, keepdims=True)                          # for a tiny temperature


def softmax_grad(p: np.ndarray, dp: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """Vector-Jacobian product of the softmax: dz_j = p_j (dp_j - sum_i dp_i p_i) / tau."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True)) / temperature


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """log p_i = z_i - log sum_j e^(z_j), computed as (z_i - max z) - log sum_j e^(z_j - max z): no overflow,
    and no log(0) for a very unlikely class (its log-probability stays a finite negative number)."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


GELU_C = float(np.sqrt(2.0 / np.pi))
GELU_K = 0.044715


def gelu(z: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016; PyTorch ``gelu(approximate="tanh")``, Keras
    ``gelu(approximate=True)``): the feed-forward layer of the residual block (block.py).

        a = 0.5 z (1 + tanh(c (z + k z^3)))          c = sqrt(2 / pi), k = 0.044715

    (z + k z^3 is computed as z (1 + k z^2): NumPy's ``z ** 3`` calls pow() per element, 300x slower.)
    """
    t = np.tanh(GELU_C * z * (1.0 + GELU_K * z * z))
    return 0.5 * z * (1.0 + t)


def gelu_and_grad(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`gelu`, :func:`gelu_grad`) of z at once, sharing t and z^2: the feed-forward layer keeps the
    derivative for its backward instead of z (8 passes over the (TB, F) array fewer than both apart)."""
    z2 = z * z
    t = np.multiply(z2, GELU_K)
    t += 1.0
    t *= z
    t *= GELU_C
    np.tanh(t, out=t)                                            # t = tanh(c (z + k z^3))
    a = t + 1.0
    a *= z
    a *= 0.5                                                     # 0.5 z (1 + t)
    grad = np.multiply(t, t)
    np.subtract(1.0, grad, out=grad)                             # 1 - t^2
    grad *= z
    z2 *= 3.0 * GELU_K
    z2 += 1.0
    grad *= z2
    grad *= 0.5 * GELU_C                                         # 0.5 z (1 - t^2) c (1 + 3 k z^2)
    t += 1.0
    t *= 0.5
    grad += t                                                    # + 0.5 (1 + t)
    return a, grad


def gelu_grad(z: np.ndarray) -> np.ndarray:
    """da/dz of :func:`gelu`, in terms of its *input* z (the output alone does not determine it):

        t = tanh(c (z + k z^3))      da/dz = 0.5 (1 + t) + 0.5 z (1 - t^2) c (1 + 3 k z^2)
    """
    z2 = z * z
    t = np.tanh(GELU_C * z * (1.0 + GELU_K * z2))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * z2)
