"""Attention (rnnlab.nn.attention): finite differences for every score with masks and random nonzero parameters,
masked-softmax behaviour, and cross-checks against PyTorch autograd and keras.layers.Attention.

Finite differences: central, eps = 1e-6, float64 -> about 1e-10 relative error for a correct gradient (see
rnnlab.nn.gradcheck); the bound 1e-6 is far above that and far below what a missing term gives.
"""

import numpy as np
import pytest

from finite_differences import BOUND, EPS
from rnnlab.errors import RnnlabError
from rnnlab.nn.attention import (
    SCORES,
    attend,
    attention_backward,
    attention_forward,
    init_attention,
    masked_softmax_backward,
    masked_softmax_forward,
)
from rnnlab.nn.gradcheck import numerical_gradient, relative_error

B, S, HQ, A = 3, 5, 4, 6
KINDS = sorted(SCORES)


def value_size(kind):
    """Dot scores need values as wide as the query; the others get a different width on purpose."""
    return HQ if SCORES[kind].same_sizes else HQ + 3


def random_case(kind, seed=0):
    """q, values, a mask with padding at the end of rows 0 and 2, params with every entry random and nonzero,
    and a random upstream gradient dc."""
    rng = np.random.default_rng(seed)
    Hv = value_size(kind)
    p = init_attention(kind, HQ, Hv, A, rng)
    p = {name: value + 0.5 * rng.standard_normal(value.shape) for name, value in p.items()}
    mask = np.ones((B, S))
    mask[0, 3:] = 0.0
    mask[2, 1:] = 0.0                                            # one real position only: alpha = 1 there
    return rng.normal(size=(B, HQ)), rng.normal(size=(B, S, Hv)), mask, p, rng.normal(size=(B, Hv))


# ---- masked softmax ------------------------------------------------------------------------------------

def test_masked_softmax_puts_no_weight_on_padding_and_sums_to_one():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(B, S)) * 5
    mask = np.ones((B, S))
    mask[1, 2:] = 0.0
    alpha, _ = masked_softmax_forward(e, mask)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-14)
    assert np.all(alpha[1, 2:] == 0.0)
    expected = np.exp(e[1, :2]) / np.exp(e[1, :2]).sum()
    np.testing.assert_allclose(alpha[1, :2], expected, rtol=1e-14)


def test_masked_softmax_ignores_scores_at_padding_even_huge_ones():
    """A padded position cannot win the max-subtraction: a score of 1e308 there changes nothing."""
    e, mask = np.zeros((1, 3)), np.array([[1.0, 1.0, 0.0]])
    before, _ = masked_softmax_forward(e, mask)
    e[0, 2] = 1e308
    after, _ = masked_softmax_forward(e, mask)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(after, [[0.5, 0.5, 0.0]])


