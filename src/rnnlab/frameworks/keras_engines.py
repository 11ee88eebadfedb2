"""Training the Keras twin through rnnlab's Trainer: the optimizer mapping and the three Keras engines.

``keras-tape`` (:class:`KerasTapeEngine`, a compiled ``tf.GradientTape`` loop), ``keras-class``
(:class:`KerasClassEngine`, ``TFCharRNN.train_step``) and ``keras-fit`` (:class:`KerasFitEngine`,
``model.fit``) implement the engine interface of ``rnnlab.engines``; the model, the weight conversion and
``TFCharRNN`` are in :mod:`rnnlab.frameworks.keras`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..errors import RnnlabError, TrainingDiverged
from ..nn.cells import CELLS
from ..nn.optim import SGD, Adagrad, Adam, Momentum, RMSProp
from . import MappedOptimizer, regularizers_on, unsupported
from .keras import (
    TFCharRNN,
    apply_if_finite,
    build_keras_model,
    from_keras,
    get_keras_weights,
    masked_cross_entropy,
    set_keras_weights,
    to_keras,
    weight_layer_names,
)

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
    device = "cpu"
    loss_read_every = 1

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator):
        regularizers = regularizers_on(model_config)
        if regularizers:
            raise RnnlabError(f"--engine {self.name} cannot follow {', '.join('--' + n for n in regularizers)}: Keras' "
                              "recurrent layers run each step inside one op, with masks of their own (no zoneout, "
                              "no weight drop, no masks from rnnlab's Generator); use --engine numpy or torch")
        self.model_config = model_config
        self.dtype = np.dtype(next(iter(params.values())).dtype).name
        self.clip_value, self.clip_norm = train_config.clip_value, train_config.clip_norm
        dropout_on = model_config.dropout > 0 and (model_config.num_layers > 1 or model_config.block != "plain")
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

    def use_params(self, params: dict) -> dict:
        """Set rnnlab-layout ``params`` as the model's weights (the optimizer keeps its state); -> the previous."""
        previous = self.numpy_params()
        set_keras_weights(self.model, to_keras(params, self.model_config))
        return previous

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
                for variable, value in zip(variables, values[name], strict=True):
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
