"""nn/output.py: the output layer, the projection of the logit gradient onto the hidden state (da = dy Wy^T)
and the output layer's gradients, each checked against finite differences (float64, < BOUND at EPS)."""

import numpy as np

from finite_differences import BOUND, EPS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.output import output_forward, output_layer_grads, project_logit_grad_to_hidden

T, B, H, V = 3, 2, 4, 5


def test_logits_are_h_times_wy_plus_by():
    rng = np.random.default_rng(0)
    hs, Wy, by = rng.normal(size=(T, B, H)), rng.normal(size=(H, V)), rng.normal(size=V)
    np.testing.assert_allclose(output_forward(hs, Wy, by), np.einsum("tbh,hv->tbv", hs, Wy) + by, rtol=1e-13)


def test_da_and_the_output_grads_are_the_gradients_of_a_linear_function_of_the_logits():
    """L = sum(logits * dy) for a random dy: dL/dh = dy Wy^T, dL/dWy = sum h^T dy, dL/dby = sum dy."""
    rng = np.random.default_rng(1)
    hs, Wy, by = rng.normal(size=(T, B, H)), rng.normal(size=(H, V)), rng.normal(size=V)
    dy = rng.normal(size=(T, B, V))

    def loss():
        return float((output_forward(hs, Wy, by) * dy).sum())

    assert relative_error(project_logit_grad_to_hidden(dy, Wy), numerical_gradient(loss, hs, EPS)) < BOUND
    grads = output_layer_grads(dy, hs)
    assert relative_error(grads["Wy"], numerical_gradient(loss, Wy, EPS)) < BOUND
    assert relative_error(grads["by"], numerical_gradient(loss, by, EPS)) < BOUND


def test_the_projection_writes_into_a_given_array():
    rng = np.random.default_rng(2)
    dy, Wy = rng.normal(size=(T, B, V)), rng.normal(size=(H, V))
    out = np.empty((T, B, H))
    assert project_logit_grad_to_hidden(dy, Wy, out) is out
    np.testing.assert_allclose(out, dy @ Wy.T, rtol=1e-13)
