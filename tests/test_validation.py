"""Validation split and metrics, epochs, and state carry-over inside the trainer."""

import math

import numpy as np
import pytest

from rnnlab import model as charmodel
from rnnlab.errors import RnnlabError
from rnnlab.train import TrainConfig, Trainer


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
