"""The residual block (block.py, norms.py, activations.gelu) and the residual stack of model.py: every backward
against finite differences in float64 (relative error < 1e-6, tests/finite_differences.py), for every cell
and both normalisations; behaviour: the plain stack unchanged, the state carried, dropout on both branches."""

import math

import numpy as np
import pytest

from finite_differences import BOUND, EPS, nonzero_like
from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.nn.activations import gelu, gelu_and_grad, gelu_grad
from rnnlab.nn.block import feed_forward, feed_forward_backward
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.norms import NORMS, norm_backward, norm_forward


def test_gelu_grad_matches_finite_differences_and_gelu_has_its_known_values():
    z = np.linspace(-6, 6, 101)
    numeric = (gelu(z + EPS) - gelu(z - EPS)) / (2 * EPS)
    assert relative_error(gelu_grad(z), numeric) < BOUND
    both = gelu_and_grad(z)                                      # the fused form the feed-forward layer uses
    np.testing.assert_allclose(both[0], gelu(z), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(both[1], gelu_grad(z), rtol=1e-14, atol=1e-15)
    assert gelu(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(gelu(np.array([-10.0, 10.0])), [0.0, 10.0], atol=1e-12)   # -> relu far out


@pytest.mark.parametrize("norm", NORMS)
def test_norm_backward_matches_finite_differences(norm):
    """Random nonzero gain (and bias), random upstream gradient: dx, dg (and db)."""
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 2, 5))
    g, b = rng.normal(size=5), (rng.normal(size=5) if norm == "layer" else None)

    def loss():
        return float((norm_forward(x, g, b)[0] * dy).sum())

    _, cache = norm_forward(x, g, b)
    dx, grads = norm_backward(dy, cache, g)
    assert relative_error(dx, numerical_gradient(loss, x, EPS)) < BOUND
    assert relative_error(grads["g"], numerical_gradient(loss, g, EPS)) < BOUND
    if norm == "layer":
        assert relative_error(grads["b"], numerical_gradient(loss, b, EPS)) < BOUND
    else:
        assert "b" not in grads


@pytest.mark.parametrize("norm", NORMS)
def test_normalised_rows_have_unit_mean_square_and_layernorm_zero_mean(norm):
    x = np.random.default_rng(1).normal(3.0, 4.0, size=(6, 32))
    y, _ = norm_forward(x, np.ones(32), np.zeros(32) if norm == "layer" else None)
    if norm == "layer":
        np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
        np.testing.assert_allclose((y ** 2).mean(axis=-1), 1.0, rtol=1e-5)    # eps = 1e-5 against var ~16
    else:
        np.testing.assert_allclose((y ** 2).mean(axis=-1), 1.0, rtol=1e-5)


def test_feed_forward_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    p = {"ff.W1": rng.normal(size=(4, 8)), "ff.b1": rng.normal(size=8), "ff.W2": rng.normal(size=(8, 4)),
         "ff.b2": rng.normal(size=4)}
    v, dout = rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 2, 4))

    def loss():
        return float((feed_forward(v, p)[0] * dout).sum())

    _, cache = feed_forward(v, p)
    dv, grads = feed_forward_backward(dout, cache, p)
    assert relative_error(dv, numerical_gradient(loss, v, EPS)) < BOUND
    for name, value in p.items():
        assert relative_error(grads[name], numerical_gradient(loss, value, EPS)) < BOUND, name


def residual_config(cell, norm="rms", num_layers=2, dropout=0.0, vocab=6, hidden=3, ffn_mult=2):
    return charmodel.ModelConfig(vocab_size=vocab, cell=cell, hidden_size=hidden, num_layers=num_layers,
                                 dropout=dropout, block="residual", norm=norm, ffn_mult=ffn_mult)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("num_layers,dropout", [(1, 0.0), (2, 0.3)])
def test_residual_model_loss_gradient_matches_finite_differences(cell_name, norm, num_layers, dropout):
    """loss_and_grads through the residual stack: the embedding, every layer's cell, norms and feed-forward,
    the final norm and the output layer; a masked batch, a nonzero carried state, dropout on both branches
    (the Generator re-seeded for every evaluation, so the masks are fixed)."""
    rng = np.random.default_rng(3)
    config = residual_config(cell_name, norm, num_layers, dropout)
    params = nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)
    T, B = 4, 3
    ids, targets = rng.integers(0, 6, size=(T, B)), rng.integers(0, 6, size=(T, B))
    mask = np.ones((T, B))
    mask[2:, 1] = 0.0
    state = [tuple(rng.normal(size=(B, 3)) for _ in range(CELLS[cell_name].n_states)) for _ in range(num_layers)]

    def loss():
        return charmodel.loss_and_grads(params, config, ids, targets, state, mask, np.random.default_rng(7))[0]

    _, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask, np.random.default_rng(7))
    assert grads.keys() == params.keys()
    for name, value in params.items():
        assert relative_error(grads[name], numerical_gradient(loss, value, EPS)) < BOUND, name


