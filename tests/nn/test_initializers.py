"""Initialisation schemes (initializers.py): each draws what its framework draws, and the knobs reach the model."""

import math

import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.nn.cells import CELLS
from rnnlab.nn.initializers import INIT_SCHEMES, orthogonal
from rnnlab.training.trainer import TrainConfig, Trainer

H, In = 64, 20


def layer(cell, scheme, forget_bias=None, seed=0):
    return CELLS[cell].init(In, H, np.random.default_rng(seed), scheme, forget_bias)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_pytorch_scheme_draws_every_array_uniform_in_one_over_sqrt_h(cell):
    """U(+-1/sqrt(H)) for Wx, Wh and each bias; where rnnlab has one bias for PyTorch's two, it is their
    sum: within +-2/sqrt(H) and with the variance of two uniforms, 2 k^2 / 3 (pooled over 40 layers, at
    least 2,560 draws: the estimate's relative standard deviation is ~2.3 %, so 10 % is over 4 of them)."""
    k = 1 / math.sqrt(H)
    p = layer(cell, "pytorch")
    single = ("Wx", "Wh") + (("b", "bh") if CELLS[cell].recurrent_bias else ())
    if not CELLS[cell].recurrent_weights:
        single = ("Wx", "b")                                                 # no Wh; one bias, as nn.Linear
    for name in single:
        assert np.abs(p[name]).max() <= k and np.abs(p[name]).max() > 0.9 * k, name
    if "b" not in single:
        b = np.concatenate([layer(cell, "pytorch", seed=seed)["b"] for seed in range(40)])
        assert np.abs(b).max() <= 2 * k
        assert np.var(b) == pytest.approx(2 * k * k / 3, rel=0.1)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_keras_scheme_is_glorot_orthogonal_rows_zero_bias_unit_forget_bias(cell):
    G = CELLS[cell].n_gates
    p = layer(cell, "keras")
    assert np.abs(p["Wx"]).max() <= math.sqrt(6 / (In + G * H))
    if CELLS[cell].recurrent_weights:
        np.testing.assert_allclose(p["Wh"] @ p["Wh"].T, np.eye(H), atol=1e-12)   # (H, GH): orthonormal rows
    else:
        assert "Wh" not in p
    expected_b = np.zeros(G * H)
    if CELLS[cell].forget_gate is not None:
        block = CELLS[cell].forget_gate
        expected_b[block * H:(block + 1) * H] = 1.0                          # unit_forget_bias
    np.testing.assert_array_equal(p["b"], expected_b)
    if CELLS[cell].recurrent_bias:
        np.testing.assert_array_equal(p["bh"], 0.0)


def test_blockorth_scheme_has_one_orthogonal_block_per_gate_and_forget_bias_one():
    p = layer("lstm", "blockorth")
    for g in range(4):
        block = p["Wh"][:, g * H:(g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-12)
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])


def test_orthogonal_is_orthonormal_along_its_shorter_side():
    rng = np.random.default_rng(0)
    tall, wide = orthogonal(rng, 12, 5), orthogonal(rng, 5, 12)
    np.testing.assert_allclose(tall.T @ tall, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(wide @ wide.T, np.eye(5), atol=1e-12)


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_forget_bias_sets_only_the_lstm_forget_slice(scheme):
    plain, set_ = layer("lstm", scheme), layer("lstm", scheme, forget_bias=2.5)
    np.testing.assert_array_equal(set_["b"][H:2 * H], 2.5)
    np.testing.assert_array_equal(np.delete(set_["b"], np.s_[H:2 * H]), np.delete(plain["b"], np.s_[H:2 * H]))
    for name in ("Wx", "Wh"):
        np.testing.assert_array_equal(set_[name], plain[name])


@pytest.mark.parametrize("cell", ["rnn", "gru", "mingru"])
def test_forget_bias_on_a_cell_without_forget_gate_is_an_error(cell):
    with pytest.raises(RnnlabError, match="LSTM and minLSTM only"):
        layer(cell, "rnnlab", forget_bias=1.0)


def test_unknown_scheme_names_the_choices():
    with pytest.raises(RnnlabError, match="rnnlab, pytorch, keras"):
        layer("lstm", "xavier")


def test_train_config_init_and_forget_bias_reach_the_parameters():
    trainer = Trainer(TrainConfig(dataset="dinos", cell="lstm", hidden_size=8, num_layers=2, init="keras",
                                  forget_bias=3.0))
    for k in range(2):
        b, Wh = trainer.params[f"l{k}.b"], trainer.params[f"l{k}.Wh"]
        np.testing.assert_array_equal(b[8:16], 3.0)
        np.testing.assert_allclose(Wh @ Wh.T, np.eye(8), atol=1e-5)         # float32


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_rnnlab_scheme_is_keras_without_the_unit_forget_bias(cell):
    """The default draws exactly Keras' weights from the same Generator; only the LSTM forget slice differs
    (0 instead of 1), so `--init keras --forget_bias 0` reproduces `--init rnnlab` (docs/results.md)."""
    forget_bias = None if CELLS[cell].forget_gate is None else 0.0
    ours, keras = layer(cell, "rnnlab"), layer(cell, "keras", forget_bias=forget_bias)
    assert ours.keys() == keras.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], keras[name])
