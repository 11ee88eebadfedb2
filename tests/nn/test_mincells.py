"""mincells.py: minGRU's and minLSTM's window kernels (loop and scan) equal their textbook steps run by the one
sequence loop, forward and backward, with the state carried in and a gradient arriving from after the window;
they match finite differences; they hold at T = 4,096 and at extreme gate values.

Tolerances (float64): the window kernels compute the same functions as the steps -- minLSTM's f' through
sig(softplus(-zi) - softplus(-zf)) instead of f / (f + i), equal in exact arithmetic -- so they differ by
rounding: observed <= 5e-16 over 7 steps and <= 2e-15 over 4,096; rtol 1e-10 / atol 1e-12 leaves a margin of
1e3 and more, and any wrong term (a gate block swapped, a missing (1 - u)) is off by 1e-2..1.
"""

import numpy as np
import pytest

from finite_differences import BOUND, EPS
from rnnlab.nn import mincells
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.recurrence import Workspace, sequence_backward, sequence_forward, step_loop_backward, step_loop_forward
from rnnlab.nn.scan import RECURRENCES

MIN_CELLS = ("mingru", "minlstm")
TOL = dict(rtol=1e-10, atol=1e-12)


def gate_major(zx: np.ndarray, gates: int) -> np.ndarray:
    """(T, B, GH) -> (G, T, B, H): the layout the window kernels read (recurrence.layer_inputs)."""
    T, B, GH = zx.shape
    return np.ascontiguousarray(zx.reshape(T, B, gates, GH // gates).transpose(2, 0, 1, 3))


def window(name: str, form: str):
    forward, backward = (getattr(mincells, f"{name}_window_{part}") for part in ("forward", "backward"))
    return (lambda zx, state0, ws=None: forward(zx, state0, {}, ws, "l0.", form)), backward


def random_window(cell, T, B=3, H=4, seed=0):
    """Pre-activations of every gate (N(0, 1.5^2): gates from ~0.05 to ~0.95), a nonzero initial state, a
    random gradient from above at every step and one after the window."""
    rng = np.random.default_rng(seed)
    zx = 1.5 * rng.normal(size=(T, B, cell.n_gates * H))
    state0 = (rng.normal(size=(B, H)),)
    return zx, state0, rng.normal(size=(T, B, H)), (rng.normal(size=(B, H)),)


@pytest.mark.parametrize("form", sorted(RECURRENCES))
@pytest.mark.parametrize("name", MIN_CELLS)
@pytest.mark.parametrize("T", [1, 7, 4096])
def test_window_kernel_equals_the_textbook_steps_forward_and_backward(name, form, T):
    """The states, the final state, every gate gradient and the gradient reaching the initial state, from a
    nonzero state with a gradient arriving after the window; T = 4,096 is the long window of the issue."""
    cell = CELLS[name]
    zx, state0, dhs, dfinal = random_window(cell, T, B=2 if T > 100 else 3, H=3 if T > 100 else 4)
    hs_ref, final_ref, cache_ref = step_loop_forward(cell, zx.copy(), state0, {})
    dzx_ref, grads_ref, dstate0_ref = step_loop_backward(cell, dhs, cache_ref, {}, dfinal)
    assert grads_ref == {}                                        # no recurrent weights
    forward, backward = window(name, form)
    hs, final, cache = forward(gate_major(zx, cell.n_gates), state0)
    dzx, grads, dstate0 = backward(dhs, cache, {}, dfinal)
    assert grads == {}
    np.testing.assert_allclose(hs, hs_ref, **TOL)
    np.testing.assert_allclose(final[0], final_ref[0], **TOL)
    np.testing.assert_allclose(dzx, gate_major(dzx_ref, cell.n_gates), **TOL)
    np.testing.assert_allclose(dstate0[0], dstate0_ref[0], **TOL)


@pytest.mark.parametrize("form", sorted(RECURRENCES))
@pytest.mark.parametrize("name", MIN_CELLS)
def test_window_kernel_matches_finite_differences(name, form):
    """L = sum_t dh_t . h_t + dh_final . h_T: d/dzx (every gate of every step) and d/dh_0 against central
    differences (float64, relative error < 1e-6)."""
    cell = CELLS[name]
    zx, state0, dhs, dfinal = random_window(cell, 5, seed=1)
    zx = gate_major(zx, cell.n_gates)
    forward, backward = window(name, form)

    def loss():
        hs, final, _ = forward(zx, state0)
        return float((hs * dhs).sum() + (final[0] * dfinal[0]).sum())

    _, _, cache = forward(zx, state0)
    dzx, _, (dh0,) = backward(dhs, cache, {}, dfinal)
    assert relative_error(dzx, numerical_gradient(loss, zx, EPS)) < BOUND
    assert relative_error(dh0, numerical_gradient(loss, state0[0], EPS)) < BOUND


@pytest.mark.parametrize("name", MIN_CELLS)
def test_with_a_workspace_the_gates_overwrite_zx_and_the_results_are_the_same(name):
    """The sequence loop hands the kernels a workspace: gates go over zx, gate gradients over the gates (dzx
    is zx's array), and the numbers equal the fresh-array run; without one, zx is left as it was."""
    cell = CELLS[name]
    zx, state0, dhs, _ = random_window(cell, 6, seed=2)
    zx = gate_major(zx, cell.n_gates)
    original = zx.copy()
    hs, final, cache = sequence_forward(cell, zx, state0, {})
    dzx, _, dstate0 = sequence_backward(cell, dhs, cache, {})
    np.testing.assert_array_equal(zx, original)
    ws = Workspace()
    own = zx.copy()
    hs_ws, final_ws, cache_ws = sequence_forward(cell, own, state0, {}, ws, "l0.")
    dzx_ws, _, dstate0_ws = sequence_backward(cell, dhs, cache_ws, {}, ws=ws, name="l0.")
    assert dzx_ws is own
    for got, want in ((hs_ws, hs), (final_ws[0], final[0]), (dzx_ws, dzx), (dstate0_ws[0], dstate0[0])):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", MIN_CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_stays_a_convex_combination_of_the_start_and_the_candidates(name, dtype):
    """h_t = a_t h_{t-1} + (1 - a_t) h~_t with a_t in [0, 1] (minGRU: a = 1 - u; minLSTM: f' + i' = 1), so
    every |h_t| is at most max(|h_0|, max_k |h~_k|): the linear recurrence cannot run away, whatever T."""
    cell = CELLS[name]
    zx, state0, _, _ = random_window(cell, 500, seed=3)
    zx = gate_major(zx, cell.n_gates).astype(dtype)
    zx[-1] *= 5.0                                                # large candidates
    hs, _, _ = sequence_forward(cell, zx, (state0[0].astype(dtype),), {})
    bound = max(np.abs(state0[0]).max(), np.abs(zx[-1]).max())
    assert np.abs(hs).max() <= bound * (1 + 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_minlstm_normalised_gates_are_right_where_both_sigmoids_round_to_zero(dtype):
    """zf, zi around -60..-200: sig rounds both to (nearly) 0 in float32, and f / (f + i) would be 0 / 0. The
    kernel's f' = sig(softplus(-zi) - softplus(-zf)) is sig(zf - zi) there (log sig(z) = z for z << 0): the
    state follows the gate that is less closed, finite, to float rounding."""
    T, B, H = 4, 1, 3
    zf = np.array([-60.0, -200.0, -80.0])                        # log f - log i = zf - zi
    zi = np.array([-62.0, -195.0, -80.0])
    zx = np.zeros((3, T, B, H))
    zx[0], zx[1], zx[2] = zf, zi, 1.0                            # candidates h~ = 1
    h0 = np.zeros((B, H))
    hs, _, cache = mincells.minlstm_window_forward(zx.astype(dtype), (h0.astype(dtype),), {})
    f_prime = 1.0 / (1.0 + np.exp(zi - zf))                     # sig(zf - zi)
    np.testing.assert_allclose(cache.a[0, 0], f_prime, rtol=1e-5)
    expected = 1.0 - f_prime ** np.arange(1, T + 1)[:, None]     # h_t = 1 - f'^t from h_0 = 0, h~ = 1
    np.testing.assert_allclose(hs[:, 0], expected, rtol=1e-5, atol=1e-7)
    dzx, _, _ = mincells.minlstm_window_backward(np.ones_like(hs), cache, {})
    assert np.isfinite(dzx).all()
