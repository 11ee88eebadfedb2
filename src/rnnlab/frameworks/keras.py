"""The character model in TensorFlow 2 / Keras 3: one-hot -> SimpleRNN / LSTM / GRU stack -> Dense.

    ids (B, T) --OneHot--> (B, T, V) --l0--> (B, T, H) [--Dropout--> l1 ...] --Dense "output"--> logits (B, T, V)

Keras is batch-first; the engines transpose rnnlab's time-first (T, B) batches at the boundary. Dropout
sits on every recurrent layer's output but the last's, training only (inverted, as in rnnlab). The same
layers are assembled two ways: :func:`build_keras_model` (functional: ``[ids, *initial states] ->
[logits, *final states]``) and :class:`TFCharRNN` (a ``keras.Model`` subclass with its own ``train_step``
and ``generate``).

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

from ..cells import CELLS
from ..errors import RnnlabError, TrainingDiverged, require
from ..optim import SGD, Adagrad, Adam, Momentum, RMSProp
from . import KERAS_GATES, RNNLAB_GATES, MappedOptimizer, reorder_gates, unsupported

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


# --------------------------------------------------------------------------------------------------------
# Optimizers: rnnlab dataclass -> keras.optimizers, with the same trajectory
# --------------------------------------------------------------------------------------------------------

def _sgd(opt: SGD, lr, **clip) -> MappedOptimizer:
    return MappedOptimizer(keras.optimizers.SGD(lr, **clip), {})


def _momentum(opt: Momentum, lr, **clip) -> MappedOptimizer:
    # Keras: m = mu m - lr g; p += m. For a constant lr that is -lr times torch's buf = mu buf + g (rnnlab's
    # form "torch"); form "ema" v = mu v + (1 - mu) g equals Keras with lr (1 - mu). Either way v = -m / lr.
    # Keras scales g by lr *before* accumulating it, so once lr changes the trajectories part.
    scale = 1.0 - opt.mu if opt.form == "ema" else 1.0
    return MappedOptimizer(keras.optimizers.SGD(lr, momentum=np.float64(opt.mu), **clip),
                           {"velocity": ("momentums", -1.0 / opt.lr)}, lr_scale=scale,
                           fixed_lr="keras.optimizers.SGD(momentum) multiplies g by the learning rate before "
                                    "accumulating it, so it follows rnnlab's Momentum only at a constant rate: "
                                    "use --lr_schedule constant, another optimizer, or --engine numpy/torch")


def _rmsprop(opt: RMSProp, lr, **clip) -> MappedOptimizer:
    if not opt.eps_inside_sqrt:
        raise unsupported("keras.optimizers.RMSprop", "RMSProp(eps_inside_sqrt=False)",
                          "it adds eps inside the square root", "eps_inside_sqrt", True)
    return MappedOptimizer(keras.optimizers.RMSprop(lr, rho=np.float64(opt.rho), epsilon=np.float64(opt.eps), **clip),
                           {"square_avg": ("_velocities", 1.0)})


def _adam(opt: Adam, lr, **clip) -> MappedOptimizer:
    if not opt.eps_hat:
        raise unsupported("keras.optimizers.Adam", "Adam(eps_hat=False)",
                          "it adds eps to sqrt(v) after folding the bias corrections into the step", "eps_hat", True)
    return MappedOptimizer(keras.optimizers.Adam(lr, beta_1=np.float64(opt.beta1), beta_2=np.float64(opt.beta2),
                                                 epsilon=np.float64(opt.eps), **clip),
                           {"m": ("_momentums", 1.0), "v": ("_velocities", 1.0)})


def _adagrad(opt: Adagrad, lr, **clip) -> MappedOptimizer:
    if not getattr(opt, "eps_inside_sqrt", False):
        raise unsupported("keras.optimizers.Adagrad", "Adagrad with eps outside the square root",
                          "it computes lr g / sqrt(G + eps)", "eps_inside_sqrt", True)
    return MappedOptimizer(keras.optimizers.Adagrad(lr, initial_accumulator_value=np.float64(opt.initial_accumulator),
                                                    epsilon=np.float64(opt.eps), **clip),
                           {"sum_sq": ("_accumulators", 1.0)})


KERAS_OPTIMIZERS = {SGD: _sgd, Momentum: _momentum, RMSProp: _rmsprop, Adam: _adam, Adagrad: _adagrad}


def keras_optimizer(optimizer, learning_rate, **clip) -> MappedOptimizer:
    """The keras optimizer that follows ``optimizer``'s trajectory (RnnlabError if none does).

    ``learning_rate``: a no-argument callable giving Keras' rate (``optimizer.lr * lr_scale``; see the module
    docstring for why not a float); ``clip``: Keras' own ``clipvalue`` / ``global_clipnorm`` (for fit)."""
    if type(optimizer) not in KERAS_OPTIMIZERS:
        raise RnnlabError(f"no Keras optimizer for {type(optimizer).__name__}: "
                          "use one of sgd, momentum, rms, adam, adagrad")
    return KERAS_OPTIMIZERS[type(optimizer)](optimizer, learning_rate, **clip)


