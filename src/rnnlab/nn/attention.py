"""Attention over source positions: scores, a masked softmax and the context vector, each beside its backward.

A decoder state ``q`` (the *query*, (B, Hq)) looks at the encoder outputs h_1 .. h_S (the *values*, (B, S, Hv));
the mask m (B, S) is 1 at real source characters and 0 at padding:

    e_j   = score(q, h_j)                                    (B, S)   how well source position j fits the query
    alpha = masked_softmax(e, m)                             (B, S)   weights over the real positions, summing to 1
    c     = sum_j alpha_j h_j                                (B, Hv)  the context vector

Scores (:data:`SCORES`). Each is split into a part that depends on the encoder outputs only -- the *keys*
k_j, computed ONCE per source sentence because they do not change while the decoder runs -- and a cheap
per-query part:

    additive   (Bahdanau 2015)  e_j = v . tanh(q Wq + k_j + b)     k_j = h_j Wk        (B, S, A)
    dot        (Luong 2015)     e_j = q . k_j                      k_j = h_j           (needs Hq = Hv)
    general    (Luong 2015)     e_j = q W h_j^T = q . k_j          k_j = h_j W^T       (B, S, Hq)
    scaled_dot (Vaswani 2017)   e_j = q . k_j / sqrt(Hq)           k_j = h_j           (needs Hq = Hv)

Backward, from the gradient dc of the context (and nothing else: alpha is an output to look at, not to train):

    context          dalpha_j = dc . h_j                   dh_j += alpha_j dc
    masked softmax   de_j = alpha_j (dalpha_j - sum_i alpha_i dalpha_i)        (0 where m_j = 0: alpha_j = 0)
    additive         u = tanh(q Wq + k_j + b)   dv = sum de_j u_j   dz_j = de_j v (1 - u_j^2)
                     dk_j = dz_j   dq = (sum_j dz_j) Wq^T   dWq = q^T sum_j dz_j   db = sum dz_j
                     keys: dWk = sum_j h_j^T dk_j          dh_j += dk_j Wk^T
    dot / scaled     with s = 1 or 1/sqrt(Hq):   dq = s sum_j de_j k_j    dk_j = s de_j q
    general          dot on k_j = h_j W^T:       dW = sum_j dk_j^T h_j    dh_j += dk_j W

Every function is stateless: ``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads``.
Parameters are a dict of named arrays (``Wq``, ``Wk``, ``b``, ``v`` for additive; ``W`` for general; none
for dot and scaled dot); gradients use the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import require
from .initializers import uniform

# --------------------------------------------------------------------------------------------------------
# Masked softmax over the source positions
#   alpha_j = m_j e^(e_j - M) / sum_i m_i e^(e_i - M),      M = max over the real positions
#   de_j    = alpha_j (dalpha_j - sum_i alpha_i dalpha_i)
# A row without any real position gets alpha = 0 (and so c = 0) instead of 0/0.
# --------------------------------------------------------------------------------------------------------

def masked_softmax_forward(e: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e (B, S), mask (B, S) -> (alpha (B, S), cache)."""
    real = mask > 0                                              # (B, S) bool
    shifted = np.where(real, e, -np.inf)                         # (B, S) padding can never win the max
    top = shifted.max(axis=1, keepdims=True)                     # (B, 1)
    shifted -= np.where(np.isfinite(top), top, 0.0)              # max-subtraction: nothing overflows
    alpha = np.exp(shifted)                                      # (B, S) exactly 0 at padding
    total = alpha.sum(axis=1, keepdims=True)                     # (B, 1)
    alpha /= np.where(total > 0, total, 1.0)
    return alpha, alpha


