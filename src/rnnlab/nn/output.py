"""The output layer: hidden states -> logits, and the two gradients that leave the loss.

    y_t = h_t Wy + by                                   logits, (T, B, V)

Given dy = dL/dy from the loss (``losses.softmax_cross_entropy``):

    dWy = sum_t h_t^T dy_t       dby = sum_t dy_t        (output-layer gradients)
    da_t = dy_t Wy^T                                     (the logit gradient projected onto h_t)

``da`` is what BPTT starts from: how the loss changes with each hidden state through the output layer.
"""

from __future__ import annotations

import numpy as np


def output_forward(hs: np.ndarray, Wy: np.ndarray, by: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(T, B, H) -> logits (T, B, V), as one 2-D GEMM (a 3-D matmul would loop over T), into ``out`` if given."""
    H, V = Wy.shape
    out = np.empty((*hs.shape[:-1], V), dtype=hs.dtype) if out is None else out
    np.matmul(hs.reshape(-1, H), Wy, out=out.reshape(-1, V))
    out += by
    return out


def project_logit_grad_to_hidden(dy: np.ndarray, Wy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """da = dy @ Wy^T: (T, B, V) -> (T, B, H), into ``out`` if given."""
    H, V = Wy.shape
    out = np.empty((*dy.shape[:-1], H), dtype=dy.dtype) if out is None else out
    np.matmul(dy.reshape(-1, V), Wy.T, out=out.reshape(-1, H))
    return out


def output_layer_grads(dy: np.ndarray, hs: np.ndarray) -> dict:
    """-> {"Wy": sum h^T dy (H, V), "by": sum dy (V,)}, summed over time and batch."""
    H, V = hs.shape[-1], dy.shape[-1]
    return {
        "Wy": hs.reshape(-1, H).T @ dy.reshape(-1, V),           # (H, V)
        "by": dy.reshape(-1, V).sum(axis=0),                     # (V,)
    }