# --------------------------------------------------------------------------------------------------------
# The engines
# --------------------------------------------------------------------------------------------------------

class KerasEngine:
    """What the three Keras engines share: conversion in and out, the state, evaluation, optimizer state.

    The state is a tuple of NumPy (B, H) arrays, [l0 h, (l0 c), l1 h, ...]: it enters each window as
    input and leaves as output, so it is carried between windows and its gradient is cut (truncated BPTT).
    Subclasses build ``self.model`` (its layers named ``l{k}`` / ``output``) and define ``train_step``.
    The learning rate lives in a float64 variable read through a callable, so that ``set_learning_rate``
    reaches compiled functions and a float64 model is not handed a float32-rounded rate.
    """

    name = "keras"

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator):
        self.model_config = model_config
        self.dtype = np.dtype(next(iter(params.values())).dtype).name
        self.clip_value, self.clip_norm = train_config.clip_value, train_config.clip_norm
        dropout_on = model_config.dropout > 0 and model_config.num_layers > 1
        self.dropout_seed = int(dropout_rng.integers(2 ** 31)) if dropout_on else None
        self.model = self.build_model()
        set_keras_weights(self.model, to_keras(params, model_config))
        self.learning_rate = keras.Variable(np.float64(optimizer.lr), dtype="float64", trainable=False,
                                            name="rnnlab_learning_rate")
        self.mapped = keras_optimizer(optimizer, lambda: self.learning_rate, **self.optimizer_clipping())
        self.learning_rate.assign(np.float64(optimizer.lr * self.mapped.lr_scale))
        self.optimizer = self.mapped.optimizer
        self.optimizer.build(self.model.trainable_variables)   # slots exist before any tf.function traces
        n_states = model_config.num_layers * CELLS[model_config.cell].n_states
        self.signature = (tf.TensorSpec([None, None], tf.int32),                    # ids (B, T)
                          tf.TensorSpec([None, None], tf.int32),                    # targets (B, T)
                          tf.TensorSpec([None, None], self.dtype),                  # mask (B, T)
                          tuple(tf.TensorSpec([None, model_config.hidden_size], self.dtype)
                                for _ in range(n_states)))                          # states (B, H)
        self._evaluate = tf.function(self._evaluate_graph, input_signature=self.signature)

    def build_model(self) -> keras.Model:
        return build_keras_model(self.model_config, self.dtype, self.dropout_seed)

    def optimizer_clipping(self) -> dict:
        return {}   # the tape and class engines clip with clip_gradients

    # ---- training ----------------------------------------------------------------------------------------
    def zero_state(self, batch_size: int) -> tuple:
        c = self.model_config
        n_states = c.num_layers * CELLS[c.cell].n_states
        return tuple(np.zeros((batch_size, c.hidden_size), self.dtype) for _ in range(n_states))

    def batch_tensors(self, batch, state):
        """rnnlab's (T, B) batch -> batch-first (ids, targets, mask, states) for Keras."""
        mask = np.ones(batch.ids.shape) if batch.mask is None else batch.mask
        return (np.ascontiguousarray(batch.ids.T, dtype=np.int32),           # (B, T)
                np.ascontiguousarray(batch.targets.T, dtype=np.int32),       # (B, T)
                np.ascontiguousarray(mask.T, dtype=self.dtype),              # (B, T)
                tuple(np.asarray(s, dtype=self.dtype) for s in state))      # (B, H) each

    def _evaluate_graph(self, ids, targets, mask, states):
        logits, *final = self.model([ids, *states], training=False)
        return masked_cross_entropy(logits, targets, mask), final

    def evaluate(self, batch, state):
        loss, final = self._evaluate(*self.batch_tensors(batch, state))
        return float(loss), tuple(s.numpy() for s in final)

    @staticmethod
    def check_finite(applied, loss) -> None:
        if not bool(applied):
            raise TrainingDiverged(f"the loss ({float(loss):.4g}) or its gradient is not finite; "
                                   "parameters left as they were")

    def set_learning_rate(self, lr: float) -> None:
        if self.mapped.fixed_lr is not None:
            raise RnnlabError(self.mapped.fixed_lr)
        self.learning_rate.assign(np.float64(lr * self.mapped.lr_scale))

    # ---- rnnlab's layout in and out ----------------------------------------------------------------------
    def numpy_params(self) -> dict:
        return from_keras(get_keras_weights(self.model, self.model_config), self.model_config)

    def _slot_variables(self, attribute: str) -> dict:
        """{layer name: [the optimizer's slot variable of each of the layer's weights]}."""
        variables = getattr(self.optimizer, attribute)
        return {name: [variables[self.optimizer._get_variable_index(w)] for w in self.model.get_layer(name).weights]
                for name in weight_layer_names(self.model_config)}

    def optimizer_state(self) -> dict:
        """The Keras optimizer's slots in rnnlab's layout (optim.py's slot names, params' keys)."""
        state = {"step": int(self.optimizer.iterations.numpy())}
        for slot, (attribute, factor) in self.mapped.slots.items():
            per_layer = {name: [factor * v.numpy() for v in variables]
                         for name, variables in self._slot_variables(attribute).items()}
            state[slot] = from_keras(per_layer, self.model_config)
        return state

    def load_state(self, params: dict, optimizer_state: dict) -> None:
        """Continue from rnnlab-layout parameters and optimizer state (a checkpoint of any engine)."""
        set_keras_weights(self.model, to_keras(params, self.model_config))
        self.optimizer.iterations.assign(int(optimizer_state["step"]))
        for slot, (attribute, factor) in self.mapped.slots.items():
            values = to_keras(optimizer_state[slot], self.model_config)
            for name, variables in self._slot_variables(attribute).items():
                for variable, value in zip(variables, values[name]):
                    variable.assign(np.asarray(value, dtype=self.dtype) / factor)

    def state_to_numpy(self, state) -> list:
        """Flat [l0 h, (l0 c), l1 h, ...] -> per layer a tuple of (B, H) arrays: (h,) or (h, c)."""
        n = CELLS[self.model_config.cell].n_states
        return [tuple(state[k * n:(k + 1) * n]) for k in range(self.model_config.num_layers)]

    def state_from_numpy(self, state: list) -> tuple:
        return tuple(np.asarray(part, dtype=self.dtype) for layer in state for part in layer)


