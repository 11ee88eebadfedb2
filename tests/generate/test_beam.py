"""Beam search for the language models (rnnlab.generate.beam): K = 1 is greedy sampling, a wider beam never returns a
lower score than greedy, and every score is the model's summed log-probability of the continuation."""

import numpy as np
import pytest

from rnnlab.data.text import CharTokenizer
from rnnlab.errors import RnnlabError
from rnnlab.generate.beam import beam_search, beam_step, first_scores
from rnnlab.generate.sampling import prime_context, sample
from rnnlab.nn import model as charmodel
from rnnlab.nn.activations import log_softmax

TOKENIZER = CharTokenizer.fit("\nabcde ")


def lm(cell="lstm", seed=0, scale=0.8):
    """An untrained float64 model with large random weights (peaked, varied next-character distributions)."""
    config = charmodel.ModelConfig(TOKENIZER.vocab_size, cell, 8, 2)
    rng = np.random.default_rng(seed)
    params = {n: v + scale * rng.standard_normal(v.shape)
              for n, v in charmodel.init_params(config, rng, np.float64).items()}
    return params, config


def summed_log_prob(params, config, prime, text):
    """log p(continuation | prime) by one forward pass over prime + continuation."""
    context = prime_context(TOKENIZER, prime)
    ids = TOKENIZER.encode(context + text[len(prime):])
    logits, _, _ = charmodel.forward(params, config, ids[:-1, None], charmodel.zero_state(config, 1, np.float64))
    logp = log_softmax(logits[:, 0])[np.arange(len(ids) - 1), ids[1:]]   # (T - 1,)
    return logp[len(context) - 1:].sum()


def test_beam_step_keeps_the_k_best_extensions():
    scores = np.array([[-1.0, -2.0]])
    logp = np.log(np.array([[[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]]))
    new, parents, tokens = beam_step(scores, logp, 3)
    expected = sorted([(-1 + np.log(p), 0, v) for v, p in enumerate([0.5, 0.3, 0.2])]
                      + [(-2 + np.log(p), 1, v) for v, p in enumerate([0.9, 0.05, 0.05])], reverse=True)[:3]
    np.testing.assert_allclose(new[0], [e[0] for e in expected])
    assert parents[0].tolist() == [e[1] for e in expected] and tokens[0].tolist() == [e[2] for e in expected]


def test_the_first_step_does_not_extend_copies_of_the_empty_hypothesis():
    _, parents, tokens = beam_step(first_scores(1, 3), np.log(np.full((1, 3, 4), 0.25)), 3)
    assert parents[0].tolist() == [0, 0, 0] and tokens[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("prime", ["", "ab"])
def test_a_beam_of_one_is_greedy_sampling(cell, prime):
    params, config = lm(cell)
    [(text, _)] = beam_search(params, config, TOKENIZER, prime, beam_size=1, length=12)
    assert text == sample(params, config, TOKENIZER, np.random.default_rng(0), length=12, greedy=True, prime=prime)


@pytest.mark.parametrize("seed", range(5))
def test_a_wider_beam_never_returns_a_lower_score_than_greedy(seed):
    params, config = lm("gru", seed=seed)
    [(_, greedy)] = beam_search(params, config, TOKENIZER, "a", beam_size=1, length=10)
    for width in (2, 3, 5, 8):
        results = beam_search(params, config, TOKENIZER, "a", beam_size=width, length=10)
        assert results[0][1] >= greedy - 1e-12


@pytest.mark.parametrize("prime", ["", "c a"])
def test_scores_are_the_models_summed_log_probabilities_best_first_and_distinct(prime):
    params, config = lm("lstm", seed=3)
    results = beam_search(params, config, TOKENIZER, prime, beam_size=4, length=6)
    assert len(results) == 4 and len({text for text, _ in results}) == 4
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    for text, score in results:
        assert text.startswith(prime) and len(text) == len(prime) + 6
        assert score == pytest.approx(summed_log_prob(params, config, prime, text), rel=1e-10)


def test_bad_arguments_are_refused():
    params, config = lm()
    with pytest.raises(RnnlabError, match="beam_size"):
        beam_search(params, config, TOKENIZER, "", beam_size=0)
    with pytest.raises(RnnlabError, match="length"):
        beam_search(params, config, TOKENIZER, "", length=0)
