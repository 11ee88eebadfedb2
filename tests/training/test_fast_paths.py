"""The optimised code paths equal the straightforward formulas they replace (float64).

Tolerance rtol 1e-12: the fast paths compute the same sums in a different order, nothing more."""

import numpy as np
import pytest

from rnnlab.nn.activations import sigmoid
from rnnlab.nn.cells import CELLS
from rnnlab.nn.output import output_forward, project_logit_grad_to_hidden
from rnnlab.nn.recurrence import embedding_grad, project_inputs, sequence_backward, sequence_forward

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


@pytest.mark.parametrize("cell_name", sorted(name for name, cell in CELLS.items() if cell.recurrent_weights))
def test_one_gemm_recurrent_weight_grad_equals_per_step_sum(cell_name):
    """dWh from one (H, T*B) x (T*B, GH) product equals the per-step sum of h_{t-1}^T dzh_t."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(3)
    T, B, H = 5, 2, 3
    p = {k: rng.normal(size=v.shape) for k, v in cell.init(4, H, rng).items()}
    zx = rng.normal(size=(T, B, cell.n_gates * H))
    state0 = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))
    hs, _, cache = sequence_forward(cell, zx, state0, p)
    dhs = rng.normal(size=(T, B, H))
    _, grads, _ = sequence_backward(cell, dhs, cache, p)
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


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_workspace_step_equals_fresh_arrays(cell_name):
    """The training step with a Workspace (arrays reused between calls, gates written over zx, gate
    gradients over the gates) gives the same loss, gradients and final state as fresh arrays, call after
    call, when the batch length grows and shrinks. Float64; the operations are the same ones in the same
    order, so the tolerance is only float64 rounding (rtol 1e-12)."""
    from rnnlab.nn.model import ModelConfig, init_params, loss_and_grads, zero_state
    from rnnlab.nn.recurrence import Workspace

    config = ModelConfig(vocab_size=7, cell=cell_name, hidden_size=5, num_layers=2, dropout=0.3)
    rng = np.random.default_rng(5)
    params = {k: v + rng.normal(scale=0.1, size=v.shape) for k, v in
              init_params(config, rng, np.float64).items()}               # nonzero biases
    ws = Workspace()
    for T in (6, 4, 9, 9):
        ids = rng.integers(0, 7, size=(T + 1, 3))
        state = [tuple(rng.normal(size=part.shape) for part in layer) for layer in zero_state(config, 3, np.float64)]
        mask = (rng.random((T, 3)) < 0.8).astype(np.float64)
        fresh = loss_and_grads(params, config, ids[:-1], ids[1:], state, mask, np.random.default_rng(T))
        reused = loss_and_grads(params, config, ids[:-1], ids[1:], state, mask, np.random.default_rng(T), ws=ws)
        assert reused[0] == pytest.approx(fresh[0], rel=1e-12)
        assert reused[1].keys() == fresh[1].keys()
        for name in fresh[1]:
            np.testing.assert_allclose(reused[1][name], fresh[1][name], rtol=1e-12, atol=1e-15, err_msg=name)
        for layer_fresh, layer_reused in zip(fresh[2], reused[2], strict=True):
            for a, b in zip(layer_fresh, layer_reused, strict=True):
                np.testing.assert_allclose(b, a, rtol=1e-12)
    assert ws.nbytes > 0


def test_workspace_final_state_is_not_overwritten_by_the_next_call():
    """The carried state must survive the next step reusing the workspace (it is a copy)."""
    from rnnlab.nn.model import ModelConfig, init_params, loss_and_grads, zero_state
    from rnnlab.nn.recurrence import Workspace

    config = ModelConfig(vocab_size=5, cell="lstm", hidden_size=4)
    rng = np.random.default_rng(6)
    params, ws = init_params(config, rng, np.float64), Workspace()
    ids = rng.integers(0, 5, size=(6, 2))
    _, _, state = loss_and_grads(params, config, ids[:-1], ids[1:], zero_state(config, 2, np.float64), ws=ws)
    kept = [tuple(part.copy() for part in layer) for layer in state]
    loss_and_grads(params, config, ids[::-1][:-1], ids[::-1][1:], state, ws=ws)
    for layer, layer_kept in zip(state, kept, strict=True):
        for part, part_kept in zip(layer, layer_kept, strict=True):
            np.testing.assert_array_equal(part, part_kept)


def test_lstm_local_derivative_in_place_equals_each_gates_derivative():
    """scale^2 - (gates - offset)^2, the backward step's one expression for all four blocks, equals
    s(1 - s) in the sigmoid blocks i, f, o and 1 - g^2 in the tanh block g."""
    from rnnlab.nn.activations import sigmoid_grad, tanh_grad
    from rnnlab.nn.cells import _lstm_block_constants

    rng = np.random.default_rng(7)
    B, H = 3, 4
    z = rng.normal(size=(B, 4 * H)) * 3
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    gates = np.concatenate([i, f, g, o], axis=1)
    _, offset, scale2 = _lstm_block_constants(H, np.float64)
    expected = np.concatenate([sigmoid_grad(i), sigmoid_grad(f), tanh_grad(g), sigmoid_grad(o)], axis=1)
    np.testing.assert_allclose(scale2 - (gates - offset) ** 2, expected, rtol=1e-12, atol=1e-15)


def test_products_from_a_contiguous_transposed_wh_equal_the_plain_products():
    """(Wh^T h^T)^T from a C-contiguous Wh^T equals h Wh, and dz Wh^T from it equals dz @ Wh.T; without the
    copy (a single step) the view gives the same numbers."""
    from rnnlab.nn.cells import recurrent_projection, recurrent_weights_transposed
    from rnnlab.nn.recurrence import with_transposed_weights

    rng = np.random.default_rng(8)
    p = {"Wh": rng.normal(size=(5, 20))}
    h, dz = rng.normal(size=(3, 5)), rng.normal(size=(3, 20))
    for prepared in (with_transposed_weights(p, 10), with_transposed_weights(p, 1)):
        np.testing.assert_allclose(recurrent_projection(h, prepared), h @ p["Wh"], rtol=RTOL)
        np.testing.assert_allclose(dz @ recurrent_weights_transposed(prepared), dz @ p["Wh"].T, rtol=RTOL)
    assert with_transposed_weights(p, 10)["WhT"].flags.c_contiguous and "WhT" not in with_transposed_weights(p, 1)
