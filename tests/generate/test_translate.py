"""Translating (rnnlab.generate.translate) and the translator's engine: a tiny set is memorised; greedy and beam search
agree for K = 1, a wider beam never scores lower, scores are the model's log-probabilities; max length,
attention rows, batching, empty and unknown inputs."""

import numpy as np
import pytest

from rnnlab.data.pairs import PairBatches, PairTokenizers, collate_pairs
from rnnlab.errors import RnnlabError
from rnnlab.generate.translate import beam_decode, exact_match, greedy_decode, output_lengths, translate
from rnnlab.nn import seq2seq as s2s
from rnnlab.nn.activations import log_softmax
from rnnlab.nn.optim import Adam
from rnnlab.training.engines import Seq2SeqEngine
from rnnlab.training.trainer import TrainConfig

REVERSE = [(word, word[::-1]) for word in ["abc", "bca", "cab", "acb", "ba", "ccab", "abcc", "b", "aab", "cba"]]
TOKENIZERS = PairTokenizers.fit(REVERSE)
SOURCES = ["abc", "ca", "bbacc", "a", "cab"]


def model(attention="additive", seed=0, scale=1.5, **sizes):
    """An untrained float64 model with large random weights: confident, varied predictions."""
    sizes = {"encoder_hidden": 4, "decoder_hidden": 8, "attention_size": 5, "max_output_length": 7, **sizes}
    config = s2s.Seq2SeqConfig(TOKENIZERS.source.vocab_size, TOKENIZERS.target.vocab_size, "gru",
                               sizes["encoder_hidden"], "lstm", sizes["decoder_hidden"], attention,
                               sizes["attention_size"], sizes["max_output_length"])
    rng = np.random.default_rng(seed)
    params = {name: value + scale * rng.standard_normal(value.shape)
              for name, value in s2s.init_params(config, rng, np.float64).items()}
    return params, config


def memory_of(params, config, texts):
    batch = collate_pairs([(TOKENIZERS.encode_source(t), TOKENIZERS.encode_target("a")) for t in texts])
    return s2s.encode_memory(params, config, batch.source, batch.source_mask)[0]


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_a_tiny_translation_set_is_memorised(attention):
    """Reversing ten short strings: Adam learns every one exactly within 120 steps (every attention kind
    needed 50 when this was written; a broken gradient or decoder does not get there)."""
    config = s2s.Seq2SeqConfig(TOKENIZERS.source.vocab_size, TOKENIZERS.target.vocab_size, "gru", 16, "gru", 32,
                               attention, 16, 8)
    params = s2s.init_params(config, np.random.default_rng(0), np.float32)
    engine = Seq2SeqEngine(config, params, Adam(lr=1e-2), TrainConfig(clip_value=None, clip_norm=5.0), None)
    batches = PairBatches([TOKENIZERS.encode_pair(p) for p in REVERSE], 10, np.random.default_rng(1))
    first, _ = engine.train_step(next(batches), engine.zero_state(10))
    for _ in range(120):
        loss, state = engine.train_step(next(batches), None)
    assert state is None and loss < 0.05 * first
    assert exact_match(engine.numpy_params(), config, TOKENIZERS, REVERSE) == 1.0


