"""The seq2seq model (rnnlab.nn.seq2seq): the gradient of the whole loss by finite differences for every attention
kind with GRU and LSTM encoders and padded batches; padding changes nothing; config validation.

Finite differences: central, eps = 1e-5, float64. Some gradients here are small (the additive score's query
weights act through a softmax that ignores shifts common to all positions: |dWq| ~ 1e-4), and the round-off
of a central difference is ~1e-16 |L| / eps absolute, so eps = 1e-6 would put those at ~1e-6 relative error;
at eps = 1e-5 the round-off is 1e-11 and the truncation error O(eps^2) ~ 1e-10: a correct gradient is at
~1e-8 or better, the bound is 1e-6, and a missing term gives 1e-2 or more.
"""

import numpy as np
import pytest

from rnnlab.data.pairs import PairTokenizers, collate_pairs
from rnnlab.errors import RnnlabError
from rnnlab.nn import seq2seq as s2s
from rnnlab.nn.bidirectional import bidirectional_forward, direction_forward, reversal_index
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.model import strip_prefix
from rnnlab.nn.optim import Adam
from rnnlab.training.engines import Seq2SeqEngine
from rnnlab.training.trainer import TrainConfig

EPS = 1e-5
BOUND = 1e-6
PAIRS = [("ab c", "12"), ("cba", "2"), ("a", "121")]   # sources and targets of different lengths: padding
TOKENIZERS = PairTokenizers.fit(PAIRS)
KINDS = s2s.ATTENTION_KINDS
ENCODER_DECODER = [("gru", "lstm"), ("lstm", "gru")]


def small_config(attention, encoder_cell="gru", decoder_cell="lstm", **sizes):
    sizes = {"encoder_hidden": 2, "decoder_hidden": 4, "attention_size": 3, **sizes}
    return s2s.Seq2SeqConfig(TOKENIZERS.source.vocab_size, TOKENIZERS.target.vocab_size, encoder_cell,
                             sizes["encoder_hidden"], decoder_cell, sizes["decoder_hidden"], attention,
                             sizes["attention_size"])


def random_params(config, seed=0):
    """init_params plus N(0, 0.3) noise: every entry nonzero, biases included (zero biases hide bias bugs)."""
    rng = np.random.default_rng(seed)
    return {name: value + 0.3 * rng.standard_normal(value.shape)
            for name, value in s2s.init_params(config, rng, np.float64).items()}


def batch_of(pairs):
    return collate_pairs([TOKENIZERS.encode_pair(pair) for pair in pairs])


@pytest.mark.parametrize("encoder_cell,decoder_cell", ENCODER_DECODER, ids=lambda c: c)
@pytest.mark.parametrize("attention", KINDS)
def test_loss_gradient_matches_finite_differences(attention, encoder_cell, decoder_cell):
    """Every parameter: both encoder directions, the bridge, the decoder cell and its context input, the
    score's parameters, the output layer -- on a padded batch (sources of 4, 3, 1 characters)."""
    config = small_config(attention, encoder_cell, decoder_cell)
    params, batch = random_params(config), batch_of(PAIRS)
    _, grads = s2s.loss_and_grads(params, config, batch)
    assert grads.keys() == params.keys()

    def loss():
        return s2s.evaluate_loss(params, config, batch)

    for name, value in params.items():
        assert relative_error(grads[name], numerical_gradient(loss, value, EPS)) < BOUND, name


def padded_further(batch, rng, extra_source=3, extra_target=2):
    """The same batch with more padding at the end of every column, filled with random (wrong) ids."""
    def pad(ids, mask, extra, vocab):
        ids = np.concatenate([ids, rng.integers(0, vocab, (extra, ids.shape[1]))])
        ids[:-extra][mask == 0] = rng.integers(0, vocab, int((mask == 0).sum()))
        return ids, np.concatenate([mask, np.zeros((extra, mask.shape[1]))])

    source, source_mask = pad(batch.source, batch.source_mask, extra_source, TOKENIZERS.source.vocab_size)
    dec_in, target_mask = pad(batch.dec_in, batch.target_mask, extra_target, TOKENIZERS.target.vocab_size)
    targets, _ = pad(batch.targets, batch.target_mask, extra_target, TOKENIZERS.target.vocab_size)
    return type(batch)(source, source_mask, dec_in, targets, target_mask)


