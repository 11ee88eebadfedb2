"""CharModel behaviour: initial loss, padding, state carry-over between windows, dropout only in training."""

import math

import numpy as np
import pytest

from finite_differences import BOUND, EPS, nonzero_like
from rnnlab.data.batches import pad_sequences
from rnnlab.nn import model as charmodel
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.initializers import INIT_SCHEMES


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_fresh_model_loss_is_about_log_vocab(cell, scheme):
    """A new model guesses nearly uniformly: loss within 0.05 nats of ln V (REFERENCE: dinos 3.30) under every
    initialisation scheme -- 0.2 for those with a Glorot output layer (rnnlab, keras: H=50, V=27 gives
    U(+-0.28), twice PyTorch's U(+-0.14)), with which the 2-layer RNN starts 0.15 above ln V."""
    config = charmodel.ModelConfig(vocab_size=27, cell=cell, hidden_size=50, num_layers=2)
    rng = np.random.default_rng(0)
    params = charmodel.init_params(config, rng, scheme=scheme)
    ids, targets = rng.integers(0, 27, size=(20, 8)), rng.integers(0, 27, size=(20, 8))
    loss, _, _ = charmodel.loss_and_grads(params, config, ids, targets, charmodel.zero_state(config, 8))
    assert abs(loss - math.log(27)) < (0.2 if scheme in ("rnnlab", "keras") else 0.05)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_padded_batch_equals_sequences_one_at_a_time(cell):
    """Token-weighted: M_batch * (batch loss, grads) == sum over sequences of len_i * (loss_i, grads_i).
    float64; rtol 1e-10 covers only the different summation order."""
    rng = np.random.default_rng(1)
    config = charmodel.ModelConfig(vocab_size=7, cell=cell, hidden_size=5, num_layers=2)
    params = charmodel.init_params(config, rng, dtype=np.float64)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in params.items()}  # nonzero biases
    seqs = [rng.integers(0, 7, size=n) for n in (6, 2, 4)]
    tgts = [rng.integers(0, 7, size=len(s)) for s in seqs]
    ids, mask = pad_sequences(seqs)
    targets, _ = pad_sequences(tgts)
    state0 = charmodel.zero_state(config, 3, np.float64)
    loss, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, state0, mask)
    total_loss, total_grads = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    for s, t in zip(seqs, tgts, strict=True):
        l_i, g_i, _ = charmodel.loss_and_grads(params, config, s[:, None], t[:, None],
                                               charmodel.zero_state(config, 1, np.float64))
        total_loss += l_i * len(s)
        for k in total_grads:
            total_grads[k] += g_i[k] * len(s)
    M = mask.sum()
    assert loss * M == pytest.approx(total_loss, rel=1e-10)
    for k in params:
        np.testing.assert_allclose(grads[k] * M, total_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_state_carried_between_windows_continues_the_sequence(cell):
    """Two windows, the second started from the first's final state, give exactly the logits of one long
    window: carrying the state is what makes truncated BPTT see the whole text going forward."""
    rng = np.random.default_rng(2)
    config = charmodel.ModelConfig(vocab_size=9, cell=cell, hidden_size=6, num_layers=2)
    params = charmodel.init_params(config, rng, dtype=np.float64)
    ids = rng.integers(0, 9, size=(10, 3))
    whole, _, _ = charmodel.forward(params, config, ids, charmodel.zero_state(config, 3, np.float64))
    first, state, _ = charmodel.forward(params, config, ids[:4], charmodel.zero_state(config, 3, np.float64))
    second, _, _ = charmodel.forward(params, config, ids[4:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12)
    reset, _, _ = charmodel.forward(params, config, ids[4:], charmodel.zero_state(config, 3, np.float64))
    assert not np.allclose(reset, second)  # a reset state would give different predictions


def test_dropout_is_off_without_a_generator():
    """Evaluation and sampling call forward without a dropout Generator: the output is deterministic and
    equals a model with dropout 0; training (with a Generator) changes it."""
    rng = np.random.default_rng(3)
    config = charmodel.ModelConfig(vocab_size=9, cell="lstm", hidden_size=6, num_layers=2, dropout=0.5)
    params = charmodel.init_params(config, rng)
    ids = rng.integers(0, 9, size=(5, 2))
    no_dropout = charmodel.ModelConfig(vocab_size=9, cell="lstm", hidden_size=6, num_layers=2)
    a, _, _ = charmodel.forward(params, config, ids, charmodel.zero_state(config, 2))
    b, _, _ = charmodel.forward(params, no_dropout, ids, charmodel.zero_state(config, 2))
    c, _, _ = charmodel.forward(params, config, ids, charmodel.zero_state(config, 2), np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_check_params_names_the_mismatch():
    config = charmodel.ModelConfig(vocab_size=5, cell="gru", hidden_size=4)
    params = charmodel.init_params(config, np.random.default_rng(0))
    charmodel.check_params(config, params)
    params["l0.Wh"] = params["l0.Wh"][:, :3]
    with pytest.raises(ValueError, match="l0.Wh"):
        charmodel.check_params(config, params)


def random_params(config, rng):
    """Finite-difference parameters: the model's names and shapes, every entry random and nonzero."""
    return nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("num_layers,dropout", [(1, 0.0), (2, 0.0), (2, 0.3)])
def test_full_model_loss_gradient_matches_finite_differences(cell_name, num_layers, dropout):
    """loss_and_grads: every parameter of the stack and the output layer, masked batch loss, dropout on.

    Dropout draws its mask from a Generator; re-seeding it for every evaluation keeps the mask fixed, so
    the function being differentiated is deterministic."""
    rng = np.random.default_rng(3)
    config = charmodel.ModelConfig(vocab_size=6, cell=cell_name, hidden_size=3, num_layers=num_layers,
                                   dropout=dropout)
    params = random_params(config, rng)
    T, B = 4, 3
    ids, targets = rng.integers(0, 6, size=(T, B)), rng.integers(0, 6, size=(T, B))
    mask = np.ones((T, B))
    mask[2:, 1] = 0.0  # the second sequence is 2 characters long, the rest is padding
    state = [tuple(rng.normal(size=(B, 3)) for _ in range(CELLS[cell_name].n_states)) for _ in range(num_layers)]

    def loss():
        value, _, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask,
                                               np.random.default_rng(7))
        return value

    _, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask, np.random.default_rng(7))
    assert grads.keys() == params.keys()
    for name, value in params.items():
        assert relative_error(grads[name], numerical_gradient(loss, value, EPS)) < BOUND, name