def test_residual_parameters_are_named_and_shaped_as_param_shapes_says():
    config = residual_config("lstm", "layer", num_layers=2, vocab=9, hidden=8, ffn_mult=3)
    params = charmodel.init_params(config, np.random.default_rng(0))
    charmodel.check_params(config, params)
    assert params["emb"].shape == (9, 8) and params["l0.Wx"].shape == (8, 32)   # layer 0 reads the stream
    assert params["l1.ff.W1"].shape == (8, 24) and params["norm.b"].shape == (8,)
    np.testing.assert_array_equal(params["l0.norm1.g"], 1.0)
    rms = charmodel.init_params(residual_config("mingru"), np.random.default_rng(0))
    assert "norm.b" not in rms and "l0.Wh" not in rms


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_residual_state_carried_between_windows_continues_the_sequence(cell):
    """As for the plain stack: two windows with the state carried give the logits of one long window."""
    rng = np.random.default_rng(4)
    config = residual_config(cell, num_layers=2, vocab=9, hidden=6)
    params = charmodel.init_params(config, rng, dtype=np.float64)
    ids = rng.integers(0, 9, size=(10, 3))
    zero = charmodel.zero_state(config, 3, np.float64)
    whole, _, _ = charmodel.forward(params, config, ids, zero)
    first, state, _ = charmodel.forward(params, config, ids[:4], zero)
    second, _, _ = charmodel.forward(params, config, ids[4:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_fresh_residual_model_loss_is_about_log_vocab(cell):
    """The output layer starts at Wy = 0 (model.init_params): the first loss is ln V (by is 0 under rnnlab's
    scheme; under pytorch's U(+-1/sqrt(H)) it would move it by ~0.01)."""
    config = residual_config(cell, num_layers=2, vocab=27, hidden=50)
    rng = np.random.default_rng(0)
    params = charmodel.init_params(config, rng)
    ids, targets = rng.integers(0, 27, size=(20, 8)), rng.integers(0, 27, size=(20, 8))
    loss, _, _ = charmodel.loss_and_grads(params, config, ids, targets, charmodel.zero_state(config, 8))
    assert abs(loss - math.log(27)) < 1e-6


def test_residual_dropout_draws_two_masks_per_layer_in_the_order_forward_uses_them():
    """Six masks for three layers; handing them to forward equals letting forward draw them from the same
    Generator (the contract the batch shards rely on), and no Generator means no dropout."""
    config = residual_config("gru", num_layers=3, dropout=0.5)
    assert charmodel.dropout_mask_count(config) == 6
    masks = charmodel.draw_masks(config, (4, 2), np.random.default_rng(0), np.float64)
    assert len(masks.dropout) == 6 and all(set(np.unique(m)) <= {0.0, 2.0} for m in masks.dropout)
    params = nonzero_like(charmodel.init_params(config, np.random.default_rng(1)), np.random.default_rng(1))
    ids, zero = np.random.default_rng(2).integers(0, 6, size=(4, 2)), charmodel.zero_state(config, 2, np.float64)
    drawn, _, _ = charmodel.forward(params, config, ids, zero, np.random.default_rng(0))
    given, _, _ = charmodel.forward(params, config, ids, zero, masks=masks)
    np.testing.assert_array_equal(drawn, given)
    evaluated, _, _ = charmodel.forward(params, config, ids, zero)
    assert not np.allclose(evaluated, drawn)


def test_a_bad_block_or_norm_is_one_clear_error():
    with pytest.raises(RnnlabError, match="--block"):
        charmodel.ModelConfig(vocab_size=5, block="transformer")
    with pytest.raises(RnnlabError, match="--norm"):
        charmodel.ModelConfig(vocab_size=5, norm="batch")
    with pytest.raises(RnnlabError, match="--ffn_mult"):
        charmodel.ModelConfig(vocab_size=5, ffn_mult=0)