@pytest.mark.parametrize("attention", KINDS)
@pytest.mark.parametrize("encoder_cell", ["gru", "lstm"])
def test_padding_changes_neither_loss_nor_gradients(attention, encoder_cell):
    """More padding, holding random ids, in the sources and the targets: the same loss and gradients (up to
    the summation order of the longer arrays, 1e-13 relative)."""
    config = small_config(attention, encoder_cell)
    params, batch = random_params(config), batch_of(PAIRS)
    loss, grads = s2s.loss_and_grads(params, config, batch)
    loss2, grads2 = s2s.loss_and_grads(params, config, padded_further(batch, np.random.default_rng(4)))
    assert loss2 == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-11, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_an_example_gets_the_same_logits_alone_and_in_a_padded_batch(attention):
    """The shortest pair's logits in a batch with longer pairs equal its logits in a batch of one."""
    config = small_config(attention, "lstm", "gru")
    params = random_params(config)
    together, _ = s2s.forward(params, config, batch_of(PAIRS))
    alone, _ = s2s.forward(params, config, batch_of(PAIRS[1:2]))
    np.testing.assert_allclose(together[:alone.shape[0], 1], alone[:, 0], rtol=1e-12, atol=1e-14)


def test_attention_none_has_no_context_parameters_and_uses_the_bridge_only():
    names = set(s2s.init_params(small_config("none"), np.random.default_rng(0)))
    assert not {n for n in names if n.startswith("att.")} and "dec.Wc" not in names and "Wyc" not in names
    assert {"bridge.W", "bridge.b", "Wy", "by"} <= names


def test_the_backward_direction_reads_each_source_from_its_own_end():
    """hb at position 0 of a source equals the forward direction run on the reversed source with the
    backward direction's weights: the reversal respects each column's length."""
    config = small_config("dot")
    params = random_params(config)
    batch = batch_of(PAIRS)
    cell, backward_p = CELLS[config.encoder_cell], strip_prefix(params, "enc_b.")
    h, _, _ = bidirectional_forward(cell, strip_prefix(params, "enc_f."), backward_p, batch.source, batch.source_mask)
    He = config.encoder_hidden
    for b, (source, _) in enumerate(PAIRS):
        ids = TOKENIZERS.encode_source(source[::-1])[:, None]
        hs, _ = direction_forward(cell, ids, backward_p)
        np.testing.assert_allclose(h[:len(source), b, He:], hs[::-1, 0], rtol=1e-13, atol=1e-15)


def test_reversal_index_reverses_each_column_within_its_length_and_is_its_own_inverse():
    index = reversal_index(np.array([3, 1, 4, 2]), 4)
    assert index.T.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 2, 3]]
    np.testing.assert_array_equal(np.take_along_axis(index, index, axis=0), np.arange(4)[:, None].repeat(4, 1))


def test_check_params_and_config_validation():
    config = small_config("general")
    params = s2s.init_params(config, np.random.default_rng(0))
    s2s.check_params(config, params)
    del params["att.W"]
    with pytest.raises(RnnlabError, match="missing"):
        s2s.check_params(config, params)
    with pytest.raises(RnnlabError, match="unknown --attention"):
        small_config("luong")
    with pytest.raises(RnnlabError, match="decoder size to 4"):
        small_config("scaled_dot", decoder_hidden=6)
    with pytest.raises(RnnlabError, match="encoder_cell"):
        small_config("dot", encoder_cell="transformer")
    assert s2s.Seq2SeqConfig.from_dict(config.to_dict()) == config


def test_the_engine_resumes_exactly_from_saved_parameters_and_optimizer_state():
    """Seq2SeqEngine keeps NumpyEngine's interface: 3 steps, then a second engine built from other weights
    load_state()s copies of the parameters and Adam moments: its next steps equal the first engine's."""
    config = small_config("additive", "lstm", "gru")
    train = TrainConfig(clip_value=None, clip_norm=1.0)
    batch = batch_of(PAIRS)
    engine = Seq2SeqEngine(config, random_params(config), Adam(lr=1e-2), train, None)
    for _ in range(3):
        engine.train_step(batch, engine.zero_state(3))
    saved = {k: v if k == "step" else {n: a.copy() for n, a in v.items()} for k, v in engine.optimizer_state().items()}
    other = Seq2SeqEngine(config, random_params(config, seed=5), Adam(lr=1e-2), train, None)
    other.load_state({k: v.copy() for k, v in engine.numpy_params().items()}, saved)
    for engine_ in (engine, other):
        engine_.set_learning_rate(5e-3)
    for _ in range(2):
        assert other.train_step(batch, None)[0] == engine.train_step(batch, None)[0]
    for name, value in engine.numpy_params().items():
        np.testing.assert_array_equal(other.numpy_params()[name], value, err_msg=name)
    assert other.evaluate(batch, None)[0] == engine.evaluate(batch, None)[0]
    assert engine.state_to_numpy(None) is None and engine.state_from_numpy(None) is None
