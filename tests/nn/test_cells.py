"""The fast, in-place LSTM and GRU steps equal the textbook ones (cells.lstm_reference_step_*,
cells.gru_reference_step_*), forward and backward.

Both run in float64 on random *nonzero* biases (folded into zx, as the sequence loop does) over several
steps. The fast step's sigmoid is (1 + tanh(z/2)) / 2 computed on a scaled copy of the whole gate block;
the reference's is activations.sigmoid on each gate -- the same formula, so the two differ only by float64
rounding in a different order: rtol 1e-12 (about 1e4 ulp) is far above that and far below any real error.
"""

import numpy as np
import pytest

from finite_differences import BOUND, EPS, random_layer
from rnnlab.nn.cells import (
    CELLS,
    gru_reference_step_backward,
    gru_reference_step_forward,
    lstm_reference_step_backward,
    lstm_reference_step_forward,
)
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.recurrence import Workspace, project_inputs, sequence_backward, sequence_forward

TOL = dict(rtol=1e-12, atol=1e-12)
T, B, In, H = 6, 3, 5, 4


def random_lstm(rng):
    p = CELLS["lstm"].init(In, H, rng)
    return {name: rng.normal(0.0, 0.7, size=value.shape) for name, value in p.items()}   # biases nonzero


def reference_sequence(zx, state0, p, dhs):
    """Forward T reference steps, then BPTT through them with dhs from above -> (hs, final, dz, dstate0)."""
    state, caches, hs = state0, [], []
    for t in range(len(zx)):
        state, cache = lstm_reference_step_forward(zx[t], state, p)
        caches.append(cache)
        hs.append(state[0])
    final = state
    dstate, dzs = (np.zeros((B, H)), np.zeros((B, H))), [None] * len(zx)
    for t in reversed(range(len(zx))):
        dzx, _, dstate = lstm_reference_step_backward((dstate[0] + dhs[t], dstate[1]), caches[t], p)
        dzs[t] = dzx
    return np.stack(hs), final, np.stack(dzs), dstate


@pytest.mark.parametrize("workspace", [False, True], ids=["fresh-arrays", "in-place-workspace"])
def test_fast_lstm_equals_textbook_lstm_over_several_steps(workspace):
    """Through the sequence loop (with a workspace the gates overwrite zx and the gate gradients the gates,
    the order the in-place comments guard): h, c, the final state, dz at every step, the gradient reaching
    the initial state and dWh all equal the reference's."""
    rng = np.random.default_rng(0)
    p = random_lstm(rng)
    x = rng.integers(0, In, size=(T, B))
    state0 = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    dhs = rng.normal(size=(T, B, H))
    zx_ref = project_inputs(x, p["Wx"], p["b"])                  # (T, B, 4H)
    hs_ref, final_ref, dz_ref, dstate0_ref = reference_sequence(zx_ref.copy(), state0, p, dhs)

    ws = Workspace() if workspace else None
    zx = project_inputs(x, p["Wx"], p["b"], None if ws is None else ws.empty("l0.zx", zx_ref.shape, np.float64))
    hs, final, cache = sequence_forward(CELLS["lstm"], zx, state0, p, ws, "l0.")
    np.testing.assert_allclose(hs, hs_ref, **TOL)
    for part, part_ref in zip(final, final_ref, strict=True):
        np.testing.assert_allclose(part, part_ref, **TOL)
    h_prev = np.concatenate([state0[0][None], hs_ref[:-1]])     # (T, B, H) the h entering each step
    dzx, grads, dstate0 = sequence_backward(CELLS["lstm"], dhs, cache, p, ws=ws, name="l0.")
    np.testing.assert_allclose(dzx, dz_ref, **TOL)
    np.testing.assert_allclose(grads["Wh"], np.einsum("tbh,tbg->hg", h_prev, dz_ref), **TOL)
    for part, part_ref in zip(dstate0, dstate0_ref, strict=True):
        np.testing.assert_allclose(part, part_ref, **TOL)


def test_textbook_lstm_step_backward_matches_finite_differences():
    """The reference step on its own: random upstream dh and dc; dzx, dh_{t-1}, dc_{t-1} and
    h_{t-1}^T dz = dWh against central differences (float64, relative error < 1e-6, as below)."""
    rng = np.random.default_rng(1)
    p = random_lstm(rng)
    zx = rng.normal(size=(B, 4 * H))
    state = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    upstream = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))

    def loss():
        next_state, _ = lstm_reference_step_forward(zx, state, p)
        return sum(float((s * u).sum()) for s, u in zip(next_state, upstream, strict=True))

    _, cache = lstm_reference_step_forward(zx, state, p)
    dzx, dzh, (dh_prev, dc_prev) = lstm_reference_step_backward(upstream, cache, p)
    assert dzx is dzh
    assert relative_error(dzx, numerical_gradient(loss, zx)) < 1e-6
    assert relative_error(dh_prev, numerical_gradient(loss, state[0])) < 1e-6
    assert relative_error(dc_prev, numerical_gradient(loss, state[1])) < 1e-6
    assert relative_error(state[0].T @ dzh, numerical_gradient(loss, p["Wh"])) < 1e-6


