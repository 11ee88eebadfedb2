"""nn/bidirectional.py: the backward direction reads each sequence from its own end, padding changes nothing,
and the backward pass is the gradient (finite differences, float64, relative error < BOUND at EPS)."""

import numpy as np
import pytest

from finite_differences import BOUND, EPS, random_layer
from rnnlab.nn.bidirectional import bidirectional_backward, bidirectional_forward, reversal_index
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error

S, B, V, He = 5, 3, 6, 4
LENGTHS = np.array([5, 2, 3])


def batch(rng):
    source = rng.integers(1, V, size=(S, B))
    mask = (np.arange(S)[:, None] < LENGTHS[None, :]).astype(np.float64)   # (S, B) 1 at real characters
    return source * mask.astype(np.int64), mask


def test_the_reversal_index_reverses_within_each_length_and_is_its_own_inverse():
    index = reversal_index(LENGTHS, S)
    x = np.arange(S)[:, None].repeat(B, axis=1)
    once = np.take_along_axis(x, index, axis=0)
    assert once[:, 1].tolist() == [1, 0, 2, 3, 4]             # length 2: the padding stays where it is
    np.testing.assert_array_equal(np.take_along_axis(once, index, axis=0), x)


@pytest.mark.parametrize("cell_name", ["rnn", "gru", "lstm"])
def test_padding_changes_no_real_output_and_the_backward_direction_reads_from_the_end(cell_name):
    """Column 1 alone (length 2) gives the same outputs at its real positions as inside the padded batch, and
    its backward direction after its first character equals a forward pass over its reversed text."""
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name]
    pf, pb = random_layer(cell, V, He, rng), random_layer(cell, V, He, rng)
    source, mask = batch(rng)
    h, last, _ = bidirectional_forward(cell, pf, pb, source, mask)
    alone = source[:2, 1:2]
    h_alone, last_alone, _ = bidirectional_forward(cell, pf, pb, alone, np.ones_like(alone, dtype=np.float64))
    np.testing.assert_allclose(h[:2, 1], h_alone[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last[1], last_alone[0], rtol=1e-12, atol=1e-12)
    reversed_pf, _, _ = bidirectional_forward(cell, pb, pf, alone[::-1], np.ones_like(alone, dtype=np.float64))
    np.testing.assert_allclose(h_alone[0, 0, He:], reversed_pf[-1, 0, :He], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell_name", ["rnn", "gru", "lstm"])
def test_bidirectional_backward_matches_finite_differences(cell_name):
    """A random linear function of the real outputs and of ``last``: every parameter of both directions."""
    rng = np.random.default_rng(1)
    cell = CELLS[cell_name]
    pf, pb = random_layer(cell, V, He, rng), random_layer(cell, V, He, rng)
    source, mask = batch(rng)
    up_h = rng.normal(size=(S, B, 2 * He)) * mask[:, :, None]  # padded outputs are ignored by their user
    up_last = rng.normal(size=(B, 2 * He))

    def loss():
        h, last, _ = bidirectional_forward(cell, pf, pb, source, mask)
        return float((h * up_h).sum() + (last * up_last).sum())

    _, _, cache = bidirectional_forward(cell, pf, pb, source, mask)
    grads_f, grads_b = bidirectional_backward(cell, up_h, up_last, cache, pf, pb)
    for params, grads in ((pf, grads_f), (pb, grads_b)):
        for name, value in params.items():
            numeric = numerical_gradient(loss, value, EPS)
            assert relative_error(grads[name], numeric) < BOUND, (cell_name, name)
