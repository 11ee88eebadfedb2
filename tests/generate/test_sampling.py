"""sampling.py: temperature / top-k distributions, drawing an index, and generating text from a model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from rnnlab.data.text import NEWLINE, CharTokenizer
from rnnlab.errors import RnnlabError
from rnnlab.generate.sampling import next_char_distribution, pick, sample
from rnnlab.nn.model import ModelConfig, init_params

TEXT = "abcdefgh ijk\nlmnop\n"


@pytest.fixture(scope="module")
def tiny_model():
    """A small untrained model (near-uniform predictions, so every character, newline included, gets drawn)."""
    tokenizer = CharTokenizer.fit(TEXT)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, cell="rnn", hidden_size=8)
    params = init_params(config, np.random.default_rng(0), dtype=np.float64)
    return params, config, tokenizer


def draw(tiny_model, seed=0, **kwargs) -> str:
    params, config, tokenizer = tiny_model
    return sample(params, config, tokenizer, np.random.default_rng(seed), **kwargs)


def entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


# --- sample --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 60])
def test_sample_returns_exactly_length_characters(tiny_model, length):
    """Without stop_at_newline the sample has exactly ``length`` characters."""
    assert len(draw(tiny_model, length=length)) == length


def test_sample_emits_only_vocabulary_characters(tiny_model):
    """Every generated character is in the tokenizer's vocabulary (for several seeds and temperatures)."""
    vocab = set(tiny_model[2].chars)
    for seed in range(5):
        for temperature in (0.5, 1.0, 3.0):
            assert set(draw(tiny_model, seed, length=80, temperature=temperature)) <= vocab


def test_sample_stop_at_newline_stops_before_the_newline(tiny_model):
    """stop_at_newline returns the text up to (not including) the first newline the model draws: the same
    seed without stopping gives that text followed by a newline."""
    stopped_somewhere = False
    for seed in range(20):
        full = draw(tiny_model, seed, length=100)
        stopped = draw(tiny_model, seed, length=100, stop_at_newline=True)
        assert NEWLINE not in stopped
        if NEWLINE in full:
            stopped_somewhere = True
            assert stopped == full[:full.index(NEWLINE)]
        else:
            assert stopped == full
    assert stopped_somewhere  # the model does draw newlines, so the stop was exercised


def test_sample_greedy_is_reproducible_and_ignores_the_rng(tiny_model):
    """Greedy sampling depends only on the model: different Generators give the same text."""
    greedy = {draw(tiny_model, seed, length=40, greedy=True) for seed in range(5)}
    assert len(greedy) == 1


def test_sample_same_seed_same_text(tiny_model):
    """The same seed gives the same sample; a different seed gives a different one."""
    assert draw(tiny_model, 3, length=50) == draw(tiny_model, 3, length=50)
    assert draw(tiny_model, 3, length=50) != draw(tiny_model, 4, length=50)


def test_sample_does_not_use_global_rng(tiny_model):
    """Only the Generator passed in drives sampling: reseeding NumPy's global RNG changes nothing."""
    np.random.seed(0)
    a = draw(tiny_model, 1, length=50)
    np.random.seed(1)
    b = draw(tiny_model, 1, length=50)
    assert a == b


def test_sample_returns_prime_as_prefix(tiny_model):
    """The prime text comes back first, followed by ``length`` new characters."""
    out = draw(tiny_model, length=20, prime="abc")
    assert out.startswith("abc")
    assert len(out) == 3 + 20


def test_sample_prime_conditions_the_continuation(tiny_model):
    """The continuation depends on the prime (the model is fed it): greedy continuations of two primes differ
    for at least one pair of primes."""
    continuations = {draw(tiny_model, length=10, greedy=True, prime=p)[len(p):] for p in ("a", "kji", "p\n", "hhh")}
    assert len(continuations) > 1


@pytest.mark.parametrize("bad", ["Z", "é", "🦖"])
def test_sample_unknown_prime_character_raises_naming_it(tiny_model, bad):
    """A prime with a character outside the vocabulary raises RnnlabError naming that character."""
    with pytest.raises(RnnlabError) as excinfo:
        draw(tiny_model, length=5, prime="ab" + bad)
    assert repr(bad) in str(excinfo.value)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_sample_rejects_non_positive_temperature(tiny_model, temperature):
    """temperature <= 0 raises RnnlabError naming the flag (use greedy for T -> 0)."""
    with pytest.raises(RnnlabError, match="temperature"):
        draw(tiny_model, length=5, temperature=temperature)


def test_sample_rejects_non_positive_length(tiny_model):
    """length <= 0 raises RnnlabError."""
    with pytest.raises(RnnlabError, match="length"):
        draw(tiny_model, length=0)


@pytest.mark.parametrize("top_k", [0, -1, "V+1"])
def test_sample_rejects_top_k_out_of_range(tiny_model, top_k):
    """top_k outside [1, vocab_size] raises RnnlabError stating the valid range."""
    V = tiny_model[2].vocab_size
    top_k = V + 1 if top_k == "V+1" else top_k
    with pytest.raises(RnnlabError, match=f"between 1 and the vocabulary size {V}"):
        draw(tiny_model, length=5, top_k=top_k)


def test_sample_top_1_equals_greedy(tiny_model):
    """top_k=1 leaves one candidate per step, so it reproduces greedy sampling whatever the seed."""
    greedy = draw(tiny_model, length=30, greedy=True)
    assert draw(tiny_model, 5, length=30, top_k=1) == greedy


# --- next_char_distribution ----------------------------------------------------------------------------


