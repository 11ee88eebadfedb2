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
from ..nn.activations import GELU_C, GELU_K
from ..nn.cells import CELLS
from ..nn.norms import EPS
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


def recurrent_to_keras(p: dict, cell: str) -> list:
    """One recurrent layer {Wx, Wh, b[, bh]} -> its Keras weights: [kernel, recurrent_kernel, bias], or
    [kernel, bias] for :class:`MinRNNCell`."""
    if not CELLS[cell].recurrent_weights:
        return [p["Wx"], p["b"]]                                                    # (In, GH), (GH,)
    bias = _to_keras_gates(p["b"], cell)                                            # (G*H,)
    if cell == "gru":
        bias = np.stack([bias, _to_keras_gates(p["bh"], cell)])                     # (2, 3H)
    return [_to_keras_gates(p["Wx"], cell), _to_keras_gates(p["Wh"], cell), bias]  # (In, G*H), (H, G*H)


def recurrent_from_keras(weights: list, cell: str) -> dict:
    """The inverse of :func:`recurrent_to_keras`."""
    weights = [np.asarray(w) for w in weights]
    if not CELLS[cell].recurrent_weights:
        return {"Wx": weights[0], "b": weights[1]}
    kernel, recurrent_kernel, bias = weights
    p = {"Wx": _from_keras_gates(kernel, cell), "Wh": _from_keras_gates(recurrent_kernel, cell)}
    if cell == "gru":
        p["b"], p["bh"] = (_from_keras_gates(row, cell) for row in bias)
    else:
        p["b"] = _from_keras_gates(bias, cell)
    return p


def other_weight_names(config) -> dict:
    """{Keras layer name: the rnnlab parameters of its weights, in Keras' order} for every layer but the
    recurrent ones: the output layer, and the residual block's embedding, norms and feed-forward layers."""
    def norm(prefix):
        return [f"{prefix}g"] + ([f"{prefix}b"] if config.norm == "layer" else [])   # gamma (, beta)

    names = {}
    if config.residual:
        names["emb"] = ["emb"]
        for k in range(config.num_layers):
            names.update({f"l{k}_norm1": norm(f"l{k}.norm1."), f"l{k}_norm2": norm(f"l{k}.norm2."),
                          f"l{k}_ff1": [f"l{k}.ff.W1", f"l{k}.ff.b1"], f"l{k}_ff2": [f"l{k}.ff.W2", f"l{k}.ff.b2"]})
        names["norm"] = norm("norm.")
    names["output"] = ["Wy", "by"]
    return names


def to_keras(params: dict, config) -> dict:
    """rnnlab params -> {layer name: [weight arrays in Keras' order]} for ``l0``.., ``output`` (and the
    residual block's layers)."""
    weights = {}
    for k in range(config.num_layers):
        p = {name[len(f"l{k}."):]: value for name, value in params.items() if name.startswith(f"l{k}.")}
        weights[f"l{k}"] = recurrent_to_keras(p, config.cell)
    weights.update({layer: [params[name] for name in names] for layer, names in other_weight_names(config).items()})
    return weights


def from_keras(weights: dict, config) -> dict:
    """{layer name: its weights in Keras' order} -> rnnlab params."""
    params = {}
    for k in range(config.num_layers):
        layer = recurrent_from_keras(weights[f"l{k}"], config.cell)
        params.update({f"l{k}.{name}": value for name, value in layer.items()})
    for layer, names in other_weight_names(config).items():
        params.update({name: np.asarray(value) for name, value in zip(names, weights[layer], strict=True)})
    return {name: np.ascontiguousarray(value) for name, value in params.items()}


def weight_layer_names(config) -> list:
    return [f"l{k}" for k in range(config.num_layers)] + list(other_weight_names(config))


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


class MinRNNCell(layers.Layer):
    """minGRU / minLSTM (mincells.py) as a Keras RNN cell: x_t (B, In), [h_{t-1}] -> (h_t, [h_t]), with
    h_t = a_t h_{t-1} + b_t and (a_t, b_t) from the step's gates. Weights: kernel (In, GH) = rnnlab's Wx,
    bias (GH,) = b.

    ``keras.layers.RNN`` runs it one step per character, as Keras runs its own LSTM and GRU: the twin checks
    the model, not the speed. (``keras.ops.associative_scan`` would be the parallel form, but on TensorFlow it
    needs the window's length when the graph is built, and the engines take windows of any length.)"""

    def __init__(self, cell: str, units: int, **kwargs):
        super().__init__(**kwargs)
        self.cell, self.units = cell, units
        self.state_size, self.output_size = units, units

    def build(self, input_shape):
        width = CELLS[self.cell].n_gates * self.units
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], width), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(width,), initializer="zeros")

    def call(self, x, states, training=None):
        a, b = KERAS_COEFFICIENTS[self.cell](ops.matmul(x, self.kernel) + self.bias)   # (B, H) each
        h = a * states[0] + b
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "units": self.units}


def _mingru_coefficients(zx):
    zu, h_tilde = ops.split(zx, 2, axis=-1)
    u = ops.sigmoid(zu)
    return 1.0 - u, u * h_tilde                                                   # a = 1 - u, b = u h~


