"""Keras cross-checks: the same weights give the same logits, loss, gradients, optimizer trajectories and
greedy samples as rnnlab's NumPy model, for every cell, 1 and 2 layers, a padded batch and a nonzero
initial state.

Everything runs in float64: Keras layers take ``dtype="float64"``, and rnnlab.frameworks.keras keeps
Keras from rounding hyper-parameters through float32 (see its docstring). What differs is the order of
additions in matrix products and TensorFlow's fused softmax cross-entropy, ~1e-16 relative per operation;
observed differences are ~1e-16..1e-15. rtol 1e-10 / atol 1e-12 leaves a margin of 1e4 and is far below
what a real bug (a swapped gate block, a missing bias row) produces: 1e-3..1e-1.
"""

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from crosscheck import (  # noqa: E402
    BLOCK_CONFIGS,
    CONFIGS,
    NO_CLIP,
    TOL,
    B,
    H,
    T,
    V,
    assert_dicts_close,
    assert_optimizer_trajectories_match,
    assert_option_refused_in_one_line,
    assert_resumes_numpy_trajectory,
    config_id,
    numpy_grads,
    random_batch,
    random_params,
    random_state,
)
from rnnlab.data.batches import Batch  # noqa: E402
from rnnlab.data.text import CharTokenizer  # noqa: E402
from rnnlab.errors import RnnlabError, TrainingDiverged  # noqa: E402
from rnnlab.frameworks import keras as rkeras  # noqa: E402
from rnnlab.frameworks import keras_engines as rkeng  # noqa: E402
from rnnlab.generate.sampling import sample  # noqa: E402
from rnnlab.nn import model as charmodel  # noqa: E402
from rnnlab.nn.cells import CELLS  # noqa: E402
from rnnlab.nn.losses import softmax_cross_entropy  # noqa: E402
from rnnlab.nn.optim import SGD, Adagrad, Adam, Momentum, RMSProp  # noqa: E402
from rnnlab.training.engines import NumpyEngine  # noqa: E402

pytestmark = pytest.mark.slow      # imports TensorFlow

tf.get_logger().setLevel("ERROR")   # every test builds new tf.functions: retracing warnings are expected


@functools.cache
def functional_model(config):
    """One float64 functional model per config (building one costs ~0.2 s); tests set its weights."""
    return rkeras.build_keras_model(config, "float64")


def keras_model(config, params):
    model = functional_model(config)
    rkeras.set_keras_weights(model, rkeras.to_keras(params, config))
    return model


def keras_inputs(batch, state):
    """rnnlab's (T, B) ids and per-layer state tuples -> Keras' [ids (B, T), *flat states]."""
    return [batch.ids.T.astype(np.int32), *(part for layer in state for part in layer)]


# ---- weights ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_numpy_keras_numpy_round_trip_is_exact(config):
    params = random_params(config)
    model = keras_model(config, params)
    for back in (rkeras.from_keras(rkeras.to_keras(params, config), config),
                 rkeras.from_keras(rkeras.get_keras_weights(model, config), config)):
        assert back.keys() == params.keys()
        for name in params:
            np.testing.assert_array_equal(back[name], params[name], err_msg=name)


def test_gru_layout_is_update_gate_first_with_a_two_row_bias():
    """Keras GRU(reset_after=True): kernel blocks (z, r, h), bias rows (input, recurrent) -- checked
    against Keras' own GRU: only the update-gate block of rnnlab's Wx lands in Keras' first block."""
    config = charmodel.ModelConfig(V, "gru", H, 1)
    params = {name: np.zeros_like(value) for name, value in random_params(config).items()}
    params["l0.Wx"][:, H:2 * H] = 1.0             # rnnlab's z block
    params["l0.bh"][:] = np.arange(3 * H)
    kernel, _, bias = rkeras.to_keras(params, config)["l0"]
    assert (kernel[:, :H] == 1).all() and (kernel[:, H:] == 0).all()
    assert bias.shape == (2, 3 * H) and (bias[0] == 0).all()
    np.testing.assert_array_equal(bias[1], np.r_[np.arange(H, 2 * H), np.arange(H), np.arange(2 * H, 3 * H)])
    layer = functional_model(config).get_layer("l0")
    assert layer.cell.reset_after and [tuple(w.shape) for w in layer.weights] == [(V, 3 * H), (H, 3 * H), (2, 3 * H)]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_keras_initialised_model_converts_to_the_same_function(cell):
    """Keras' own weights (random biases too) converted to rnnlab compute the same logits: keras -> numpy
    is right on its own, not only as the inverse of numpy -> keras."""
    config = charmodel.ModelConfig(V, cell, H, 2)
    model = functional_model(config)
    rng = np.random.default_rng(5)
    for name in rkeras.weight_layer_names(config):
        layer = model.get_layer(name)
        layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.get_weights()])
    batch, state = random_batch(), random_state(config)
    expected = model(keras_inputs(batch, state))[0].numpy().transpose(1, 0, 2)            # (T, B, V)
    params = rkeras.from_keras(rkeras.get_keras_weights(model, config), config)
    np.testing.assert_allclose(charmodel.forward(params, config, batch.ids, state)[0], expected, **TOL)


