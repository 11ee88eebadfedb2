"""train.py: the loss goes down, a tiny corpus is memorised, runs are reproducible; validation in the reports,
epochs, and the state carried from one window to the next."""

import math

import numpy as np
import pytest

from rnnlab.data.batches import pad_sequences
from rnnlab.data.text import line_example
from rnnlab.errors import RnnlabError
from rnnlab.generate.sampling import sample
from rnnlab.nn import model as charmodel
from rnnlab.nn.cells import CELLS
from rnnlab.nn.optim import OPTIMIZERS
from rnnlab.training.trainer import TrainConfig, Trainer

TINY = "the quick brown fox jumps over the lazy dog\n"


def names_loss(trainer, n=200):
    """Mean loss in nats/char over the first n names, as one padded batch."""
    pairs = [line_example(trainer.tokenizer, name) for name in trainer.corpus.examples()[:n]]
    ids, mask = pad_sequences([x for x, _ in pairs])
    targets, _ = pad_sequences([y for _, y in pairs])
    state = charmodel.zero_state(trainer.model_config, n, trainer.dtype)
    return charmodel.evaluate_loss(trainer.params, trainer.model_config, ids, targets, state, mask)[0]


def test_rnn_loss_decreases_on_dinos_within_a_few_hundred_steps():
    """Seed quick-start settings (RMSProp, single example per step): 400 steps take the loss on 200 names
    from about ln 27 = 3.30 nats to well below (a bigram model alone gets ~2.5)."""
    trainer = Trainer(TrainConfig(dataset="dinos", optimizer="rms", iterations=400, sample_every=400))
    before = names_loss(trainer)
    trainer.run()
    after = names_loss(trainer)
    assert before == pytest.approx(math.log(27), abs=0.1)   # the Glorot output layer starts ~0.06 above ln V
    assert after < before - 0.5


@pytest.fixture
def tiny_corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY * 4 + "\n")  # a blank line makes it a stream corpus
    return str(path)


# Plain SGD follows the raw gradient of a mean-per-character loss, which is small; the default 0.1 needs
# thousands of steps, so these 120-step tests give it a larger step. Adaptive optimizers use their defaults.
FAST_LR = {"sgd": 1.0}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_and_optimizer_trains_the_loss_down(tiny_corpus, cell, optimizer):
    """With each optimizer's default learning rate, the mean of the last 10 of 120 step losses on a tiny
    text is at least 0.4 nats below the first loss (far more than step-to-step noise), for every cell x
    optimizer."""
    trainer = Trainer(TrainConfig(dataset=tiny_corpus, cell=cell, optimizer=optimizer, hidden_size=32,
                                  seq_length=20, learning_rate=FAST_LR.get(optimizer)))
    losses = [trainer.advance()[0] for _ in range(120)]
    assert np.mean(losses[-10:]) < losses[0] - 0.4, losses[::10]


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_tiny_corpus_is_memorised(tiny_corpus, cell):
    """After 300 Adam steps the model has learnt the sentence: greedy sampling from "the q" writes it out."""
    trainer = Trainer(TrainConfig(dataset=tiny_corpus, cell=cell, hidden_size=48, seq_length=43,
                                  learning_rate=0.01))
    losses = [trainer.advance()[0] for _ in range(300)]
    assert np.mean(losses[-10:]) < 0.05
    text = sample(trainer.params, trainer.model_config, trainer.tokenizer, np.random.default_rng(0),
                  length=38, greedy=True, prime="the q")
    assert text == TINY[:43]


def test_same_seed_same_weights_other_seed_other_weights():
    def weights(seed):
        trainer = Trainer(TrainConfig(dataset="dinos", iterations=50, sample_every=25, seed=seed))
        trainer.run()
        return trainer.params

    a, b, c = weights(1), weights(1), weights(2)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["Wy"], c["Wy"])


def test_diverging_training_stops_with_a_hint(tiny_corpus):
    """An absurd learning rate without clipping blows the loss up (past 3x the first loss, the char-rnn
    rule, or to nan): the trainer raises a clear error that suggests the fix."""
    trainer = Trainer(TrainConfig(dataset=tiny_corpus, optimizer="sgd", learning_rate=1e6, clip_value=None,
                                  seq_length=20))
    with pytest.raises(ValueError, match="learning_rate"):
        for _ in range(50):
            trainer.advance()


# --- validation, epochs, carried state ------------------------------------------------------------------


def stream_file(tmp_path, text):
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return str(path)


