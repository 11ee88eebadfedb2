"""The linear recurrence h_t = a_t * h_{t-1} + b_t over a whole window: step by step, or as a parallel scan.

minGRU and minLSTM (``mincells.py``) compute their gates from the input alone, so what is left of their
recurrence is *linear* in the state, element by element (every array here is (T, B, H); h_0 is (B, H)):

    h_t = a_t * h_{t-1} + b_t          t = 1 .. T,  0 < a_t < 1

Unrolled, every state is a weighted sum of the inputs, each weighted by the product of the a's since:

    h_t = (a_1 ... a_t) h_0 + sum_{k <= t} (a_{k+1} ... a_t) b_k

Two ways to compute h_1 .. h_T, with the same numbers (up to rounding):

* :func:`linear_recurrence_loop` -- one step per character, T steps of two element-wise operations on
  (B, H) arrays. O(T) work, T steps one after the other. No matrix product inside (the recurrence has no
  W_h), so on a CPU -- where B * H numbers already fill the vector units -- this is the faster form.
* :func:`linear_recurrence_scan` -- the parallel form (Hillis & Steele 1986). The step t -> t + 1 is the
  map h -> a h + b; two consecutive maps compose into one of the same kind,
  (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2). After round r every position t holds the composition of the
  2^r steps ending at t, so log2(T) rounds over the whole window solve it:

      for d = 1, 2, 4, ... < T:     b_t <- b_t + a_t b_{t-d},    a_t <- a_t a_{t-d}      (t > d)

  O(T log T) work but only log2(T) steps, each over all T positions at once: the form for a GPU.

Why not the log-space form of Feng et al. (2024; :func:`log_space_scan`, kept for comparison)? It writes
h_t = exp(A_t + logcumsumexp_k(log b_k - A_k)) with A_t = sum log a, so it needs b > 0 (the paper maps h~
through g(x) = x + 0.5 / sigmoid(x) for that), and its float32 precision falls with |A_t|: log-values in the
hundreds keep ~1e-5 of relative precision (docs/mincells.md measures both). The doubling scan takes
logarithms of nothing and divides by nothing: it multiplies numbers in (0, 1) -- whose products only shrink,
so an underflow to 0 is the correct answer to within the smallest float, a contribution that has decayed
away -- and adds the same kind of terms as the loop. Any sign of b, any T (4,096 is tested), float32 or 64.

Backward: the gradient of a linear recurrence is a linear recurrence run backwards. With dh_t the gradient
arriving at h_t from outside the recurrence (the layer above; the next window for h_T), the whole
gradient dL/dh_t -- which is also db_t, since b_t enters h_t with weight 1 -- is

    db_T = dh_T + dh_final,     db_t = a_{t+1} db_{t+1} + dh_t         (the same recurrence, time reversed)
    da_t = db_t h_{t-1},        dh_0 = a_1 db_1

so :func:`linear_recurrence_backward` hands the reversed arrays to the same loop or scan.

A window kernel passes ``out`` arrays it keeps in a ``recurrence.Workspace`` between training steps.
"""

from __future__ import annotations

import numpy as np


def linear_recurrence_loop(a: np.ndarray, b: np.ndarray, h0: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """h_t = a_t h_{t-1} + b_t for t = 1..T, one step per character -> h (T, B, H), into ``out`` if given.
    a, b (T, B, H) (any strides: the backward pass hands reversed views), h0 (B, H)."""
    out = np.empty(b.shape, dtype=b.dtype) if out is None else out
    h_prev = h0
    for a_t, b_t, h_t in zip(a, b, out, strict=True):            # (B, H) each; views, made once per step
        np.multiply(a_t, h_prev, h_t)
        np.add(h_t, b_t, h_t)                                    # h_t = a_t h_{t-1} + b_t
        h_prev = h_t
    return out


def linear_recurrence_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The same h (T, B, H) as :func:`linear_recurrence_loop`, by log2(T) rounds of the doubling scan (see
    the module docstring); into ``out`` if given. a and b are not changed."""
    T = len(b)
    out = np.empty(b.shape, dtype=b.dtype) if out is None else out
    out[...] = b                                                 # (T, B, H) the running b of each position
    if T == 0:
        return out
    out[0] += a[0] * h0                                          # fold h_0 into the first step
    a = a.copy()                                                 # (T, B, H) the running a of each position
    d = 1
    while d < T:
        out[d:] += a[d:] * out[:-d]                              # b_t <- b_t + a_t b_{t-d} (right side first)
        if 2 * d < T:                                            # the last round needs no new a
            a[d:] *= a[:-d]                                      # a_t <- a_t a_{t-d}
        d *= 2
    return out


def log_space_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """Feng et al.'s parallel form, for comparison (not used for training): b >= 0 and h0 >= 0 only.

        A_t = sum_{k <= t} log a_k                                   (cumulative sum)
        log h_t = A_t + log( h_0 + sum_{k <= t} exp(log b_k - A_k) )  (logaddexp.accumulate)
    """
    with np.errstate(divide="ignore"):                           # log 0 = -inf is a valid term here
        A = np.cumsum(np.log(a), axis=0)                         # (T, B, H)
        terms = np.concatenate([np.log(h0)[None], np.log(b) - A])    # (T+1, B, H): h_0, then each b_k
    return np.exp(A + np.logaddexp.accumulate(terms, axis=0)[1:])    # (T, B, H)


RECURRENCES = {"loop": linear_recurrence_loop, "scan": linear_recurrence_scan}
# The NumPy engine's form: the loop, 2.6x faster than the doubling scan (and 39x than the log-space form) for
# T, B, H = 256, 32, 256 in float32 on the project's 2-core CPU (docs/mincells.md).
DEFAULT_FORM = "loop"


def linear_recurrence(a, b, h0, out=None, form: str = DEFAULT_FORM) -> np.ndarray:
    """h (T, B, H) by ``form``: "loop" or "scan"."""
    return RECURRENCES[form](a, b, h0, out)


def linear_recurrence_backward(a: np.ndarray, dh: np.ndarray, dh_final: np.ndarray | None = None,
                               form: str = DEFAULT_FORM, out: np.ndarray | None = None):
    """Backward of h_t = a_t h_{t-1} + b_t -> (db, dh_0), db into ``out`` if given.

    a (T, B, H); dh (T, B, H) the gradient arriving at each h_t from outside the recurrence (the layer
    above); dh_final (B, H) what arrives at h_T from after the window (None: truncated BPTT, zero). The
    whole gradient reaching h_t -- equal to db_t -- runs the recurrence backwards, db_T = dh_T + dh_final and
    db_t = a_{t+1} db_{t+1} + dh_t: the same loop or scan on reversed views -- coefficients a_T .. a_2,
    inputs dh_{T-1} .. dh_1, start db_T. Then

        da_t = db_t h_{t-1}        dh_0 = a_1 db_1

    and each cell folds da_t into its own gate gradients (mincells.py), which saves a pass over (T, B, H).
    """
    T = len(dh)
    db = np.empty(dh.shape, dtype=dh.dtype) if out is None else out   # (T, B, H)
    if dh_final is None:
        db[T - 1] = dh[T - 1]
    else:
        np.add(dh[T - 1], dh_final, out=db[T - 1])
    RECURRENCES[form](a[:0:-1], dh[-2::-1], db[T - 1], db[-2::-1])  # db_t = a_{t+1} db_{t+1} + dh_t, t = T-1..1
    return db, a[0] * db[0]