def masked_softmax_backward(dalpha: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """dalpha (B, S) -> de (B, S)."""
    return alpha * (dalpha - (alpha * dalpha).sum(axis=1, keepdims=True))  # (B, S)


# --------------------------------------------------------------------------------------------------------
# Context vector
#   c = sum_j alpha_j h_j            dalpha_j = dc . h_j        dh_j = alpha_j dc
# --------------------------------------------------------------------------------------------------------

def context_forward(alpha: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, tuple]:
    """alpha (B, S), values (B, S, Hv) -> (c (B, Hv), cache)."""
    c = np.matmul(alpha[:, None, :], values)[:, 0, :]            # (B, Hv)
    return c, (alpha, values)


def context_backward(dc: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """dc (B, Hv) -> (dalpha (B, S), dvalues (B, S, Hv))."""
    alpha, values = cache
    dalpha = np.matmul(values, dc[:, :, None])[:, :, 0]          # (B, S)
    dvalues = alpha[:, :, None] * dc[:, None, :]                 # (B, S, Hv)
    return dalpha, dvalues


# --------------------------------------------------------------------------------------------------------
# Additive score (Bahdanau)
#   z_j = q Wq + b + k_j,   k_j = h_j Wk        u_j = tanh(z_j)        e_j = u_j . v
# --------------------------------------------------------------------------------------------------------

def additive_init(query_size: int, value_size: int, attention_size: int, rng: np.random.Generator) -> dict:
    return {"Wq": uniform(rng, (query_size, attention_size), 1.0 / np.sqrt(query_size)),
            "Wk": uniform(rng, (value_size, attention_size), 1.0 / np.sqrt(value_size)),
            "b": np.zeros(attention_size),
            "v": uniform(rng, (attention_size,), 1.0 / np.sqrt(attention_size))}


def additive_keys(values: np.ndarray, p: dict) -> np.ndarray:
    return values @ p["Wk"]                                      # (B, S, A)


def additive_keys_backward(dkeys: np.ndarray, values: np.ndarray, p: dict) -> tuple[np.ndarray, dict]:
    Hv, A = p["Wk"].shape
    dWk = values.reshape(-1, Hv).T @ dkeys.reshape(-1, A)        # (Hv, A), all positions in one GEMM
    return dkeys @ p["Wk"].T, {"Wk": dWk}                        # dvalues (B, S, Hv)


def additive_score(q: np.ndarray, keys: np.ndarray, p: dict) -> tuple[np.ndarray, tuple]:
    z = keys + (q @ p["Wq"] + p["b"])[:, None, :]                # (B, S, A)
    u = np.tanh(z, out=z)                                        # (B, S, A)
    return u @ p["v"], (q, u)                                    # e (B, S)


def additive_score_backward(de: np.ndarray, cache: tuple, p: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    q, u = cache
    dz = (1.0 - u * u) * p["v"]                                  # (B, S, A)
    dz *= de[:, :, None]                                         # de_j v (1 - u_j^2)
    dzq = dz.sum(axis=1)                                         # (B, A) the query's share of every z_j
    grads = {"Wq": q.T @ dzq, "b": dzq.sum(axis=0),              # (Hq, A), (A,)
             "v": np.einsum("bs,bsa->a", de, u)}                 # (A,)
    return dzq @ p["Wq"].T, dz, grads                            # dq (B, Hq), dkeys (B, S, A)


# --------------------------------------------------------------------------------------------------------
# Dot-product scores: dot, scaled dot and general (Luong's q W h^T is a dot product with projected keys)
#   e_j = s q . k_j          dq = s sum_j de_j k_j          dk_j = s de_j q
# --------------------------------------------------------------------------------------------------------

def no_params(query_size: int, value_size: int, attention_size: int, rng: np.random.Generator) -> dict:
    return {}


def identity_keys(values: np.ndarray, p: dict) -> np.ndarray:
    return values                                                # (B, S, Hv)


def identity_keys_backward(dkeys: np.ndarray, values: np.ndarray, p: dict) -> tuple[np.ndarray, dict]:
    return dkeys, {}


def scaled_dot_products(q: np.ndarray, keys: np.ndarray, scale: float) -> tuple[np.ndarray, tuple]:
    e = np.matmul(keys, q[:, :, None])[:, :, 0]                  # (B, S)
    if scale != 1.0:
        e *= scale
    return e, (q, keys, scale)


def scaled_dot_products_backward(de: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, dict]:
    q, keys, scale = cache
    de = de * scale                                              # (B, S)
    dq = np.matmul(de[:, None, :], keys)[:, 0, :]                # (B, Hq)
    return dq, de[:, :, None] * q[:, None, :], {}                # dkeys (B, S, Hq)


def dot_score(q, keys, p):
    return scaled_dot_products(q, keys, 1.0)


def scaled_dot_score(q, keys, p):
    return scaled_dot_products(q, keys, 1.0 / np.sqrt(q.shape[1]))


def dot_score_backward(de, cache, p):
    return scaled_dot_products_backward(de, cache)


def general_init(query_size: int, value_size: int, attention_size: int, rng: np.random.Generator) -> dict:
    return {"W": uniform(rng, (query_size, value_size), 1.0 / np.sqrt(value_size))}


def general_keys(values: np.ndarray, p: dict) -> np.ndarray:
    return values @ p["W"].T                                     # (B, S, Hq)


def general_keys_backward(dkeys: np.ndarray, values: np.ndarray, p: dict) -> tuple[np.ndarray, dict]:
    Hq, Hv = p["W"].shape
    dW = dkeys.reshape(-1, Hq).T @ values.reshape(-1, Hv)        # (Hq, Hv)
    return dkeys @ p["W"], {"W": dW}                             # dvalues (B, S, Hv)


@dataclass(frozen=True)
class Score:
    """One score type: its parameters and its two halves (keys once per sentence, then one query at a time).

    init(query_size, value_size, attention_size, rng) -> params   (float64; may be empty)
    keys(values, p) -> keys                                        (B, S, Hv) -> (B, S, K)
    keys_backward(dkeys, values, p) -> (dvalues, grads)
    score(q, keys, p) -> (e (B, S), cache)
    score_backward(de, cache, p) -> (dq, dkeys, grads)
    """

    name: str
    same_sizes: bool         # the query and the values must have the same width (no matrix between them)
    init: Callable
    keys: Callable
    keys_backward: Callable
    score: Callable
    score_backward: Callable


SCORES = {
    "additive": Score("additive", False, additive_init, additive_keys, additive_keys_backward,
                      additive_score, additive_score_backward),
    "dot": Score("dot", True, no_params, identity_keys, identity_keys_backward, dot_score, dot_score_backward),
    "general": Score("general", False, general_init, general_keys, general_keys_backward,
                     dot_score, dot_score_backward),
    "scaled_dot": Score("scaled_dot", True, no_params, identity_keys, identity_keys_backward,
                        scaled_dot_score, dot_score_backward),
}


def check_sizes(score: str, query_size: int, value_size: int) -> None:
    """Raise RnnlabError for an unknown score, or for a dot score between vectors of different widths."""
    require(score in SCORES, f"unknown attention score {score!r}: use one of {', '.join(SCORES)}")
    require(not SCORES[score].same_sizes or query_size == value_size,
            f"--attention {score} compares the decoder state ({query_size} units) with the encoder outputs "
            f"({value_size} = 2 x encoder units) directly, so they must be equal: set the decoder size to "
            f"{value_size}, or use --attention general or additive")


# --------------------------------------------------------------------------------------------------------
# One query: score -> masked softmax -> context, with the keys computed beforehand
# --------------------------------------------------------------------------------------------------------

def attend(score: Score, q: np.ndarray, keys: np.ndarray, values: np.ndarray, mask: np.ndarray, p: dict):
    """q (B, Hq), keys (B, S, K), values (B, S, Hv), mask (B, S) -> ((c (B, Hv), alpha (B, S)), cache)."""
    e, score_cache = score.score(q, keys, p)                     # (B, S)
    alpha, softmax_cache = masked_softmax_forward(e, mask)       # (B, S)
    c, context_cache = context_forward(alpha, values)            # (B, Hv)
    return (c, alpha), (score, score_cache, softmax_cache, context_cache)


def attend_backward(dc: np.ndarray, cache: tuple, p: dict):
    """dc (B, Hv) -> (dq (B, Hq), dkeys (B, S, K), dvalues (B, S, Hv), grads of the score's parameters)."""
    score, score_cache, softmax_cache, context_cache = cache
    dalpha, dvalues = context_backward(dc, context_cache)        # (B, S), (B, S, Hv)
    de = masked_softmax_backward(dalpha, softmax_cache)          # (B, S)
    dq, dkeys, grads = score.score_backward(de, score_cache, p)
    return dq, dkeys, dvalues, grads


# --------------------------------------------------------------------------------------------------------
# The whole attention for a single query, keys included: the unit the gradient checks and cross-checks test
# --------------------------------------------------------------------------------------------------------

def attention_forward(kind: str, q: np.ndarray, values: np.ndarray, mask: np.ndarray, p: dict):
    """q (B, Hq), values (B, S, Hv), mask (B, S) -> ((c (B, Hv), alpha (B, S)), cache)."""
    check_sizes(kind, q.shape[1], values.shape[2])
    score = SCORES[kind]
    keys = score.keys(values, p)                                 # (B, S, K)
    out, cache = attend(score, q, keys, values, mask, p)
    return out, (cache, values)


def attention_backward(dc: np.ndarray, cache: tuple, p: dict) -> dict:
    """dc (B, Hv) -> {"q": (B, Hq), "values": (B, S, Hv), and the score's parameter names}."""
    step_cache, values = cache
    score = step_cache[0]
    dq, dkeys, dvalues, grads = attend_backward(dc, step_cache, p)
    dvalues_via_keys, key_grads = score.keys_backward(dkeys, values, p)
    return {"q": dq, "values": dvalues + dvalues_via_keys, **grads, **key_grads}


def attention_param_shapes(kind: str, query_size: int, value_size: int, attention_size: int) -> dict:
    """{name: shape} of what :func:`init_attention` makes, without allocating (checkpoint validation)."""
    shapes = {"additive": {"Wq": (query_size, attention_size), "Wk": (value_size, attention_size),
                           "b": (attention_size,), "v": (attention_size,)},
              "general": {"W": (query_size, value_size)}}
    return shapes.get(kind, {})


def init_attention(kind: str, query_size: int, value_size: int, attention_size: int,
                   rng: np.random.Generator) -> dict:
    """The score's parameters (float64), after checking that the sizes fit the score."""
    check_sizes(kind, query_size, value_size)
    return SCORES[kind].init(query_size, value_size, attention_size, rng)