class KerasTapeEngine(KerasEngine):
    """A hand-written training step: forward under ``tf.GradientTape``, masked loss, gradients, rnnlab's
    clipping, ``optimizer.apply`` -- compiled once with ``tf.function``."""

    name = "keras-tape"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train = tf.function(self._train_graph, input_signature=self.signature)

    def _train_graph(self, ids, targets, mask, states):
        with tf.GradientTape() as tape:
            logits, *final = self.model([ids, *states], training=True)        # (B, T, V)
            loss = masked_cross_entropy(logits, targets, mask)
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        return loss, final, apply_if_finite(self.optimizer, loss, grads, variables, self.clip_value, self.clip_norm)

    def train_step(self, batch, state):
        loss, final, applied = self._train(*self.batch_tensors(batch, state))
        self.check_finite(applied, loss)
        return float(loss), tuple(s.numpy() for s in final)


class KerasClassEngine(KerasEngine):
    """Trains :class:`TFCharRNN` with its own ``train_step`` (compiled with ``tf.function``)."""

    name = "keras-class"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model.compile(optimizer=self.optimizer)
        self._train = tf.function(self._train_graph, input_signature=self.signature)

    def build_model(self) -> keras.Model:
        return TFCharRNN(self.model_config, self.dtype, self.dropout_seed, self.clip_value, self.clip_norm)

    def _train_graph(self, ids, targets, mask, states):
        return self.model.train_step(((ids, states), targets, mask))

    def _evaluate_graph(self, ids, targets, mask, states):
        logits, final = self.model((ids, states), training=False)
        return masked_cross_entropy(logits, targets, mask), final

    def train_step(self, batch, state):
        logs = self._train(*self.batch_tensors(batch, state))
        self.check_finite(logs["applied"], logs["loss"])
        return float(logs["loss"]), tuple(s.numpy() for s in logs["state"])