# ---- forward and gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_logits_final_state_and_masked_loss_match(config):
    params, batch, state = random_params(config), random_batch(), random_state(config)
    logits, final, _ = charmodel.forward(params, config, batch.ids, state)
    expected_logits, *expected_final = keras_model(config, params)(keras_inputs(batch, state))
    np.testing.assert_allclose(logits, expected_logits.numpy().transpose(1, 0, 2), **TOL)
    for part, expected in zip((part for layer in final for part in layer), expected_final, strict=True):
        np.testing.assert_allclose(part, expected.numpy(), **TOL)
    expected_loss = rkeras.masked_cross_entropy(expected_logits, batch.targets.T.astype(np.int32), batch.mask.T)
    assert softmax_cross_entropy(logits, batch.targets, batch.mask)[0] == pytest.approx(float(expected_loss), rel=1e-12)


@pytest.mark.parametrize("upstream", ["masked loss", "random dlogits"])
@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_every_parameter_gradient_matches_gradient_tape(config, upstream):
    """From a nonzero initial state; upstream either the masked loss or a random dL/dlogits."""
    params, batch, state = random_params(config), random_batch(), random_state(config)
    model = keras_model(config, params)
    dy = np.random.default_rng(3).standard_normal((T, B, V))
    with tf.GradientTape() as tape:
        logits = model(keras_inputs(batch, state))[0]                                  # (B, T, V)
        if upstream == "masked loss":
            loss = rkeras.masked_cross_entropy(logits, batch.targets.T.astype(np.int32), batch.mask.T)
        else:
            loss = tf.reduce_sum(logits * dy.transpose(1, 0, 2))
    weights = model.trainable_variables
    grads = dict(zip((id(v) for v in weights), tape.gradient(loss, weights), strict=True))
    per_layer = {name: [grads[id(w)].numpy() for w in model.get_layer(name).weights]
                 for name in rkeras.weight_layer_names(config)}
    if upstream == "masked loss":
        expected = charmodel.loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask)[1]
    else:
        expected = numpy_grads(params, config, batch.ids, state, dy)
    assert_dicts_close(rkeras.from_keras(per_layer, config), expected)


# ---- optimizers ------------------------------------------------------------------------------------------

# rnnlab options that are keras.optimizers' conventions (verified in keras/src/optimizers/*.py, Keras 3.15):
#   SGD(momentum): m = mu m - lr g; p += m        -> Momentum(form="torch") at a constant lr (m = -lr buf)
#   RMSprop: p -= lr g / sqrt(s + eps)             -> eps_inside_sqrt=True   (Keras default eps 1e-7, rho 0.9)
#   Adam: p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)   -> eps_hat=True (default eps 1e-7)
#   Adagrad: G starts at 0.1; p -= lr g / sqrt(G + eps)   -> initial_accumulator=0.1, eps_inside_sqrt=True
KERAS_OPTIMIZERS = {
    "sgd": SGD(lr=0.5),
    "momentum": Momentum(lr=0.1, mu=0.9, form="torch"),
    "momentum-ema": Momentum(lr=0.5, mu=0.8, form="ema"),   # Keras SGD with lr (1 - mu), see keras.py
    "rmsprop": RMSProp(lr=0.01, rho=0.9, eps=1e-7, eps_inside_sqrt=True),
    "adam": Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-7, eps_hat=True),
    "adagrad": Adagrad(lr=0.1, eps=1e-7, initial_accumulator=0.1, eps_inside_sqrt=True),
}


@pytest.mark.parametrize("name", sorted(KERAS_OPTIMIZERS))
def test_ten_steps_follow_keras_optimizers(name):
    """10 steps of KerasTapeEngine (keras.optimizers) and NumpyEngine (rnnlab.nn.optim) on a 2-layer GRU:
    the same parameters after every step, and the same optimizer moments at the end."""
    config = charmodel.ModelConfig(V, "gru", H, 2)
    assert_optimizer_trajectories_match(rkeng.KerasTapeEngine, config, KERAS_OPTIMIZERS[name], 10)


@pytest.mark.parametrize("config", [c for c in BLOCK_CONFIGS if c.cell in ("lstm", "mingru", "minlstm")],
                         ids=config_id)