def random_gru(rng):
    p = CELLS["gru"].init(In, H, rng)
    return {name: rng.normal(0.0, 0.7, size=value.shape) for name, value in p.items()}   # b and bh nonzero


@pytest.mark.parametrize("workspace", [False, True], ids=["fresh-arrays", "in-place-workspace"])
def test_fast_gru_equals_textbook_gru_over_several_steps(workspace):
    """Through the sequence loop: h at every step, the final state, dzx at every step, the gradient reaching
    the initial state, dWh and dbh all equal T textbook steps' (float64, TOL as above: the two compute the
    same formulas in another order)."""
    rng = np.random.default_rng(2)
    p = random_gru(rng)
    x = rng.integers(0, In, size=(T, B))
    h0 = rng.normal(size=(B, H))
    dhs = rng.normal(size=(T, B, H))
    zx_ref = project_inputs(x, p["Wx"], p["b"])                  # (T, B, 3H)
    state, caches, hs_ref = (h0,), [], []
    for t in range(T):
        state, cache = gru_reference_step_forward(zx_ref[t], state, p)
        caches.append(cache)
        hs_ref.append(state[0])
    dh, dzx_ref, dzh_ref = np.zeros((B, H)), [None] * T, [None] * T
    for t in reversed(range(T)):
        dzx_ref[t], dzh_ref[t], (dh,) = gru_reference_step_backward((dh + dhs[t],), caches[t], p)

    ws = Workspace() if workspace else None
    zx = project_inputs(x, p["Wx"], p["b"], None if ws is None else ws.empty("l0.zx", zx_ref.shape, np.float64))
    hs, final, cache = sequence_forward(CELLS["gru"], zx, (h0,), p, ws, "l0.")
    np.testing.assert_allclose(hs, np.stack(hs_ref), **TOL)
    np.testing.assert_allclose(final[0], state[0], **TOL)
    dzx, grads, (dh0,) = sequence_backward(CELLS["gru"], dhs, cache, p, ws=ws, name="l0.")
    h_prev = np.concatenate([h0[None], np.stack(hs_ref)[:-1]])  # (T, B, H) the h entering each step
    np.testing.assert_allclose(dzx, np.stack(dzx_ref), **TOL)
    np.testing.assert_allclose(grads["Wh"], np.einsum("tbh,tbg->hg", h_prev, np.stack(dzh_ref)), **TOL)
    np.testing.assert_allclose(grads["bh"], np.stack(dzh_ref).sum(axis=(0, 1)), **TOL)
    np.testing.assert_allclose(dh0, dh, **TOL)


def test_textbook_gru_step_backward_matches_finite_differences():
    """The reference GRU step on its own: dzx, dh_{t-1}, h_{t-1}^T dzh = dWh and sum dzh = dbh against
    central differences (float64, relative error < 1e-6)."""
    rng = np.random.default_rng(3)
    p = random_gru(rng)
    zx = rng.normal(size=(B, 3 * H))
    state = (rng.normal(size=(B, H)),)
    upstream = rng.normal(size=(B, H))

    def loss():
        (h,), _ = gru_reference_step_forward(zx, state, p)
        return float((h * upstream).sum())

    _, cache = gru_reference_step_forward(zx, state, p)
    dzx, dzh, (dh_prev,) = gru_reference_step_backward((upstream,), cache, p)
    assert relative_error(dzx, numerical_gradient(loss, zx)) < 1e-6
    assert relative_error(dh_prev, numerical_gradient(loss, state[0])) < 1e-6
    assert relative_error(state[0].T @ dzh, numerical_gradient(loss, p["Wh"])) < 1e-6
    assert relative_error(dzh.sum(axis=0), numerical_gradient(loss, p["bh"])) < 1e-6


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_cell_step_backward_matches_finite_differences(cell_name):
    """One step, random upstream gradients on every state output: dzx is d(loss)/d(zx), each dprev_state
    is d(loss)/d(state part), and h_prev^T dzh is d(loss)/d(Wh) (+ sum dzh = d(loss)/d(bh) for GRU) for the
    cells that have a Wh (minGRU's and minLSTM's textbook steps have none)."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(1)
    B, H = 3, 4
    p = random_layer(cell, 5, H, rng)
    zx = rng.normal(size=(B, cell.n_gates * H))
    state = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))
    upstream = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))

    def loss():
        next_state, _ = cell.step_forward(zx, state, p)
        return sum(float((s * u).sum()) for s, u in zip(next_state, upstream, strict=True))

    _, cache = cell.step_forward(zx, state, p)
    dzx, dzh, dstate = cell.step_backward(upstream, cache, p)
    assert relative_error(dzx, numerical_gradient(loss, zx, EPS)) < BOUND
    for s, ds in zip(state, dstate, strict=True):
        assert relative_error(ds, numerical_gradient(loss, s, EPS)) < BOUND
    if cell.recurrent_weights:
        assert relative_error(state[0].T @ dzh, numerical_gradient(loss, p["Wh"], EPS)) < BOUND
    if "bh" in p:
        assert relative_error(dzh.sum(axis=0), numerical_gradient(loss, p["bh"], EPS)) < BOUND
