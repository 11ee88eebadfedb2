"""recurrence.py: the one sequence loop and its BPTT, checked by finite differences in float64 for every cell,
on character ids and on dense inputs, with the gradient arriving at every step and at the final state."""

import numpy as np
import pytest

from finite_differences import BOUND, EPS, random_layer
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.recurrence import layer_input_grads, layer_inputs, sequence_backward, sequence_forward


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("ids_input", [True, False], ids=["char-ids", "dense-input"])
def test_sequence_bptt_matches_finite_differences(cell_name, ids_input):
    """The full sequence loop (input projection + T steps + BPTT; minGRU's and minLSTM's window kernels on
    gate-major inputs) with random upstream dh at every step and a random gradient on the final state (as
    the state passed on to a next window would get)."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(2)
    T, B, In, H = 5, 2, 4, 3
    p = random_layer(cell, In, H, rng)
    x = rng.integers(0, In, size=(T, B)) if ids_input else rng.normal(size=(T, B, In))
    state0 = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))
    dhs = rng.normal(size=(T, B, H))
    dfinal = tuple(rng.normal(size=(B, H)) for _ in range(cell.n_states))

    def loss():
        hs, final, _ = sequence_forward(cell, layer_inputs(cell, x, p), state0, p)
        return float((hs * dhs).sum()) + sum(float((s * d).sum()) for s, d in zip(final, dfinal, strict=True))

    _, _, caches = sequence_forward(cell, layer_inputs(cell, x, p), state0, p)
    dzx, grads, dstate0 = sequence_backward(cell, dhs, caches, p, dfinal)
    grads["Wx"], grads["b"], dx = layer_input_grads(cell, x, dzx, p["Wx"])
    for name in p:
        assert relative_error(grads[name], numerical_gradient(loss, p[name], EPS)) < BOUND, name
    for s, ds in zip(state0, dstate0, strict=True):
        assert relative_error(ds, numerical_gradient(loss, s, EPS)) < BOUND
    if not ids_input:
        assert relative_error(dx, numerical_gradient(loss, x, EPS)) < BOUND
