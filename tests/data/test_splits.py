"""splits.py: the train/validation split, the batches each part feeds, and the validation budget."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.data.corpus import Corpus, load_corpus
from rnnlab.data.splits import build_data, split_corpus
from rnnlab.errors import RnnlabError
from rnnlab.training.config import TrainConfig

TOK = load_corpus("dinos").tokenizer


# --- the split ----------------------------------------------------------------------------------------


def _lines(part) -> list[str]:
    """The lines of one part of a lines split, as strings."""
    return [TOK.decode(part[i][0][1:]) for i in range(len(part))]


def test_split_lines_corpus_is_by_whole_lines_and_covers_every_line():
    """Each line goes whole to train or validation; together they are exactly the original lines."""
    corpus = load_corpus("dinos")
    train, val = split_corpus(corpus, 0.1)
    train_lines, val_lines = _lines(train), _lines(val)
    assert sorted(train_lines + val_lines) == sorted(corpus.examples())
    assert not set(train_lines) & set(val_lines)  # dino names are unique, so no line is in both


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.25, 0.5])
def test_split_lines_corpus_respects_val_fraction(fraction):
    """The validation set has round(n * fraction) lines."""
    corpus = load_corpus("dinos")
    n = len(corpus.examples())
    train, val = split_corpus(corpus, fraction)
    assert len(_lines(val)) == round(n * fraction)
    assert len(_lines(train)) == n - round(n * fraction)


def test_split_lines_corpus_is_deterministic_and_ignores_global_rng():
    """The split is the same on every call, whatever the global NumPy RNG state (it seeds its own Generator)."""
    corpus = load_corpus("dinos")
    np.random.seed(1)
    first = split_corpus(corpus, 0.1)
    np.random.seed(12345)
    np.random.random(1000)
    second = split_corpus(corpus, 0.1)
    assert _lines(first[0]) == _lines(second[0]) and _lines(first[1]) == _lines(second[1])


def test_split_lines_corpus_shuffles_before_holding_out():
    """A sorted name list does not send only its tail (the 'z' names) to validation."""
    corpus = load_corpus("dinos")
    _, val = split_corpus(corpus, 0.1)
    first_letters = {name[0] for name in _lines(val)}
    assert len(first_letters) > 10


def test_split_lines_corpus_keeps_train_order():
    """Within each part the lines keep their original relative order."""
    corpus = Corpus.from_text("".join(f"{c}\n" for c in "abcdefghijklmnopqrst"), "lines")
    train, val = split_corpus(corpus, 0.3)
    assert _lines(train) == sorted(_lines(train))
    assert _lines(val) == sorted(_lines(val))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
def test_split_stream_corpus_is_contiguous(fraction):
    """A stream corpus splits at one cut: train is the head, validation the tail, of round(n * fraction) chars."""
    corpus = Corpus.from_text("".join(chr(ord("a") + i % 26) for i in range(1000)), "stream")
    train, val = split_corpus(corpus, fraction)
    np.testing.assert_array_equal(np.concatenate([train, val]), corpus.ids)
    assert len(val) == round(1000 * fraction)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_val_fraction_outside_unit_interval(fraction):
    """val_fraction must lie in [0, 1); anything else raises RnnlabError naming the flag."""
    with pytest.raises(RnnlabError, match="val_fraction"):
        split_corpus(load_corpus("dinos"), fraction)


# --- validation on a budget ----------------------------------------------------------------------------


def test_stream_validation_measures_the_first_eval_tokens_characters():
    """The held-out part is cut to about eval_tokens characters -- the same ones every time."""
    corpus = load_corpus("shakespeare")
    full = build_data(corpus, TrainConfig(dataset="shakespeare", seq_length=64, eval_tokens=None),
                      np.random.default_rng(0))
    budget = build_data(corpus, TrainConfig(dataset="shakespeare", seq_length=64, eval_tokens=20_000),
                        np.random.default_rng(0))
    assert 18_000 <= budget.val_tokens <= 20_000 < 100_000 <= full.val_tokens
    first = [b.ids for b in budget.val_batches]
    second = [b.ids for b in budget.val_batches]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_line_validation_takes_whole_lines_up_to_the_budget():
    corpus = load_corpus("dinos")
    data = build_data(corpus, TrainConfig(dataset="dinos", eval_tokens=200), np.random.default_rng(0))
    assert 0 < data.val_tokens <= 200 and len(data.val_batches.examples) < 132
    whole = build_data(corpus, TrainConfig(dataset="dinos", eval_tokens=None), np.random.default_rng(0))
    assert whole.val_tokens > 1000


def test_the_default_budget_covers_the_shipped_validation_texts_whole():
    """Both shipped held-out parts are smaller than the default budget: their numbers are unchanged by it."""
    for name in ("dinos", "shakespeare"):
        corpus = load_corpus(name)
        default = build_data(corpus, TrainConfig(dataset=name, seq_length=64), np.random.default_rng(0))
        whole = build_data(corpus, TrainConfig(dataset=name, seq_length=64, eval_tokens=None), np.random.default_rng(0))
        assert default.val_tokens == whole.val_tokens


def test_a_val_fraction_that_leaves_nothing_to_train_says_make_it_smaller():
    corpus = Corpus.from_text("".join(f"name{i}\n" for i in range(10)), "lines")
    with pytest.raises(RnnlabError, match="smaller --val_fraction"):
        build_data(corpus, TrainConfig(dataset="x", val_fraction=0.99), np.random.default_rng(0))
