"""Training behaviour: the loss goes down, a tiny corpus is memorised, runs are reproducible."""

import math

import numpy as np
import pytest

from rnnlab import model as charmodel
from rnnlab.batches import pad_sequences
from rnnlab.cells import CELLS
from rnnlab.optim import OPTIMIZERS
from rnnlab.sampling import sample
from rnnlab.text import line_example
from rnnlab.train import TrainConfig, Trainer

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