def _minlstm_coefficients(zx):
    zf, zi, h_tilde = ops.split(zx, 3, axis=-1)
    f_prime = ops.sigmoid(ops.softplus(-zi) - ops.softplus(-zf))                   # f / (f + i), stably
    return f_prime, (1.0 - f_prime) * h_tilde                                     # a = f', b = i' h~


KERAS_COEFFICIENTS = {"mingru": _mingru_coefficients, "minlstm": _minlstm_coefficients}


def recurrent_layer(config, name: str, dtype: str):
    """The recurrent layer of a cell, returning its sequence and final state: Keras' own for RNN / LSTM / GRU,
    :class:`MinRNNCell` in ``keras.layers.RNN`` for the min cells."""
    if not CELLS[config.cell].recurrent_weights:
        return layers.RNN(MinRNNCell(config.cell, config.hidden_size, dtype=dtype), return_sequences=True,
                          return_state=True, name=name, dtype=dtype)
    return KERAS_LAYERS[config.cell](config.hidden_size, return_sequences=True, return_state=True, name=name,
                                     dtype=dtype, **KERAS_CELL_OPTIONS[config.cell])


def norm_layer(config, name: str, dtype: str):
    """RMSNorm or LayerNorm with rnnlab's eps (norms.EPS; Keras' defaults are 1e-6 and 1e-3)."""
    if config.norm == "rms":
        return layers.RMSNormalization(epsilon=EPS, name=name, dtype=dtype)
    return layers.LayerNormalization(epsilon=EPS, name=name, dtype=dtype)


def gelu(x):
    """block.py's GELU, the tanh approximation, written out: ``keras.activations.gelu(approximate=True)`` is the
    same formula, but TensorFlow computes it with k = 0.044715 rounded to float32 (its logits differed from
    rnnlab's and PyTorch's by ~1e-9 in float64)."""
    return 0.5 * x * (1.0 + ops.tanh(GELU_C * x * (1.0 + GELU_K * x * x)))


def char_layers(config, dtype: str = "float32", dropout_seed: int | None = None) -> dict:
    """The layers of the model, named as the weight conversion expects (``l{k}``, ``output``; the residual
    block's ``emb``, ``l{k}_norm1`` ..., ``norm``)."""
    V, H, L = config.vocab_size, config.hidden_size, config.num_layers
    n_dropout = (2 * L if config.residual else L - 1) if config.dropout > 0 else 0

    def dropout(k):
        return layers.Dropout(config.dropout, seed=None if dropout_seed is None else dropout_seed + k,
                              name=f"dropout{k}", dtype=dtype)

    parts = {
        "one_hot": OneHot(V, dtype=dtype, name="one_hot"),
        "recurrent": [recurrent_layer(config, f"l{k}", dtype) for k in range(L)],
        "dropout": [dropout(k) for k in range(n_dropout)],
        "output": layers.Dense(V, name="output", dtype=dtype),
    }
    if not config.residual:
        return parts
    # the embedding as a Dense layer on one-hot input: the same E[ids], and a dense gradient -- Keras' optimizers
    # update an Embedding's rows sparsely (rows absent from the batch keep their Adam moments), rnnlab's do not
    return {**parts, "emb": layers.Dense(H, use_bias=False, name="emb", dtype=dtype),
            "norm1": [norm_layer(config, f"l{k}_norm1", dtype) for k in range(L)],
            "norm2": [norm_layer(config, f"l{k}_norm2", dtype) for k in range(L)],
            "ff1": [layers.Dense(config.ffn_size, activation=gelu, name=f"l{k}_ff1", dtype=dtype) for k in range(L)],
            "ff2": [layers.Dense(H, name=f"l{k}_ff2", dtype=dtype) for k in range(L)],
            "norm": norm_layer(config, "norm", dtype)}


def run_char_layers(parts: dict, ids, states, training=None):
    """ids (B, T), flat states [l0 h, (l0 c), l1 h, ...] each (B, H) -> (logits (B, T, V), final states)."""
    n = len(states) // len(parts["recurrent"])
    if "emb" in parts:
        return run_residual_layers(parts, ids, states, n, training)
    x = parts["one_hot"](ids)                                                  # (B, T, V)
    finals = []
    for k, layer in enumerate(parts["recurrent"]):
        x, *final = layer(x, initial_state=list(states[k * n:(k + 1) * n]), training=training)  # (B, T, H)
        finals += final
        if k < len(parts["dropout"]):
            x = parts["dropout"][k](x, training=training)                     # (B, T, H)
    return parts["output"](x), finals                                          # (B, T, V)


def run_residual_layers(parts: dict, ids, states, n: int, training=None):
    """The residual block (block.py): y = x + D1 RNN(norm1 x), x' = y + D2 FFN(norm2 y); norm; output."""
    x = parts["emb"](parts["one_hot"](ids))                                    # (B, T, H) = E[ids]
    finals = []

    def dropped(k, value):
        return parts["dropout"][k](value, training=training) if parts["dropout"] else value

    for k, layer in enumerate(parts["recurrent"]):
        hs, *final = layer(parts["norm1"][k](x), initial_state=list(states[k * n:(k + 1) * n]), training=training)
        finals += final
        y = x + dropped(2 * k, hs)
        x = y + dropped(2 * k + 1, parts["ff2"][k](parts["ff1"][k](parts["norm2"][k](y))))
    return parts["output"](parts["norm"](x)), finals                           # (B, T, V)


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
