"""scan.py: the linear recurrence h_t = a_t h_{t-1} + b_t by the loop and by the doubling scan, forward and
backward, checked against each other, against finite differences and across windows -- also at T = 4,096.

Tolerances. The loop and the scan add the same terms in a different order (the scan forms products of a's
first), so in float64 they differ by rounding only: ~1e-16 relative per operation, grown through at most
log2(T) rounds; rtol 1e-12 (with atol 1e-12 relative to the values' scale of ~1) leaves a margin of 1e3 and
is far below what a wrong term (an off-by-one in the shift, a missing h_0) produces: 1e-2..1.
"""

import numpy as np
import pytest

from finite_differences import BOUND, EPS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.scan import (
    RECURRENCES,
    linear_recurrence_backward,
    linear_recurrence_loop,
    linear_recurrence_scan,
    log_space_scan,
)

TOL = dict(rtol=1e-12, atol=1e-12)


def random_recurrence(T, B=3, H=4, seed=0, dtype=np.float64, positive=False):
    """a in (0, 1), b of both signs (or positive), a nonzero h_0."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.02, 0.999, size=(T, B, H))
    b = rng.normal(size=(T, B, H))
    h0 = rng.normal(size=(B, H))
    if positive:
        b, h0 = np.abs(b) + 0.1, np.abs(h0) + 0.1
    return a.astype(dtype), b.astype(dtype), h0.astype(dtype)


def unrolled(a, b, h0):
    """h_t = (a_1 .. a_t) h_0 + sum_k (a_{k+1} .. a_t) b_k, written out term by term (small T only)."""
    T = len(a)
    hs = []
    for t in range(T):
        h = np.prod(a[:t + 1], axis=0) * h0
        for k in range(t + 1):
            h = h + np.prod(a[k + 1:t + 1], axis=0) * b[k]
        hs.append(h)
    return np.stack(hs)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 13, 64])
def test_loop_and_scan_equal_the_unrolled_sum(T):
    """Both forms compute the closed form of the module docstring, for T a power of two or not."""
    a, b, h0 = random_recurrence(T)
    expected = unrolled(a, b, h0) if T <= 13 else linear_recurrence_loop(a, b, h0)
    for form, run in RECURRENCES.items():
        np.testing.assert_allclose(run(a, b, h0), expected, **TOL, err_msg=form)


def test_scan_leaves_its_inputs_unchanged_and_writes_into_out():
    a, b, h0 = random_recurrence(9)
    before = a.copy(), b.copy(), h0.copy()
    out = np.empty_like(b)
    assert linear_recurrence_scan(a, b, h0, out) is out
    for array, original in zip((a, b, h0), before, strict=True):
        np.testing.assert_array_equal(array, original)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_long_window_of_4096_steps_neither_overflows_nor_underflows(dtype):
    """T = 4,096 with gates near 1 (long memory: products over the window down to ~1e-2) and near 0 (products
    far below the smallest float: they underflow to 0, which is right to within it). Forward and backward stay
    finite and equal the float64 loop on the same inputs: float64 to 1e-12 of the values' scale; float32 to
    2e-5 (observed: loop 8e-7, scan 4e-6 forward, 4e-6 / 5e-6 backward -- float32 rounding, 6e-8 per
    operation, over sums of up to ~1/(1 - a) ~ 1e3 terms)."""
    rng = np.random.default_rng(1)
    T, B, H = 4096, 2, 8
    remember, forget = rng.uniform(0.999, 0.99999, (T, B, H)), rng.uniform(1e-30, 1e-3, (T, B, H))
    a = np.where(rng.random((T, B, H)) < 0.5, remember, forget)
    a[:, :, 0] = 0.9999                                          # one unit that never forgets much
    a[1000:3000, :, 1] = 1e-20                                   # one that forgets everything, for 2,000 steps
    b = rng.normal(size=(T, B, H))
    h0 = rng.normal(size=(B, H))
    a, b, h0 = a.astype(dtype), b.astype(dtype), h0.astype(dtype)
    exact = linear_recurrence_loop(*(x.astype(np.float64) for x in (a, b, h0)))
    exact_g, _ = linear_recurrence_backward(a.astype(np.float64), b.astype(np.float64), h0.astype(np.float64), "loop")
    scale, scale_g = np.abs(exact).max(), np.abs(exact_g).max()
    assert 1.0 < scale < 1e4 and 1.0 < scale_g < 1e4
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for form, run in RECURRENCES.items():
        h = run(a, b, h0)
        g, dh0 = linear_recurrence_backward(a, b, h0, form)     # b as an upstream gradient, h0 as dh_final
        assert np.isfinite(h).all() and np.isfinite(g).all() and np.isfinite(dh0).all(), form
        assert np.abs(h - exact).max() <= tol * scale, form
        assert np.abs(g - exact_g).max() <= tol * scale_g, form


def test_the_papers_log_space_form_agrees_for_positive_inputs_and_loses_float32_precision_on_long_windows():
    """Feng et al.'s log-space scan computes the same h for b > 0 (float64: exp and log of sums of ~1e3
    terms, 1e-10), but in float32 over 4,096 steps its log-values reach |A_t| ~ 1e2 and keep only ~1e-5 of
    relative precision, while the doubling scan keeps the loop's: the reason rnnlab's scan is the doubling one
    (docs/mincells.md)."""
    a, b, h0 = random_recurrence(256, positive=True)
    np.testing.assert_allclose(log_space_scan(a, b, h0), linear_recurrence_loop(a, b, h0), rtol=1e-10)
    a, b, h0 = random_recurrence(4096, B=2, H=8, seed=2, positive=True)
    a = 0.5 + 0.5 * a                                            # a in (0.5, 1): memory over a few steps to ~1,000
    exact = linear_recurrence_loop(a, b, h0)                     # float64
    f32 = [x.astype(np.float32) for x in (a, b, h0)]
    log_error = np.abs(log_space_scan(*f32) / exact - 1).max()
    scan_error = np.abs(linear_recurrence_scan(*f32) / exact - 1).max()
    assert scan_error < 1e-5 < log_error


@pytest.mark.parametrize("form", sorted(RECURRENCES))
def test_backward_matches_finite_differences(form):
    """L = sum_t dh_t . h_t + dh_final . h_T: db = g, da = g h_{t-1} and dh_0 from linear_recurrence_backward
    against central differences (float64, relative error < 1e-6, tests/finite_differences.py)."""
    T = 6
    a, b, h0 = random_recurrence(T, seed=3)
    rng = np.random.default_rng(4)
    dh, dh_final = rng.normal(size=b.shape), rng.normal(size=h0.shape)

    def loss():
        h = RECURRENCES[form](a, b, h0)
        return float((h * dh).sum() + (h[-1] * dh_final).sum())

    h = RECURRENCES[form](a, b, h0)
    h_prev = np.concatenate([h0[None], h[:-1]])
    g, dh0 = linear_recurrence_backward(a, dh, dh_final, form)
    assert relative_error(g, numerical_gradient(loss, b, EPS)) < BOUND
    assert relative_error(g * h_prev, numerical_gradient(loss, a, EPS)) < BOUND
    assert relative_error(dh0, numerical_gradient(loss, h0, EPS)) < BOUND


@pytest.mark.parametrize("form", sorted(RECURRENCES))
def test_two_windows_with_the_state_carried_equal_one_window_forward_and_backward(form):
    """Forward: the second window started from the first's last state continues the sequence exactly.
    Backward: handing the second window's dh_0 to the first as its dh_final gives the one window's gradient
    -- what truncated BPTT cuts, and what a longer window keeps."""
    a, b, h0 = random_recurrence(10, seed=5)
    dh = np.random.default_rng(6).normal(size=b.shape)
    run = RECURRENCES[form]
    whole = run(a, b, h0)
    first = run(a[:4], b[:4], h0)
    second = run(a[4:], b[4:], first[-1])
    np.testing.assert_allclose(np.concatenate([first, second]), whole, **TOL)
    g_whole, dh0_whole = linear_recurrence_backward(a, dh, None, form)
    g_second, carried = linear_recurrence_backward(a[4:], dh[4:], None, form)
    g_first, dh0_first = linear_recurrence_backward(a[:4], dh[:4], carried, form)
    np.testing.assert_allclose(np.concatenate([g_first, g_second]), g_whole, **TOL)
    np.testing.assert_allclose(dh0_first, dh0_whole, **TOL)
