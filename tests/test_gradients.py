"""Finite-difference checks (float64) of every backward pass: cells, the BPTT loop, the full model.

Tolerance: central differences with eps = 1e-6 in float64 carry ~1e-10 relative error (see
rnnlab.gradcheck), so a correct gradient has relative error far below the bound of 1e-6 used here, and any
missing term would exceed it by orders of magnitude. Every test uses random *nonzero* biases: a zero bias
hides bias-gradient bugs.
"""

import numpy as np
import pytest

from rnnlab import model as charmodel
from rnnlab.cells import CELLS
from rnnlab.gradcheck import numerical_gradient, relative_error
from rnnlab.recurrence import input_grads, project_inputs, sequence_backward, sequence_forward

EPS = 1e-6
BOUND = 1e-6


def random_layer(cell, input_size, hidden, rng):
    """A layer's parameters with every entry random and nonzero, biases included."""
    p = cell.init(input_size, hidden, rng)
    return {name: rng.normal(0.0, 0.5, size=value.shape) for name, value in p.items()}


def random_params(config, rng):
    params = charmodel.init_params(config, rng, dtype=np.float64)
    return {name: rng.normal(0.0, 0.5, size=value.shape) for name, value in params.items()}


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_cell_step_backward_matches_finite_differences(cell_name):
    """One step, random upstream gradients on every state output: dzx is d(loss)/d(zx), each dprev_state
    is d(loss)/d(state part), and h_prev^T dzh is d(loss)/d(Wh) (+ sum dzh = d(loss)/d(bh) for GRU)."""
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
    assert relative_error(state[0].T @ dzh, numerical_gradient(loss, p["Wh"], EPS)) < BOUND
    if "bh" in p:
        assert relative_error(dzh.sum(axis=0), numerical_gradient(loss, p["bh"], EPS)) < BOUND


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("ids_input", [True, False], ids=["char-ids", "dense-input"])
def test_sequence_bptt_matches_finite_differences(cell_name, ids_input):
    """The full sequence loop (input projection + T steps + BPTT) with random upstream dh at every step
    and a random gradient on the final state (as the state passed on to a next window would get)."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(2)
    T, B, In, H = 5, 2, 4, 3
    p = random_layer(cell, In, H, rng)
    x = rng.integers(0, In, size=(T, B)) if ids_input else rng.normal(size=(T, B, In))
    state0 = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))
    dhs = rng.normal(size=(T, B, H))
    dfinal = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))

    def loss():
        hs, final, _ = sequence_forward(cell, project_inputs(x, p["Wx"], p["b"]), state0, p)
        return float((hs * dhs).sum()) + sum(float((s * d).sum()) for s, d in zip(final, dfinal, strict=True))

    _, _, caches = sequence_forward(cell, project_inputs(x, p["Wx"], p["b"]), state0, p)
    dzx, grads, dstate0 = sequence_backward(cell, dhs, caches, p, dfinal)
    grads["Wx"], grads["b"], dx = input_grads(x, dzx, p["Wx"])
    for name in p:
        assert relative_error(grads[name], numerical_gradient(loss, p[name], EPS)) < BOUND, name
    for s, ds in zip(state0, dstate0, strict=True):
        assert relative_error(ds, numerical_gradient(loss, s, EPS)) < BOUND
    if not ids_input:
        assert relative_error(dx, numerical_gradient(loss, x, EPS)) < BOUND


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("num_layers,dropout", [(1, 0.0), (2, 0.0), (2, 0.3)])
def test_full_model_loss_gradient_matches_finite_differences(cell_name, num_layers, dropout):
    """loss_and_grads: every parameter of the stack and the output layer, masked batch loss, dropout on.

    Dropout draws its mask from a Generator; re-seeding it for every evaluation keeps the mask fixed, so
    the function being differentiated is deterministic."""
    rng = np.random.default_rng(3)
    config = charmodel.ModelConfig(vocab_size=6, cell=cell_name, hidden_size=3, num_layers=num_layers,
                                   dropout=dropout)
    params = random_params(config, rng)
    T, B = 4, 3
    ids, targets = rng.integers(0, 6, size=(T, B)), rng.integers(0, 6, size=(T, B))
    mask = np.ones((T, B))
    mask[2:, 1] = 0.0  # the second sequence is 2 characters long, the rest is padding
    state = [tuple(rng.normal(size=(B, 3)) for _ in range(CELLS[cell_name].n_states)) for _ in range(num_layers)]

    def loss():
        value, _, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask,
                                               np.random.default_rng(7))
        return value

    _, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask, np.random.default_rng(7))
    assert grads.keys() == params.keys()
    for name, value in params.items():
        assert relative_error(grads[name], numerical_gradient(loss, value, EPS)) < BOUND, name
