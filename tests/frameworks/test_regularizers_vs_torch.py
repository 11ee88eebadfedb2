"""The torch twin of the regularisers (frameworks/torch_regularizers.py) follows the NumPy engine's run.

Both engines start from the same float64 weights (random nonzero biases) and the same dropout Generator
seed; the torch engine draws its masks with the NumPy engine's own calls (``model.draw_masks``), so after
ten Adam steps on padded batches the parameters agree to float64 round-off (atol 1e-10: ten steps of
Adam amplify 1e-16 differences in summation order by at most a few orders of magnitude)."""

import numpy as np
import pytest

from rnnlab.data.batches import Batch
from rnnlab.nn import model as charmodel
from rnnlab.nn.optim import Adam
from rnnlab.training.engines import EngineSettings, NumpyEngine

torch = pytest.importorskip("torch")
from rnnlab.frameworks.torch import TorchCharRNN, TorchEngine, char_model, device_forward  # noqa: E402
from rnnlab.frameworks.torch_regularizers import TorchRegularizedRNN  # noqa: E402

REGULARIZERS = {
    "dropout_input": dict(dropout_input=0.3),
    "dropout_output": dict(dropout_output=0.3),
    "locked_dropout": dict(dropout=0.3, locked_dropout=True),
    "weight_drop": dict(weight_drop=0.3),
    "zoneout": dict(zoneout=0.2, zoneout_cell=0.4),
    "ar_tar": dict(ar=2.0, tar=1.0),
    "all": dict(dropout=0.3, locked_dropout=True, dropout_input=0.2, dropout_output=0.3, weight_drop=0.3,
                zoneout=0.2, zoneout_cell=0.4, ar=1.0, tar=1.0),
}


def engines(config, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in charmodel.init_params(config, rng, np.float64).items()}
    settings = EngineSettings(clip_value=None, clip_norm=5.0, device="cpu")
    numpy_engine = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, Adam(lr=0.01), settings,
                               np.random.default_rng(3))
    torch_engine = TorchEngine(config, {k: v.copy() for k, v in params.items()}, Adam(lr=0.01), settings,
                               np.random.default_rng(3))
    return numpy_engine, torch_engine, rng


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_ten_steps_of_the_torch_engine_follow_the_numpy_engine(cell, name):
    config = charmodel.ModelConfig(vocab_size=7, cell=cell, hidden_size=5, num_layers=2, **REGULARIZERS[name])
    numpy_engine, torch_engine, rng = engines(config)
    assert isinstance(torch_engine.model, TorchRegularizedRNN)
    state_a, state_b = numpy_engine.zero_state(4), torch_engine.zero_state(4)
    for _ in range(10):
        ids = rng.integers(0, 7, size=(6, 4))
        mask = np.ones((5, 4))
        mask[3:, 1] = 0.0
        batch = Batch(ids[:-1], ids[1:], mask, False, 0)
        loss_a, state_a = numpy_engine.train_step(batch, state_a)
        loss_b, state_b = torch_engine.train_step(batch, state_b)
        assert loss_b == pytest.approx(loss_a, rel=1e-10)
    for key, value in numpy_engine.numpy_params().items():
        np.testing.assert_allclose(torch_engine.numpy_params()[key], value, rtol=0, atol=1e-10, err_msg=key)
    for layer_a, layer_b in zip(state_a, torch_engine.state_to_numpy(state_b), strict=True):
        for a, b in zip(layer_a, layer_b, strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
    loss_a, _ = numpy_engine.evaluate(batch, numpy_engine.zero_state(4))
    loss_b, _ = torch_engine.evaluate(batch, torch_engine.zero_state(4))
    assert loss_b == pytest.approx(loss_a, rel=1e-10)
    assert numpy_engine.dropout_rng.bit_generator.state == torch_engine.dropout_rng.bit_generator.state


def test_sampling_a_zoneout_model_on_torch_uses_its_expectation():
    """``rnnlab sample --engine torch`` runs the model through device_forward: a zoneout model's logits are
    NumPy's, step by step with the state carried (float64, rtol 1e-12)."""
    config = charmodel.ModelConfig(vocab_size=6, cell="lstm", hidden_size=4, num_layers=2, zoneout=0.3,
                                   zoneout_cell=0.5)
    rng = np.random.default_rng(1)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in charmodel.init_params(config, rng, np.float64).items()}
    forward = device_forward(params, config, "cpu")
    ids = rng.integers(0, 6, size=(5, 2))
    expected, _, _ = charmodel.forward(params, config, ids, charmodel.zero_state(config, 2, np.float64))
    state, got = None, []
    for t in range(5):
        logits, state = forward(ids[t:t + 1], state)
        got.append(logits[0])
    np.testing.assert_allclose(np.stack(got), expected, rtol=1e-12)


def test_plain_dropout_keeps_the_fused_modules():
    """--dropout alone (no regulariser of regularizers.py) keeps nn.LSTM's fused kernel and torch's masks."""
    config = charmodel.ModelConfig(vocab_size=6, cell="lstm", hidden_size=4, num_layers=2, dropout=0.3)
    model = char_model(config, torch.float64)
    assert type(model) is TorchCharRNN
