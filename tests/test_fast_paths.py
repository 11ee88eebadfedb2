"""The optimised code paths equal the straightforward formulas they replace (float64).

Tolerance rtol 1e-12: the fast paths compute the same sums in a different order, nothing more."""

import numpy as np
import pytest

from rnnlab.activations import sigmoid
from rnnlab.cells import CELLS
from rnnlab.output import output_forward, project_logit_grad_to_hidden
from rnnlab.recurrence import embedding_grad, project_inputs, rnn_backward, rnn_forward

RTOL = 1e-12


@pytest.mark.parametrize("vocab", [7, 700], ids=["one-hot GEMM", "sort + reduceat"])
def test_embedding_grad_equals_add_at(vocab):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(9, 4))
    ids[0, 0] = vocab - 1
    rows = rng.normal(size=(9, 4, 6))
    expected = np.zeros((vocab, 6))
    np.add.at(expected, ids.reshape(-1), rows.reshape(-1, 6))
    np.testing.assert_allclose(embedding_grad(ids, rows, vocab), expected, rtol=RTOL, atol=1e-14)


def test_row_lookup_equals_one_hot_product():
    rng = np.random.default_rng(1)
    Wx, b = rng.normal(size=(5, 8)), rng.normal(size=8)
    ids = rng.integers(0, 5, size=(3, 2))
    onehot = np.eye(5)[ids]                                      # (T, B, V)
    np.testing.assert_allclose(project_inputs(ids, Wx, b), onehot @ Wx + b, rtol=RTOL)


def test_lstm_single_tanh_equals_textbook_gates():
    """The fused step (one tanh for all four gates) against sigmoid/tanh applied gate by gate."""
    rng = np.random.default_rng(2)
    B, H = 3, 4
    p = {"Wh": rng.normal(size=(H, 4 * H))}
    zx, h, c = rng.normal(size=(B, 4 * H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    z = zx + h @ p["Wh"]
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c_next = f * c + i * g
    (h_fast, c_fast), _ = CELLS["lstm"].step_forward(zx, (h, c), p)
    np.testing.assert_allclose(c_fast, c_next, rtol=RTOL)
    np.testing.assert_allclose(h_fast, o * np.tanh(c_next), rtol=RTOL)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_one_gemm_recurrent_weight_grad_equals_per_step_sum(cell_name):
    """dWh from one (H, T*B) x (T*B, GH) product equals the per-step sum of h_{t-1}^T dzh_t."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(3)
    T, B, H = 5, 2, 3
    p = {k: rng.normal(size=v.shape) for k, v in cell.init(4, H, rng).items()}
    zx = rng.normal(size=(T, B, cell.n_gates * H))
    state0 = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))
    hs, _, cache = rnn_forward(cell, zx, state0, p)
    dhs = rng.normal(size=(T, B, H))
    _, grads, _ = rnn_backward(cell, dhs, cache, p)
    per_step, dstate, h_prev = np.zeros_like(p["Wh"]), tuple(np.zeros((B, H)) for _ in range(cell.n_states)), None
    for t in reversed(range(T)):
        dstate = (dstate[0] + dhs[t], *dstate[1:])
        _, dzh, dstate = cell.step_backward(dstate, cache.steps[t], p)
        h_prev = hs[t - 1] if t > 0 else state0[0]
        per_step += h_prev.T @ dzh
    np.testing.assert_allclose(grads["Wh"], per_step, rtol=RTOL)


def test_output_layer_2d_gemm_equals_3d_matmul():
    rng = np.random.default_rng(4)
    hs, Wy, by, dy = rng.normal(size=(4, 3, 5)), rng.normal(size=(5, 7)), rng.normal(size=7), rng.normal(size=(4, 3, 7))
    np.testing.assert_allclose(output_forward(hs, Wy, by), hs @ Wy + by, rtol=RTOL)
    np.testing.assert_allclose(project_logit_grad_to_hidden(dy, Wy), dy @ Wy.T, rtol=RTOL)