class KerasFitEngine(KerasEngine):
    """Each step is one ``model.fit`` call on the batch.

    How the state is carried: the functional model takes the initial states as extra inputs, so ``fit`` on
    ``[ids, *states]`` starts the window from the carried state (Keras' stateful RNNs would pin the batch
    size and keep a second, hidden copy of the state). ``fit`` does not return outputs, so the final state
    is computed first by a forward pass with the pre-update weights -- what rnnlab's engine returns too
    (with dropout between layers, this forward pass runs without it). The cost is one extra forward pass.

    The batch goes in as a one-element ``tf.data.Dataset``: given NumPy arrays, ``fit`` casts float64
    inputs (the carried state) to float32. The loss is Keras' ``SparseCategoricalCrossentropy(from_logits=
    True, reduction="mean_with_sample_weight")`` with the mask as sample weight: the mean over real
    characters; ``fit`` reports it through a float32 metric. Clipping is the optimizer's ``clipvalue`` /
    ``global_clipnorm``; Keras allows only one of them. A non-finite loss stops the step before ``fit``;
    ``fit`` itself has no guard against a non-finite gradient.
    """

    name = "keras-fit"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fit_model = keras.Model(self.model.inputs, self.model.outputs[0], name="char_rnn_logits")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight",
                                                          dtype=self.dtype)
        self.fit_model.compile(optimizer=self.optimizer, loss=loss, jit_compile=False)

    def optimizer_clipping(self) -> dict:
        if self.clip_value is not None and self.clip_norm is not None:
            raise RnnlabError("--engine keras-fit clips with Keras' optimizer, which takes clipvalue or "
                              "global_clipnorm, not both: drop --clip_value or --clip_norm")
        if self.clip_value is not None:
            return {"clipvalue": np.float64(self.clip_value)}
        if self.clip_norm is not None:
            return {"global_clipnorm": np.float64(self.clip_norm)}
        return {}

    def train_step(self, batch, state):
        ids, targets, mask, states = self.batch_tensors(batch, state)
        loss, final = self._evaluate(ids, targets, mask, states)            # pre-update final state
        self.check_finite(tf.math.is_finite(loss), loss)
        data = ((ids, *states), targets) if batch.mask is None else ((ids, *states), targets, mask)
        history = self.fit_model.fit(tf.data.Dataset.from_tensors(data), epochs=1, shuffle=False, verbose=0)
        return float(history.history["loss"][0]), tuple(s.numpy() for s in final)
