"""Softmax cross-entropy: value, gradient (finite differences, float64), mask, and the report units."""

import math

import numpy as np
import pytest

from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.losses import bits_per_char, perplexity, softmax_cross_entropy


def test_uniform_logits_give_log_vocab_size():
    """Equal logits mean a uniform guess: the loss is ln V nats/char (3.30 for the 27 dinos characters)."""
    loss, _ = softmax_cross_entropy(np.zeros((4, 2, 27)), np.zeros((4, 2), dtype=int))
    assert loss == pytest.approx(math.log(27), rel=1e-12)


def test_gradient_matches_finite_differences_with_mask():
    """dL/dz = (m / M)(p - onehot); central differences, eps 1e-6, relative error < 1e-6 (float64)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3, 7)) * 3
    targets = rng.integers(0, 7, size=(5, 3))
    mask = (rng.random((5, 3)) < 0.7).astype(float)
    mask[0, 0] = 1.0
    _, dz = softmax_cross_entropy(logits, targets, mask)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(logits, targets, mask)[0], logits, 1e-6)
    assert relative_error(dz, numeric) < 1e-6


def test_masked_positions_change_neither_loss_nor_gradient():
    """Whatever the logits and targets at padded positions, the loss and the other gradients are equal,
    and the gradient at a padded position is exactly zero."""
    rng = np.random.default_rng(1)
    logits, targets = rng.normal(size=(4, 2, 5)), rng.integers(0, 5, size=(4, 2))
    mask = np.ones((4, 2))
    mask[2:, 1] = 0
    loss_a, dz_a = softmax_cross_entropy(logits, targets, mask)
    logits_b, targets_b = logits.copy(), targets.copy()
    logits_b[2:, 1] = 100 * rng.normal(size=(2, 5))
    targets_b[2:, 1] = 0
    loss_b, dz_b = softmax_cross_entropy(logits_b, targets_b, mask)
    assert loss_a == loss_b
    np.testing.assert_array_equal(dz_a, dz_b)
    assert not dz_a[2:, 1].any()


def test_loss_is_mean_over_real_characters():
    """The loss equals the mean of -log p[target] over unmasked positions (computed the long way)."""
    rng = np.random.default_rng(2)
    logits, targets = rng.normal(size=(3, 2, 4)), rng.integers(0, 4, size=(3, 2))
    mask = np.array([[1, 1], [1, 0], [1, 0]], dtype=float)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = [-math.log(p[t, b, targets[t, b]]) for t in range(3) for b in range(2) if mask[t, b]]
    assert softmax_cross_entropy(logits, targets, mask)[0] == pytest.approx(np.mean(nll), rel=1e-12)


def test_huge_logits_stay_finite():
    """Max-subtraction keeps e^z from overflowing: logits of 1e4 give a finite loss and gradient."""
    logits = np.array([[1e4, -1e4, 0.0]])
    loss, dz = softmax_cross_entropy(logits, np.array([1]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx(2e4)


def test_report_units():
    """bits/char = nats / ln 2 and perplexity = e^nats."""
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert perplexity(math.log(65)) == pytest.approx(65.0)
