"""The character model in TensorFlow 2 / Keras 3: one-hot -> SimpleRNN / LSTM / GRU stack -> Dense.

    ids (B, T) --OneHot--> (B, T, V) --l0--> (B, T, H) [--Dropout--> l1 ...] --Dense "output"--> logits (B, T, V)

Keras is batch-first; the engines transpose rnnlab's time-first (T, B) batches at the boundary. Dropout
sits on every recurrent layer's output but the last's, training only (inverted, as in rnnlab). The same
layers are assembled two ways: :func:`build_keras_model` (functional: ``[ids, *initial states] ->
[logits, *final states]``) and :class:`TFCharRNN` (a ``keras.Model`` subclass with its own ``train_step``
and ``generate``). The optimizer mapping and the three training engines are in ``keras_engines.py``.

Weight conversion, the only place the two layouts meet (:func:`to_keras` / :func:`from_keras`), per layer
``l{k}`` a list [kernel, recurrent_kernel, bias] and for "output" [kernel, bias]:

==================  =========================  =========================================================
rnnlab              Keras                      how
==================  =========================  =========================================================
l{k}.Wx (In, G*H)   kernel (In, G*H)           gate blocks reordered (KERAS_GATES): GRU (r,z,n)->(z,r,h)
l{k}.Wh (H, G*H)    recurrent_kernel (H, G*H)  same reordering
l{k}.b  (G*H,)      bias (G*H,)                RNN, LSTM: same reordering (LSTM: identity)
l{k}.b, l{k}.bh     bias (2, 3H)               GRU(reset_after=True): row 0 input bias, row 1 recurrent
Wy (H, V), by       output kernel, bias        as is
==================  =========================  =========================================================

Verified in keras/src/layers/rnn/gru.py (Keras 3.15): the kernel is split [:, :H] -> z, [:, H:2H] -> r,
[:, 2H:] -> candidate; the (2, 3H) bias is (input bias, recurrent bias); h = z h_prev + (1 - z) hh, the
same function as rnnlab's GRU with z the update gate.

float64. Keras keeps a float learning rate in a float32 variable, ``ops.cast(0.9, "float64")`` goes through
float32 (0.8999999761...; Keras does this to SGD's momentum and Adam's betas), losses compute in float32
unless given a dtype, and ``fit`` casts float64 NumPy inputs to float32. So the engines read the learning
rate from a float64 variable through a callable (which also lets ``set_learning_rate`` reach compiled
steps), pass hyper-parameters as ``np.float64``, give keras-fit's loss the model's dtype and feed ``fit`` a
``tf.data.Dataset``: a float64 model then follows rnnlab's float64 trajectory to rounding.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from ..errors import require
from ..nn.cells import CELLS
from . import KERAS_GATES, RNNLAB_GATES, reorder_gates

KERAS_LAYERS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
# Spelled out rather than left to defaults: these are what make each layer compute rnnlab's cell.
KERAS_CELL_OPTIONS = {
    "rnn": {"activation": "tanh"},
    "lstm": {"activation": "tanh", "recurrent_activation": "sigmoid"},
    "gru": {"activation": "tanh", "recurrent_activation": "sigmoid", "reset_after": True},
}


# --------------------------------------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------------------------------------

def _to_keras_gates(array: np.ndarray, cell: str) -> np.ndarray:
    return reorder_gates(array, RNNLAB_GATES[cell], KERAS_GATES[cell], axis=-1)


def _from_keras_gates(array: np.ndarray, cell: str) -> np.ndarray:
    return reorder_gates(array, KERAS_GATES[cell], RNNLAB_GATES[cell], axis=-1)


def to_keras(params: dict, config) -> dict:
    """rnnlab params -> {layer name: [weight arrays in Keras' order]} for ``l0``.. and ``output``."""
    weights = {}
    for k in range(config.num_layers):
        bias = _to_keras_gates(params[f"l{k}.b"], config.cell)                        # (G*H,)
        if config.cell == "gru":
            bias = np.stack([bias, _to_keras_gates(params[f"l{k}.bh"], config.cell)])  # (2, 3H)
        weights[f"l{k}"] = [_to_keras_gates(params[f"l{k}.Wx"], config.cell),      # (In, G*H)
                            _to_keras_gates(params[f"l{k}.Wh"], config.cell),      # (H, G*H)
                            bias]
    weights["output"] = [params["Wy"], params["by"]]                                # (H, V), (V,)
    return weights


def from_keras(weights: dict, config) -> dict:
    """{layer name: [kernel, recurrent_kernel, bias] / [kernel, bias]} -> rnnlab params."""
    params = {}
    for k in range(config.num_layers):
        kernel, recurrent_kernel, bias = (np.asarray(w) for w in weights[f"l{k}"])
        params[f"l{k}.Wx"] = _from_keras_gates(kernel, config.cell)                 # (In, G*H)
        params[f"l{k}.Wh"] = _from_keras_gates(recurrent_kernel, config.cell)       # (H, G*H)
        if config.cell == "gru":
            params[f"l{k}.b"], params[f"l{k}.bh"] = (_from_keras_gates(row, config.cell) for row in bias)
        else:
            params[f"l{k}.b"] = _from_keras_gates(bias, config.cell)
    params["Wy"], params["by"] = (np.asarray(w) for w in weights["output"])
    return {name: np.ascontiguousarray(value) for name, value in params.items()}


def weight_layer_names(config) -> list:
    return [f"l{k}" for k in range(config.num_layers)] + ["output"]


def get_keras_weights(model: keras.Model, config) -> dict:
    return {name: model.get_layer(name).get_weights() for name in weight_layer_names(config)}


def set_keras_weights(model: keras.Model, weights: dict) -> None:
    for name, arrays in weights.items():
        layer = model.get_layer(name)
        layer.set_weights([np.asarray(a, dtype=layer.variable_dtype) for a in arrays])


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------

class OneHot(layers.Layer):
    """ids (B, T) int -> (B, T, V) one-hot; ``one_hot @ kernel`` is exactly rnnlab's row lookup Wx[id]."""

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, ids):
        return ops.one_hot(ids, self.depth, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


def char_layers(config, dtype: str = "float32", dropout_seed: int | None = None) -> dict:
    """The layers of the model, named as the weight conversion expects (``l{k}``, ``output``)."""
    V, H, L = config.vocab_size, config.hidden_size, config.num_layers
    use_dropout = config.dropout > 0 and L > 1
    return {
        "one_hot": OneHot(V, dtype=dtype, name="one_hot"),
        "recurrent": [KERAS_LAYERS[config.cell](H, return_sequences=True, return_state=True, name=f"l{k}",
                                                dtype=dtype, **KERAS_CELL_OPTIONS[config.cell])
                      for k in range(L)],
        "dropout": [layers.Dropout(config.dropout, seed=None if dropout_seed is None else dropout_seed + k,
                                   name=f"dropout{k}", dtype=dtype) for k in range(L - 1)] if use_dropout else [],
        "output": layers.Dense(V, name="output", dtype=dtype),
    }


def run_char_layers(parts: dict, ids, states, training=None):
    """ids (B, T), flat states [l0 h, (l0 c), l1 h, ...] each (B, H) -> (logits (B, T, V), final states)."""
    n = len(states) // len(parts["recurrent"])
    x = parts["one_hot"](ids)                                                  # (B, T, V)
    finals = []
    for k, layer in enumerate(parts["recurrent"]):
        x, *final = layer(x, initial_state=list(states[k * n:(k + 1) * n]), training=training)  # (B, T, H)
        finals += final
        if k < len(parts["dropout"]):
            x = parts["dropout"][k](x, training=training)                     # (B, T, H)
    return parts["output"](x), finals                                          # (B, T, V)


def build_keras_model(config, dtype: str = "float32", dropout_seed: int | None = None) -> keras.Model:
    """Functional model: [ids (B, T) int32, *initial states (B, H)] -> [logits (B, T, V), *final states]."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    states = [keras.Input((config.hidden_size,), dtype=dtype, name=f"l{k}_state{s}")
              for k in range(config.num_layers) for s in range(CELLS[config.cell].n_states)]
    logits, finals = run_char_layers(char_layers(config, dtype, dropout_seed), ids, states)
    return keras.Model([ids, *states], [logits, *finals], name="char_rnn")


def masked_cross_entropy(logits, targets, mask):
    """Mean -log p[target] over the real characters (mask 1), as rnnlab.losses; 0 when there are none."""
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)   # (B, T)
    return tf.math.divide_no_nan(tf.reduce_sum(nll * mask), tf.reduce_sum(mask))


def clip_gradients(grads: list, clip_value: float | None, clip_norm: float | None) -> list:
    """rnnlab's order and formulas (optim.py): per-element clip, then scale by clip_norm / ||g|| when the
    global norm ||g|| exceeds clip_norm."""
    if clip_value is not None:
        grads = [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]
    if clip_norm is not None:
        norm = tf.linalg.global_norm(grads)
        scale = tf.where(norm > clip_norm, clip_norm / norm, tf.ones_like(norm))
        grads = [g * scale for g in grads]
    return grads


def apply_if_finite(optimizer, loss, grads: list, variables: list, clip_value, clip_norm):
    """Clip and apply ``grads`` unless the loss or a gradient is nan/inf (then leave everything, optimizer
    moments included, as it was -- as rnnlab's engine does) -> a boolean tensor: whether it applied them."""
    finite = tf.math.is_finite(loss) & tf.math.is_finite(tf.linalg.global_norm(grads))

    def update():
        optimizer.apply(clip_gradients(grads, clip_value, clip_norm), variables)
        return tf.constant(True)

    return tf.cond(finite, update, lambda: tf.constant(False))


class TFCharRNN(keras.Model):
    """rnnlab's CharModel as a ``keras.Model`` subclass.

    ``call((ids, states))`` -> (logits, final states); ``train_step`` is one optimisation step with the
    masked loss and rnnlab's clipping (``fit`` calls it too, given ((ids, states), targets, mask) batches);
    ``generate`` samples text.
    """

    def __init__(self, model_config, dtype: str = "float32", dropout_seed: int | None = None,
                 clip_value: float | None = None, clip_norm: float | None = None, **kwargs):
        super().__init__(dtype=dtype, name=kwargs.pop("name", "tf_char_rnn"), **kwargs)
        self.model_config = model_config
        self.parts = char_layers(model_config, dtype, dropout_seed)
        self.clip_value, self.clip_norm = clip_value, clip_norm
        self((np.zeros((1, 1), np.int32), self.zero_state(1)))   # create the weights now

    def zero_state(self, batch_size: int) -> tuple:
        c = self.model_config
        return tuple(np.zeros((batch_size, c.hidden_size), self.variable_dtype)
                     for _ in range(c.num_layers * CELLS[c.cell].n_states))

    def call(self, inputs, training=False):
        ids, states = inputs
        return run_char_layers(self.parts, ids, states, training=training)

    def train_step(self, data):
        """data = ((ids (B, T), states), targets (B, T), mask (B, T)) -> {"loss", "state", "applied"}."""
        (ids, states), targets, mask = data
        with tf.GradientTape() as tape:
            logits, final = self((ids, states), training=True)                # (B, T, V)
            loss = masked_cross_entropy(logits, targets, mask)
        grads = tape.gradient(loss, self.trainable_variables)
        applied = apply_if_finite(self.optimizer, loss, grads, self.trainable_variables,
                                  self.clip_value, self.clip_norm)
        return {"loss": loss, "state": final, "applied": applied}

    def generate(self, prime_ids, length: int, temperature: float = 1.0, greedy: bool = False,
                 seed: int | None = None) -> list:
        """Feed ``prime_ids``, then draw ``length`` ids from softmax(logits / temperature) one at a time,
        each fed back in (argmax with ``greedy``). Returns the new ids."""
        require(length > 0, f"sample length must be > 0, got {length}")
        require(temperature > 0, f"--temperature must be > 0, got {temperature}")
        require(len(prime_ids) > 0, "generate needs at least one prime id")
        seed_generator = keras.random.SeedGenerator(seed)
        logits, state = self((np.asarray(prime_ids, np.int32)[None, :], self.zero_state(1)))  # (1, T, V)
        out = []
        for _ in range(length):
            last = logits[:, -1, :]                                            # (1, V)
            if greedy:
                idx = int(ops.argmax(last, axis=-1)[0])
            else:
                idx = int(keras.random.categorical(last / temperature, 1, seed=seed_generator)[0, 0])
            out.append(idx)
            logits, state = self((np.array([[idx]], np.int32), state))
        return out