def test_a_row_without_real_positions_gets_zero_weights_not_nan():
    alpha, _ = masked_softmax_forward(np.ones((2, 3)), np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(alpha, [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_softmax_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    e, dalpha = rng.normal(size=(B, S)), rng.normal(size=(B, S))
    mask = (rng.random((B, S)) < 0.7).astype(float)
    mask[:, 0] = 1.0
    alpha, cache = masked_softmax_forward(e, mask)
    numeric = numerical_gradient(lambda: float((masked_softmax_forward(e, mask)[0] * dalpha).sum()), e, EPS)
    assert relative_error(masked_softmax_backward(dalpha, cache), numeric) < BOUND


# ---- every score: finite differences -------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_attention_gradients_match_finite_differences(kind):
    """loss = sum(c * dc) for a random dc: the gradient of the query, of every value (padded ones included:
    exactly zero there) and of every parameter, with a mask and random nonzero parameters and biases."""
    q, values, mask, p, dc = random_case(kind)

    def loss():
        (c, _), _ = attention_forward(kind, q, values, mask, p)
        return float((c * dc).sum())

    _, cache = attention_forward(kind, q, values, mask, p)
    grads = attention_backward(dc, cache, p)
    assert grads.keys() == {"q", "values", *p}
    assert relative_error(grads["q"], numerical_gradient(loss, q, EPS)) < BOUND
    assert relative_error(grads["values"], numerical_gradient(loss, values, EPS)) < BOUND
    for name in p:
        assert relative_error(grads[name], numerical_gradient(loss, p[name], EPS)) < BOUND, name
    assert np.all(grads["values"][mask == 0] == 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_values_change_nothing(kind):
    """Any encoder output at a padded position: the same context, weights and gradients, bit for bit."""
    q, values, mask, p, dc = random_case(kind)
    (c, alpha), cache = attention_forward(kind, q, values, mask, p)
    grads = attention_backward(dc, cache, p)
    noisy = values.copy()
    noisy[mask == 0] = 1e3 * np.random.default_rng(5).normal(size=noisy[mask == 0].shape)
    (c2, alpha2), cache2 = attention_forward(kind, q, noisy, mask, p)
    grads2 = attention_backward(dc, cache2, p)
    np.testing.assert_array_equal(alpha2, alpha)
    np.testing.assert_array_equal(c2, c)
    real = mask > 0
    np.testing.assert_array_equal(grads2.pop("values")[real], grads.pop("values")[real])
    for name in grads:
        np.testing.assert_array_equal(grads2[name], grads[name], err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_keys_computed_once_give_the_same_step(kind):
    """The decoder computes keys once per sentence and calls ``attend`` per step: the same numbers."""
    q, values, mask, p, _ = random_case(kind)
    score = SCORES[kind]
    (c, alpha), _ = attend(score, q, score.keys(values, p), values, mask, p)
    (c2, alpha2), _ = attention_forward(kind, q, values, mask, p)
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(alpha, alpha2)


def test_context_is_the_weighted_sum_of_values_and_scaled_dot_divides_by_sqrt_d():
    q, values, mask, p, _ = random_case("dot")
    (c, alpha), _ = attention_forward("dot", q, values, mask, p)
    np.testing.assert_allclose(c, np.einsum("bs,bsh->bh", alpha, values), rtol=1e-13)
    (_, alpha_scaled), _ = attention_forward("scaled_dot", q / np.sqrt(HQ), values, mask, p)
    (_, alpha_dot), _ = attention_forward("dot", q / HQ, values, mask, p)
    np.testing.assert_allclose(alpha_scaled, alpha_dot, rtol=1e-13)


def test_dot_scores_between_different_widths_are_refused_in_one_line():
    with pytest.raises(RnnlabError, match="general or additive") as err:
        init_attention("dot", 8, 6, 4, np.random.default_rng(0))
    assert "\n" not in str(err.value)
    with pytest.raises(RnnlabError, match="unknown attention score"):
        init_attention("cosine", 4, 4, 4, np.random.default_rng(0))


# ---- PyTorch autograd -----------------------------------------------------------------------------------

def torch_attention(torch, kind, q, values, mask, p):
    """The same attention written directly with torch operations (no rnnlab code), for autograd."""
    if kind == "additive":
        e = (torch.tanh((q @ p["Wq"] + p["b"])[:, None, :] + values @ p["Wk"]) * p["v"]).sum(-1)
    elif kind == "general":
        e = torch.einsum("bq,qv,bsv->bs", q, p["W"], values)
    else:
        e = (values * q[:, None, :]).sum(-1) / (q.shape[1] ** 0.5 if kind == "scaled_dot" else 1.0)
    alpha = torch.softmax(e.masked_fill(mask == 0, float("-inf")), dim=1)
    return torch.einsum("bs,bsv->bv", alpha, values), alpha


@pytest.mark.parametrize("kind", KINDS)
def test_attention_equals_torch_autograd(kind):
    """Forward (context, weights) and backward (query, values, parameters) for a random upstream gradient.
    Both sides compute in float64 with the same formulas in a different order: observed differences are
    ~1e-16 relative; rtol 1e-10 / atol 1e-12 leaves a margin of 1e4 and catches any real bug (1e-3 or more)."""
    torch = pytest.importorskip("torch")
    q, values, mask, p, dc = random_case(kind)
    tq, tv = torch.tensor(q, requires_grad=True), torch.tensor(values, requires_grad=True)
    tp = {name: torch.tensor(value, requires_grad=True) for name, value in p.items()}
    tc, talpha = torch_attention(torch, kind, tq, tv, torch.tensor(mask), tp)
    (tc * torch.tensor(dc)).sum().backward()

    (c, alpha), cache = attention_forward(kind, q, values, mask, p)
    grads = attention_backward(dc, cache, p)
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, tc.detach().numpy(), **tol)
    np.testing.assert_allclose(alpha, talpha.detach().numpy(), **tol)
    np.testing.assert_allclose(grads["q"], tq.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["values"], tv.grad.numpy(), **tol)
    for name in p:
        np.testing.assert_allclose(grads[name], tp[name].grad.numpy(), err_msg=name, **tol)


# ---- keras.layers.Attention (Luong dot attention) -------------------------------------------------------

def test_dot_attention_equals_keras_attention_layer():
    """keras.layers.Attention(score_mode="dot", use_scale=False) with a value mask is our dot attention for a
    query sequence of length 1: the same weights and context, and (through tf.GradientTape) the same
    gradients of the query and the values. Keras masks by adding -1e9 to padded scores (e^-1e9 is exactly 0
    in float64), so in float64 the only differences are summation order: ~1e-16; rtol 1e-10 / atol 1e-12."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the gradient comparison uses tf.GradientTape (keras backend is not tensorflow)")
    q, values, mask, p, dc = random_case("dot")
    layer = keras.layers.Attention(use_scale=False, score_mode="dot", dtype="float64")
    tq, tv = tf.constant(q[:, None, :]), tf.constant(values)
    with tf.GradientTape() as tape:
        tape.watch([tq, tv])
        tc, talpha = layer([tq, tv], mask=[None, tf.constant(mask > 0)], return_attention_scores=True)
        loss = tf.reduce_sum(tc[:, 0, :] * dc)
    dq, dv = tape.gradient(loss, [tq, tv])

    (c, alpha), cache = attention_forward("dot", q, values, mask, p)
    grads = attention_backward(dc, cache, p)
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, tc.numpy()[:, 0, :], **tol)
    np.testing.assert_allclose(alpha, talpha.numpy()[:, 0, :], **tol)
    np.testing.assert_allclose(grads["q"], dq.numpy()[:, 0, :], **tol)
    np.testing.assert_allclose(grads["values"], dv.numpy(), **tol)