@pytest.mark.parametrize("attention", ["additive", "scaled_dot", "none"])
def test_a_beam_of_one_is_greedy_decoding(attention):
    params, config = model(attention, decoder_hidden=8)
    memory = memory_of(params, config, SOURCES)
    greedy = greedy_decode(params, config, memory, TOKENIZERS.end_id, 7)
    beam = beam_decode(params, config, memory, TOKENIZERS.end_id, 7, beam_size=1, length_penalty=1.0)
    lengths = output_lengths(greedy.tokens, TOKENIZERS.end_id)  # after the end symbol: filler, not compared
    np.testing.assert_array_equal(output_lengths(beam.tokens, TOKENIZERS.end_id), lengths)
    for row, n in enumerate(lengths):
        np.testing.assert_array_equal(beam.tokens[row, :n], greedy.tokens[row, :n])
    np.testing.assert_allclose(beam.logps.sum(axis=1), greedy.logps.sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_a_wider_beam_never_scores_lower_than_greedy(seed):
    params, config = model("additive", seed=seed)
    greedy = translate(params, config, TOKENIZERS, SOURCES)
    for width in (2, 4, 8):
        wider = translate(params, config, TOKENIZERS, SOURCES, beam_size=width)
        for g, w in zip(greedy, wider, strict=True):
            assert w.score >= g.score - 1e-12, (width, g, w)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_scores_are_the_models_summed_log_probabilities(beam_size):
    """Feeding the output back with teacher forcing gives the same log-probabilities (end symbol included
    when it was produced), and score = logprob / n for length_penalty 1."""
    params, config = model("general", seed=1)
    for t in translate(params, config, TOKENIZERS, SOURCES, beam_size=beam_size):
        batch = collate_pairs([(TOKENIZERS.encode_source(t.source), TOKENIZERS.encode_target(t.output))])
        logits, _ = s2s.forward(params, config, batch)           # (T, 1, V)
        logp = log_softmax(logits[:, 0])[np.arange(len(batch.targets)), batch.targets[:, 0]]
        n = len(t.output) + t.finished
        assert t.logprob == pytest.approx(logp[:n].sum(), rel=1e-10)
        assert t.score == pytest.approx(t.logprob / n, rel=1e-12)


def test_decoding_stops_at_max_length_and_says_so():
    params, config = model("dot", decoder_hidden=8, encoder_hidden=4)
    for max_length in (1, 3):
        for beam_size in (1, 3):
            for t in translate(params, config, TOKENIZERS, SOURCES, max_length=max_length, beam_size=beam_size):
                assert len(t.output) + t.finished <= max_length
                assert t.finished or len(t.output) == max_length
                assert t.attention.shape == (len(t.output), len(t.source))


def test_attention_rows_are_distributions_over_the_source_characters():
    params, config = model("additive", seed=2)
    translations = translate(params, config, TOKENIZERS, SOURCES, beam_size=2)
    assert any(len(t.output) for t in translations)
    for t in translations:
        np.testing.assert_allclose(t.attention.sum(axis=1), 1.0, rtol=1e-12)
        assert np.all(t.attention >= 0)


def test_batching_changes_no_translation():
    params, config = model("additive", seed=3)
    together = translate(params, config, TOKENIZERS, SOURCES * 3, beam_size=2)
    one_by_one = translate(params, config, TOKENIZERS, SOURCES * 3, beam_size=2, max_batch=1)
    for a, b in zip(together, one_by_one, strict=True):
        assert (a.source, a.output, a.finished) == (b.source, b.output, b.finished)
        assert a.logprob == pytest.approx(b.logprob, rel=1e-10)
        np.testing.assert_allclose(a.attention, b.attention, rtol=1e-10, atol=1e-13)


def test_empty_input_translates_to_nothing_and_unknown_characters_are_named():
    params, config = model("additive")
    [empty, t] = translate(params, config, TOKENIZERS, ["", "ab"])
    assert empty.output == "" and t.source == "ab"
    with pytest.raises(RnnlabError, match=r"input 2 \('axz'\) has 2 character") as err:
        translate(params, config, TOKENIZERS, ["ab", "axz"])
    assert "\n" not in str(err.value)
    with pytest.raises(RnnlabError, match="beam_size"):
        translate(params, config, TOKENIZERS, ["ab"], beam_size=0)


# ---- issue 21: budgets -------------------------------------------------------------------------------------

def test_batches_are_cut_to_the_memory_budget_and_cover_every_source_once():
    from rnnlab.generate.translate import budget_batches
    lengths = [5, 0, 20000, 7, 20000, 3, 12] * 15               # 100 lines of 20,000 among short ones (and empties)
    row_bytes = lambda S: 1000 * S                               # noqa: E731
    batches = budget_batches(lengths, row_bytes, budget=25_000_000, max_batch=1000)
    assert sorted(i for batch in batches for i in batch) == [i for i, n in enumerate(lengths) if n]
    for batch in batches:
        assert len(batch) * row_bytes(max(lengths[i] for i in batch)) <= 25_000_000
    assert max(len(b) for b in batches if lengths[b[0]] < 100) > 50   # short ones still batched together


def test_an_input_that_cannot_fit_is_refused_by_its_number(monkeypatch):
    from rnnlab import memory
    params, config = model("additive")
    monkeypatch.setattr(memory, "available_memory", lambda: 200_000)      # half of it for decoding: 100 KB
    with pytest.raises(RnnlabError, match=r"input 2 \(2,000 characters, up to 7 output characters\) needs about"):
        translate(params, config, TOKENIZERS, ["ab", "ab" * 1000])


def test_a_huge_max_output_length_is_refused_before_decoding():
    """A crafted translator checkpoint claims max_output_length 10**12: refused by the memory it implies,
    instead of decoding for ever."""
    params, config = model("additive")
    import dataclasses
    crafted = dataclasses.replace(config, max_output_length=10 ** 12)
    with pytest.raises(RnnlabError, match="needs about"):
        translate(params, crafted, TOKENIZERS, ["ab"])


@pytest.mark.parametrize("penalty", [-1.0, 10.5, 1e300])
def test_a_length_penalty_outside_0_to_10_is_refused(penalty):
    params, config = model("additive")
    with pytest.raises(RnnlabError, match="--length_penalty must be between 0 and 10"):
        translate(params, config, TOKENIZERS, ["ab"], beam_size=2, length_penalty=penalty)


def test_a_translator_vocabulary_without_its_newline_is_refused():
    from rnnlab.data.pairs import PairTokenizers
    data = TOKENIZERS.to_dict()
    data["target"]["chars"] = [ch for ch in data["target"]["chars"] if ch != "\n"]
    with pytest.raises(RnnlabError, match="target vocabulary has no newline"):
        PairTokenizers.from_dict(data)