def test_reports_carry_validation_in_nats_bits_and_perplexity():
    reports = []
    trainer = Trainer(TrainConfig(dataset="dinos", iterations=60, sample_every=30, batch_size=16), reports.append)
    trainer.run()
    assert [r.step for r in reports] == [30, 60]
    for r in reports:
        assert r.val_bpc == pytest.approx(r.val_loss / math.log(2))
        assert r.val_ppl == pytest.approx(math.exp(r.val_loss))
        assert {"val_loss", "val_bpc", "val_ppl", "step", "train_loss", "smooth_loss"} <= r.metrics().keys()
    assert reports[1].val_loss < reports[0].val_loss < math.log(27)


def test_dinos_split_holds_out_a_tenth_of_the_names():
    trainer = Trainer(TrainConfig(dataset="dinos"))
    n_val = len(trainer.val_batches.examples)
    assert n_val == round(1318 * 0.1) and len(trainer.batches.examples) == 1318 - n_val


def test_validation_loss_is_the_token_weighted_mean_over_held_out_names():
    """evaluate() over padded chunks equals the mean of per-name losses weighted by name length."""
    trainer = Trainer(TrainConfig(dataset="dinos", dtype="float64"))
    total, count = 0.0, 0
    examples = trainer.val_batches.examples
    for x, y in (examples[i] for i in range(len(examples))):
        loss, _ = charmodel.evaluate_loss(trainer.params, trainer.model_config, x[:, None], y[:, None],
                                          charmodel.zero_state(trainer.model_config, 1, np.float64))
        total, count = total + loss * len(x), count + len(x)
    assert trainer.validation_loss() == pytest.approx(total / count, rel=1e-10)


def test_stream_validation_covers_the_held_out_text_with_state_carried(tmp_path):
    text = "".join(f"line {i} of a small play\n\n" for i in range(200))
    trainer = Trainer(TrainConfig(dataset=stream_file(tmp_path, text), seq_length=16, batch_size=4))
    val = trainer.val_batches
    windows = list(val)
    held_out = len(text) - len(text) * 9 // 10
    covered = sum(w.ids.size for w in windows)
    assert held_out - len(val.windows.stream_starts) * 16 - 1 <= covered <= held_out
    assert windows[0].reset_state and not any(w.reset_state for w in windows[1:])


def test_too_small_corpus_trains_without_validation_and_says_so(tmp_path):
    trainer = Trainer(TrainConfig(dataset=stream_file(tmp_path, "to be or not to be\n\nthat is it\n"),
                                  seq_length=10, iterations=200, sample_every=100))
    assert trainer.val_batches is None
    assert any("without validation" in note for note in trainer.notes)
    assert trainer.run().val_loss is None


def test_explicit_validation_that_cannot_fit_is_an_error(tmp_path):
    with pytest.raises(RnnlabError, match="val_fraction"):
        Trainer(TrainConfig(dataset=stream_file(tmp_path, "to be or not to be\n\nthat is it\n"),
                            seq_length=10, val_fraction=0.1))


@pytest.mark.slow
def test_epochs_set_the_number_of_steps():
    trainer = Trainer(TrainConfig(dataset="dinos", epochs=2, batch_size=100, sample_every=1000))
    assert trainer.total_steps == 2 * math.ceil(1186 / 100)
    last = trainer.run()
    assert last.step == trainer.total_steps and last.epoch == 1


def test_deterministic_keeps_the_example_order():
    a = Trainer(TrainConfig(dataset="dinos", deterministic=True, batch_size=8))
    first = next(a.batches).ids
    np.testing.assert_array_equal(first, next(Trainer(TrainConfig(dataset="dinos", deterministic=True,
                                                                  batch_size=8, seed=5)).batches).ids)


def test_trainer_carries_the_state_into_the_next_window(tmp_path):
    """After a step the trainer holds the window's final state, and the next window starts from it (it
    would be zero only at an epoch boundary)."""
    text = "".join(f"verse {i}: so quick bright things come to confusion\n\n" for i in range(40))
    trainer = Trainer(TrainConfig(dataset=stream_file(tmp_path, text), cell="lstm", batch_size=3,
                                  seq_length=12, hidden_size=8, dtype="float64", val_fraction=0))
    first = next(StreamPeek(trainer))
    state0 = charmodel.zero_state(trainer.model_config, 3, np.float64)
    _, expected_state, _ = charmodel.forward({k: v.copy() for k, v in trainer.params.items()},
                                             trainer.model_config, first.ids, state0)
    trainer.advance()
    for got, want in zip(trainer.state[0], expected_state[0], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    second_batch_state = trainer.state
    _, batch = trainer.advance()
    assert not batch.reset_state and second_batch_state is not None


class StreamPeek:
    """Look at the trainer's next batch without consuming it."""

    def __init__(self, trainer):
        self.trainer = trainer

    def __next__(self):
        saved = self.trainer.batches.state_dict()
        batch = next(self.trainer.batches)
        self.trainer.batches.load_state_dict(saved)
        return batch
