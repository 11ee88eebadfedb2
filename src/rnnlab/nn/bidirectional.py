"""A bidirectional encoder: the one sequence loop of ``recurrence.py``, run forward and run over every
sequence reversed within its own length.

For a padded batch of sources x (S, B) with lengths n_b (the rest of each column is padding):

    hf_t = cell_f(x_t, hf_{t-1})         t = 0 .. S-1      the usual loop; hf_t for t < n_b never sees padding
    x'   = x reversed within length      x'_t = x_{n-1-t} for t < n, x'_t = x_t (padding stays at the end)
    hb'  = loop(cell_b, x')              hb'_t has read x_{n-1} .. x_{n-1-t}: the characters from the end
    hb   = hb' reversed within length    hb_t has read x_t .. x_{n-1}
    h_t  = [hf_t ; hb_t]                 (S, B, 2He)
    last = [hf_{n-1} ; hb_0]             (B, 2He): each direction after reading the whole sequence

Reversing within the length (:func:`reversal_index`) is a permutation of the time axis that is its own
inverse, so the backward pass reverses the incoming gradient with the same index and runs ``sequence_backward``.
Outputs at padded positions are computed but meaningless; whoever uses h must ignore them (attention's mask
does), and then their gradients are zero and padding changes nothing.

Backward:  dhf = dh[..., :He] (+ dlast_f at t = n-1)     dhb = dh[..., He:] (+ dlast_b at t = 0)
           each direction: sequence_backward, then input_grads (recurrence.py)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import require
from .cells import Cell
from .recurrence import SequenceCache, input_grads, project_inputs, sequence_backward, sequence_forward


def reversal_index(lengths: np.ndarray, S: int) -> np.ndarray:
    """(S, B) time indices that reverse each column within its length and leave its padding in place:
    index[t, b] = n_b - 1 - t for t < n_b, else t. Applying it twice gives back the original order."""
    t = np.arange(S)[:, None]                                    # (S, 1)
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (S, B)


def reverse_within_length(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """x (S, B, ...) in the order of :func:`reversal_index`."""
    return np.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=0)


def direction_forward(cell: Cell, ids: np.ndarray, p: dict) -> tuple[np.ndarray, SequenceCache]:
    """One direction: ids (S, B) -> (hs (S, B, He), SequenceCache), from the zero state."""
    zx = project_inputs(ids, p["Wx"], p["b"])                    # (S, B, G He)
    state0 = cell.zero_state(ids.shape[1], p["Wh"].shape[0], zx.dtype)
    hs, _, cache = sequence_forward(cell, zx, state0, p)              # (S, B, He)
    return hs, cache


def direction_backward(cell: Cell, dhs: np.ndarray, cache: SequenceCache, ids: np.ndarray, p: dict) -> dict:
    """BPTT of one direction: dhs (S, B, He) -> its parameter gradients {Wx, b, Wh[, bh]}."""
    dzx, grads, _ = sequence_backward(cell, dhs, cache, p)            # (S, B, G He)
    grads["Wx"], grads["b"], _ = input_grads(ids, dzx, p["Wx"])
    return grads


@dataclass
class BidirectionalCache:
    source: np.ndarray           # (S, B) ids
    reversed_source: np.ndarray  # (S, B) ids, each sequence reversed within its length
    index: np.ndarray            # (S, B) reversal_index
    lengths: np.ndarray          # (B,)
    forward: SequenceCache
    backward: SequenceCache


def bidirectional_forward(cell: Cell, p_forward: dict, p_backward: dict, source: np.ndarray, mask: np.ndarray):
    """source ids (S, B), mask (S, B) -> (h (S, B, 2He), last (B, 2He) = [hf_{n-1}; hb_0], BidirectionalCache)."""
    S, B = source.shape
    lengths = mask.sum(axis=0).astype(np.int64)                  # (B,)
    require(lengths.min() > 0, "every source text needs at least one character")
    index = reversal_index(lengths, S)
    reversed_source = reverse_within_length(source, index)       # (S, B)
    hf, cache_f = direction_forward(cell, source, p_forward)     # (S, B, He)
    hb_reversed, cache_b = direction_forward(cell, reversed_source, p_backward)
    hb = reverse_within_length(hb_reversed, index)               # (S, B, He) back in source order
    h = np.concatenate([hf, hb], axis=2)                         # (S, B, 2He)
    last = np.concatenate([hf[lengths - 1, np.arange(B)], hb[0]], axis=1)  # (B, 2He)
    return h, last, BidirectionalCache(source, reversed_source, index, lengths, cache_f, cache_b)


def bidirectional_backward(cell: Cell, dh: np.ndarray, dlast: np.ndarray, cache: BidirectionalCache,
                           p_forward: dict, p_backward: dict) -> tuple[dict, dict]:
    """dh (S, B, 2He), dlast (B, 2He) -> (gradients of the forward direction, of the backward direction)."""
    He, B = dh.shape[2] // 2, dh.shape[1]
    dhf = dh[:, :, :He].copy()                                   # (S, B, He)
    dhf[cache.lengths - 1, np.arange(B)] += dlast[:, :He]
    dhb = dh[:, :, He:].copy()                                   # (S, B, He)
    dhb[0] += dlast[:, He:]
    return (direction_backward(cell, dhf, cache.forward, cache.source, p_forward),
            direction_backward(cell, reverse_within_length(dhb, cache.index), cache.backward,
                               cache.reversed_source, p_backward))
