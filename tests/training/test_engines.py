"""training/engines.py: an engine gets only the settings it needs (EngineSettings), the registry names the
engines --engine offers, and the NumPy engine's step is nn.model.train_step's, whole or in shards."""

import numpy as np
import pytest

from rnnlab.data.batches import Batch
from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.nn.optim import Adam
from rnnlab.training.config import ENGINES, TrainConfig
from rnnlab.training.engines import ENGINE_MODULES, EngineSettings, NumpyEngine, engine_class


def test_engine_settings_take_exactly_their_fields_from_a_run():
    settings = EngineSettings.of(TrainConfig(clip_value=None, clip_norm=2.0, threads=1))
    assert settings == EngineSettings(clip_value=None, clip_norm=2.0, threads=1, device="auto", precision="fp32")


def test_the_registry_offers_exactly_the_engines_of_the_setting():
    assert set(ENGINE_MODULES) == set(ENGINES)
    assert engine_class("numpy") is NumpyEngine
    with pytest.raises(RnnlabError, match="unknown engine"):
        engine_class("jax")


@pytest.mark.parametrize("shard_rows", [None, 1], ids=["unsplit", "two-shards"])
def test_the_numpy_engine_step_is_the_models_train_step(shard_rows):
    """float64, clipping on: the engine (unsplit, or 2 shards of 2 rows on 2 threads) gives
    nn.model.train_step's loss, parameters and optimizer state to round-off."""
    rng = np.random.default_rng(0)
    config = charmodel.ModelConfig(vocab_size=7, cell="gru", hidden_size=5, num_layers=2)
    params = charmodel.init_params(config, rng, np.float64)
    ids, targets = rng.integers(0, 7, size=(6, 4)), rng.integers(0, 7, size=(6, 4))
    batch = Batch(ids, targets, None, 0, False)
    settings = EngineSettings(clip_value=0.5, clip_norm=1.0, threads=2)
    engine = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, Adam(lr=0.01), settings, None,
                         shard_rows=shard_rows)
    loss, _ = engine.train_step(batch, engine.zero_state(4))
    reference, opt_state = {k: v.copy() for k, v in params.items()}, Adam(lr=0.01).init(params)
    expected, _ = charmodel.train_step(reference, config, Adam(lr=0.01), opt_state, ids, targets,
                                       charmodel.zero_state(config, 4, np.float64), None, 0.5, 1.0)
    assert loss == pytest.approx(expected, rel=1e-12)
    for name, value in reference.items():
        np.testing.assert_allclose(engine.params[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
