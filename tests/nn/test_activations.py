"""Activations and their derivatives (finite differences, float64, eps 1e-6, relative error < 1e-6)."""

import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.nn.activations import sigmoid, sigmoid_grad, softmax, softmax_grad, tanh, tanh_grad
from rnnlab.nn.gradcheck import numerical_gradient, relative_error

Z = np.random.default_rng(0).normal(size=(4, 6)) * 2


@pytest.mark.parametrize("f,grad_from_output", [(tanh, tanh_grad), (sigmoid, sigmoid_grad)], ids=["tanh", "sigmoid"])
def test_elementwise_derivative_matches_finite_differences(f, grad_from_output):
    """The derivative written in terms of the output y equals d f / dz numerically."""
    z = Z.copy()
    upstream = np.random.default_rng(1).normal(size=z.shape)
    numeric = numerical_gradient(lambda: float((f(z) * upstream).sum()), z)
    assert relative_error(grad_from_output(f(z)) * upstream, numeric) < 1e-6


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_softmax_vjp_matches_finite_differences(temperature):
    z = Z.copy()
    upstream = np.random.default_rng(2).normal(size=z.shape)
    numeric = numerical_gradient(lambda: float((softmax(z, temperature) * upstream).sum()), z)
    assert relative_error(softmax_grad(softmax(z, temperature), upstream, temperature), numeric) < 1e-6


def test_sigmoid_is_tanh_identity_and_never_overflows():
    """sigma(z) = (1 + tanh(z/2)) / 2 agrees with 1/(1+e^-z) and gives exact 0/1 limits with no warning."""
    z = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-12, atol=1e-15)
    with np.errstate(over="raise"):
        assert sigmoid(np.array([-1e4]))[0] == 0.0 and sigmoid(np.array([1e4]))[0] == 1.0


def test_softmax_is_stable_and_normalised():
    p = softmax(np.array([1000.0, 1001.0, 999.0]))
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, softmax(np.array([1.0, 2.0, 0.0])), rtol=1e-12)


def test_temperature_sharpens_and_flattens():
    """Lower temperature -> lower entropy; T -> 0 approaches one-hot on the argmax; T large -> uniform."""
    z = np.array([2.0, 1.0, 0.5, -1.0])
    entropy = [float(-(p * np.log(p)).sum()) for p in (softmax(z, t) for t in (0.25, 0.5, 1.0, 2.0, 4.0))]
    assert entropy == sorted(entropy)
    assert softmax(z, 1e-3)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(softmax(z, 1e6), 0.25, rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_nonpositive_temperature_is_refused(temperature):
    with pytest.raises(RnnlabError, match="temperature"):
        softmax(Z, temperature)