LOGITS = np.array([2.0, -1.0, 0.5, 3.0, 0.0, -2.5, 1.2])  # distinct, so top-k is never tied


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("top_k", [None, 1, 3, 7])
def test_distribution_is_a_probability_vector(temperature, top_k):
    """Probabilities are float64, non-negative and sum to 1 (to 1e-12: float64 rounding over 7 terms)."""
    p = next_char_distribution(LOGITS, temperature, top_k)
    assert p.dtype == np.float64 and p.shape == LOGITS.shape
    assert (p >= 0).all()
    assert abs(p.sum() - 1.0) < 1e-12


def test_distribution_entropy_rises_with_temperature():
    """Entropy strictly increases with temperature: low T sharpens towards argmax, high T flattens to uniform."""
    temperatures = [0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 50.0]
    entropies = [entropy(next_char_distribution(LOGITS, t)) for t in temperatures]
    assert all(a < b for a, b in pairwise(entropies)), entropies
    assert entropies[-1] < np.log(len(LOGITS))  # never beyond uniform


def test_distribution_temperature_extremes():
    """T -> 0 puts (almost) all mass on the argmax; T -> infinity approaches the uniform distribution."""
    cold = next_char_distribution(LOGITS, 1e-3)
    hot = next_char_distribution(LOGITS, 1e6)
    assert cold[np.argmax(LOGITS)] > 1 - 1e-12
    np.testing.assert_allclose(hot, 1 / len(LOGITS), rtol=1e-5)  # logit spread 5.5 / 1e6 ~ 5e-6 relative


def test_distribution_temperature_one_is_plain_softmax():
    """At T = 1 without top-k the result is softmax(logits)."""
    expected = np.exp(LOGITS) / np.exp(LOGITS).sum()
    np.testing.assert_allclose(next_char_distribution(LOGITS), expected, rtol=1e-12)


@pytest.mark.parametrize("k", range(1, len(LOGITS) + 1))
def test_top_k_keeps_exactly_the_k_largest(k):
    """With distinct logits, top_k=k leaves exactly k nonzero probabilities, on the k largest logits, in the
    same ratios as the plain softmax (renormalised)."""
    p = next_char_distribution(LOGITS, top_k=k)
    kept = np.flatnonzero(p)
    assert len(kept) == k
    assert set(kept) == set(np.argsort(LOGITS)[-k:])
    full = next_char_distribution(LOGITS)
    np.testing.assert_allclose(p[kept], full[kept] / full[kept].sum(), rtol=1e-12)


def test_top_k_keeps_ties_at_the_boundary():
    """Logits tied at the k-th largest value are all kept (documented behaviour), so none is arbitrarily dropped."""
    p = next_char_distribution(np.array([1.0, 3.0, 2.0, 2.0, 0.0]), top_k=2)
    assert np.count_nonzero(p) == 3
    assert p[0] == 0 and p[4] == 0


@pytest.mark.parametrize("top_k", [0, -3, 8])
def test_top_k_out_of_range_raises(top_k):
    """top_k outside [1, V] raises RnnlabError."""
    with pytest.raises(RnnlabError, match="top_k"):
        next_char_distribution(LOGITS, top_k=top_k)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_distribution_rejects_non_positive_temperature(temperature):
    """temperature <= 0 raises RnnlabError."""
    with pytest.raises(RnnlabError, match="temperature"):
        next_char_distribution(LOGITS, temperature)


# --- pick ----------------------------------------------------------------------------------------------


def test_pick_greedy_returns_argmax_without_touching_the_rng():
    """greedy=True returns argmax p and draws nothing from the Generator."""
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    p = next_char_distribution(LOGITS)
    assert pick(p, rng, greedy=True) == int(np.argmax(LOGITS))
    assert rng.bit_generator.state == before


def test_pick_empirical_frequencies_match_p():
    """Over N draws the frequency of each index matches p.

    Each count is Binomial(N, p_i), so its frequency has standard deviation sqrt(p_i (1 - p_i) / N) <= 0.0016
    at N = 100,000; we allow 5 standard deviations (a false alarm has probability ~6e-7 per index, and the
    seed is fixed, so the test is deterministic). Zero-probability indices must never be drawn.
    """
    p = np.array([0.0, 0.05, 0.15, 0.0, 0.3, 0.45, 0.05, 0.0])
    N = 100_000
    rng = np.random.default_rng(123)
    counts = np.bincount([pick(p, rng) for _ in range(N)], minlength=len(p))
    freq = counts / N
    tolerance = 5 * np.sqrt(p * (1 - p) / N)
    assert (np.abs(freq - p) <= tolerance).all(), (freq, p)
    assert (counts[p == 0] == 0).all()


def test_pick_unnormalised_weights_are_scaled():
    """pick draws proportionally to p even when p does not sum to exactly 1 (it scales by the CDF's end)."""
    rng = np.random.default_rng(5)
    counts = np.bincount([pick(np.array([1.0, 3.0]), rng) for _ in range(20_000)], minlength=2)
    # frequency of index 1 should be 0.75; sd = sqrt(0.75 * 0.25 / 20000) ~ 0.003, 5 sd ~ 0.015
    assert abs(counts[1] / 20_000 - 0.75) < 0.015


def test_pick_always_returns_a_valid_index():
    """Whatever the uniform draw (including float round-off in the CDF) the index is within [0, len(p))."""
    rng = np.random.default_rng(0)
    p = np.full(10, 0.1)  # cumsum may end at 0.9999999999999999
    picks = [pick(p, rng) for _ in range(2_000)]
    assert min(picks) >= 0 and max(picks) < 10
