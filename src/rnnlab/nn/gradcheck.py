"""Finite-difference gradient checking: the proof that a backward pass matches its forward pass.

For a scalar function f and each entry x_i of an array x, the central difference

    df/dx_i ~= (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

has truncation error O(eps^2) and round-off error O(machine_eps * |f| / eps). In float64 with eps = 1e-6
both are around 1e-10 relative, so an analytic gradient that is right agrees to far better than 1e-6, and
one with a bug (a missing term, a wrong bias) is off by orders of magnitude more.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``f()`` with respect to the array ``x``, which is perturbed in place
    (and restored) -- so ``f`` must read ``x`` itself, e.g. through a params dict that holds it."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        f_plus = f()
        flat[i] = original - eps
        f_minus = f()
        flat[i] = original
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / max(||a|| + ||n||, 1e-12): scale-free, and 0 only when both agree."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-12))