def test_ten_adam_steps_of_min_cells_and_the_residual_block_follow_keras(config):
    """The block around the LSTM and the min cells (the plain min cells too) through KerasTapeEngine."""
    assert_optimizer_trajectories_match(rkeng.KerasTapeEngine, config, KERAS_OPTIMIZERS["adam"], 10)
    plain = charmodel.ModelConfig(V, config.cell, H, 2)
    if config.cell != "lstm" and config.norm == "rms":
        assert_optimizer_trajectories_match(rkeng.KerasTapeEngine, plain, KERAS_OPTIMIZERS["adam"], 10)


@pytest.mark.parametrize("optimizer, option", [(RMSProp(), "eps_inside_sqrt"), (Adam(), "eps_hat"),
                                               (Adagrad(), "eps_inside_sqrt")])
def test_an_option_keras_cannot_reproduce_is_a_one_line_error(optimizer, option):
    assert_option_refused_in_one_line(rkeng.KerasTapeEngine, optimizer, option)


def test_resuming_from_a_numpy_optimizer_state_continues_its_trajectory():
    """load_state: Keras picks up rnnlab's Adam moments and step count mid-run (checkpoint resume)."""
    config = charmodel.ModelConfig(V, "lstm", H, 2)
    assert_resumes_numpy_trajectory(rkeng.KerasTapeEngine, config, KERAS_OPTIMIZERS["adam"])


def test_scheduled_learning_rate_reaches_the_compiled_step():
    """set_learning_rate changes the rate inside the already-traced tf.function (Adam: same trajectory);
    Keras momentum cannot follow a changing rate and says so."""
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    optimizer, params = KERAS_OPTIMIZERS["adam"], random_params(config)
    engine = rkeng.KerasTapeEngine(config, params, optimizer, NO_CLIP, np.random.default_rng(0))
    reference = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, optimizer, NO_CLIP, None)
    state, ref_state = engine.zero_state(B), reference.zero_state(B)
    for lr in (0.05, 0.02, 0.001):
        engine.set_learning_rate(lr)
        reference.set_learning_rate(lr)
        _, state = engine.train_step(random_batch(), state)
        _, ref_state = reference.train_step(random_batch(), ref_state)
    assert_dicts_close(engine.numpy_params(), reference.params, rtol=1e-9, atol=1e-12)
    momentum = rkeng.KerasTapeEngine(config, params, Momentum(), NO_CLIP, np.random.default_rng(0))
    with pytest.raises(RnnlabError, match="lr_schedule constant"):
        momentum.set_learning_rate(0.01)


def test_a_non_finite_loss_stops_before_the_update():
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    params = random_params(config)
    params["by"][0] = np.inf
    for engine_class in (rkeng.KerasTapeEngine, rkeng.KerasClassEngine):
        engine = engine_class(config, params, SGD(), NO_CLIP, np.random.default_rng(0))
        with pytest.raises(TrainingDiverged, match="not finite"):
            engine.train_step(random_batch(), engine.zero_state(B))
        for name, value in engine.numpy_params().items():
            np.testing.assert_array_equal(value, params[name])
        assert engine.optimizer_state()["step"] == 0


# ---- sampling --------------------------------------------------------------------------------------------

def test_keras_trained_model_converted_to_numpy_samples_the_same_greedy_text():
    """A few Keras steps (TFCharRNN's own train_step), then rnnlab's sampler on the converted weights and
    TFCharRNN.generate write the same greedy text."""
    tokenizer = CharTokenizer.fit("abcdef\n")
    config = charmodel.ModelConfig(tokenizer.vocab_size, "lstm", 8, 2)
    engine = rkeng.KerasClassEngine(config, random_params(config), KERAS_OPTIMIZERS["adam"], NO_CLIP,
                                     np.random.default_rng(0))
    ids = tokenizer.encode("abcdef\nabcdef\nfedcba\n")
    batch = Batch(np.stack([ids[:-1]] * 2, axis=1), np.stack([ids[1:]] * 2, axis=1), None, True, 0)
    state = engine.zero_state(2)
    for _ in range(5):
        _, state = engine.train_step(batch, state)
    generated = engine.model.generate(tokenizer.encode("ab"), 30, greedy=True)
    text = sample(engine.numpy_params(), config, tokenizer, np.random.default_rng(0), length=30, greedy=True,
                  prime="ab")
    assert text == "ab" + "".join(tokenizer.chars[i] for i in generated)


def test_generate_samples_with_temperature_reproducibly():
    config = charmodel.ModelConfig(V, "gru", H, 1)
    model = rkeras.TFCharRNN(config, "float64")
    rkeras.set_keras_weights(model, rkeras.to_keras(random_params(config), config))
    first, again = (model.generate([0, 1], 40, temperature=1.5, seed=3) for _ in range(2))
    assert first == again and set(first) <= set(range(V)) and len(set(first)) > 2
    assert model.generate([0, 1], 20, temperature=1e-4, seed=3) == model.generate([0, 1], 20, greedy=True)
    with pytest.raises(RnnlabError, match="temperature"):
        model.generate([0], 5, temperature=0.0)
