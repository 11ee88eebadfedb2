"""recurrence.py: the one sequence loop and its BPTT, checked by finite differences in float64 for every cell,
on character ids and on dense inputs, with the gradient arriving at every step and at the final state."""

import numpy as np
import pytest

from rnnlab.cells import CELLS
from rnnlab.gradcheck import numerical_gradient, relative_error
from rnnlab.recurrence import input_grads, project_inputs, sequence_backward, sequence_forward

# Finite differences: central differences with eps = 1e-6 in float64 carry ~1e-10 relative error (see
# rnnlab.gradcheck), so a correct gradient has relative error far below the bound of 1e-6, and any missing
# term would exceed it by orders of magnitude. Parameters are random *nonzero*, biases included: a zero
# bias hides bias-gradient bugs.
EPS = 1e-6
BOUND = 1e-6


def random_layer(cell, input_size, hidden, rng):
    """A layer's parameters with every entry random and nonzero, biases included."""
    p = cell.init(input_size, hidden, rng)
    return {name: rng.normal(0.0, 0.5, size=value.shape) for name, value in p.items()}


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
