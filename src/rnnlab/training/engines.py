"""Engines: who computes a training step. The Trainer (data, validation, reports) is the same for all.

An engine is built from the model config, the *NumPy* initial parameters (so every engine starts from the
same weights), the optimizer dataclass from ``optim.py`` (a framework engine builds its framework's
equivalent with the same hyper-parameters and conventions), the train config (clipping) and the dropout
Generator. It offers:

    zero_state(batch_size)         -> an opaque initial state
    train_step(batch, state)       -> (loss in nats/char, final state)    forward, loss, backward, clip, update
    evaluate(batch, state)         -> (loss, final state)                 no dropout, no update
    numpy_params()                 -> {name: array} in rnnlab's layout    for sampling and checkpoints
    optimizer_state()              -> the optimizer state in rnnlab's layout (checkpoints)
    load_state(params, opt_state)  -> continue from a checkpoint
    set_learning_rate(lr)          -> for learning-rate schedules
    state_to_numpy(state) / state_from_numpy(list of tuples of (B, H) arrays)   the carried hidden state
    device                         where it computes: "cpu", or the torch engine's torch.device
    loss_read_every                1: train_step's loss is a float; n > 1: a device scalar, read by the
                                   Trainer every n steps (float() waits for the device: not after each step)

``numpy`` is this package's from-scratch engine; the framework engines live in ``rnnlab.frameworks`` and are
imported only when asked for, so the core runs with NumPy alone.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np

from ..errors import RnnlabError, TrainingDiverged
from ..nn import model as charmodel
from ..nn import seq2seq
from ..nn.optim import clip_by_global_norm, clip_by_value, global_norm
from .parallel import ShardedSteps, min_shard_rows, resolve_threads


def train_step(params, model_config, optimizer, opt_state, batch, state, clip_value=None, clip_norm=None,
               dropout_rng=None, ws=None, shards: ShardedSteps | None = None):
    """One optimisation step on one batch -> (loss, final state). The whole flow, in order. With ``shards``
    the first part runs as batch shards on threads (``parallel.py``), with the same result."""
    if shards is None:
        loss, grads, state = charmodel.loss_and_grads(             # forward, loss (+dy), da, BPTT,
            params, model_config, batch.ids, batch.targets, state,  # output-layer grads
            mask=batch.mask, dropout_rng=dropout_rng, ws=ws)
    else:
        loss, grads, state = shards.loss_and_grads(params, model_config, batch, state, dropout_rng)
    apply_gradients(params, grads, loss, optimizer, opt_state, clip_value, clip_norm)
    return loss, state


def apply_gradients(params, grads, loss, optimizer, opt_state, clip_value=None, clip_norm=None) -> None:
    """Check that loss and gradients are finite, clip, update: the end of every training step."""
    norm = global_norm(grads)
    if not math.isfinite(loss) or not math.isfinite(norm):
        raise TrainingDiverged(f"the loss ({loss:.4g}) or its gradient is not finite; parameters left as they were")
    if clip_value is not None:                                     # clip
        clip_by_value(grads, clip_value)
        norm = None                                                # changed: clip_by_global_norm recomputes it
    if clip_norm is not None:
        clip_by_global_norm(grads, clip_norm, norm)
    optimizer.update(params, grads, opt_state)                     # update


class NumpyEngine:
    """The from-scratch engine: parameters and optimizer moments are dicts of NumPy arrays.

    ``train_config.threads`` (None: every core available) is how many threads a step may use: a batch big
    enough is split into shards run side by side (``parallel.py``), a smaller one runs unsplit with BLAS on
    that many threads. ``shard_rows`` (the fewest rows per shard; default: ``parallel.min_shard_rows`` of
    the model's width; None: never shard) is for tests and benchmarks."""

    name = "numpy"
    device = "cpu"
    loss_read_every = 1

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator,
                 shard_rows: int | None | str = "auto"):
        self.model_config, self.params, self.optimizer = model_config, params, optimizer
        self.opt_state = optimizer.init(params)
        self.clip_value, self.clip_norm = train_config.clip_value, train_config.clip_norm
        self.dropout_rng = dropout_rng
        self.dtype = next(iter(params.values())).dtype
        self.threads = resolve_threads(getattr(train_config, "threads", None))
        if shard_rows == "auto":
            shard_rows = min_shard_rows(model_config.hidden_size)
        self.shards = ShardedSteps(self.threads, shard_rows)   # with the step's Workspace(s), kept between steps

    def zero_state(self, batch_size: int):
        return charmodel.zero_state(self.model_config, batch_size, self.dtype)

    def train_step(self, batch, state):
        return train_step(self.params, self.model_config, self.optimizer, self.opt_state, batch, state,
                          self.clip_value, self.clip_norm, self.dropout_rng, shards=self.shards)

    def evaluate(self, batch, state):
        return self.shards.evaluate(self.params, self.model_config, batch, state)

    def numpy_params(self) -> dict:
        return self.params

    def optimizer_state(self) -> dict:
        return self.opt_state

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer = dataclasses.replace(self.optimizer, lr=lr)

    def load_state(self, params: dict, optimizer_state: dict) -> None:
        """Continue from saved parameters and optimizer state (exact resume)."""
        self.params = {name: value.astype(self.dtype) for name, value in params.items()}
        self.opt_state = optimizer_state

    def state_to_numpy(self, state) -> list:
        return state

    def state_from_numpy(self, state: list):
        return [tuple(part.astype(self.dtype) for part in layer) for layer in state]


class Seq2SeqEngine(NumpyEngine):
    """The translator's engine (``seq2seq.py``, a ``pairs`` dataset): the same optimizer state, clipping,
    learning-rate and checkpoint interface as NumpyEngine. Batches are ``pairs.PairBatch``; no hidden state
    is carried from one batch to the next, so the state is always None. Its steps are not split into batch
    shards."""

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator):
        super().__init__(model_config, params, optimizer, train_config, dropout_rng, shard_rows=None)

    def zero_state(self, batch_size: int):
        return None

    def train_step(self, batch, state):
        loss, grads = seq2seq.loss_and_grads(self.params, self.model_config, batch)  # forward ... output grads
        apply_gradients(self.params, grads, loss, self.optimizer, self.opt_state, self.clip_value, self.clip_norm)
        return loss, None

    def evaluate(self, batch, state):
        return seq2seq.evaluate_loss(self.params, self.model_config, batch), None

    def state_to_numpy(self, state):
        return None

    def state_from_numpy(self, state):
        return None


# name -> (module, class, pip extra); the framework modules are imported on first use only.
ENGINES = {
    "numpy": (__name__, "NumpyEngine", None),
    "torch": ("rnnlab.frameworks.torch", "TorchEngine", "torch"),
    "keras-fit": ("rnnlab.frameworks.keras_engines", "KerasFitEngine", "tf"),
    "keras-tape": ("rnnlab.frameworks.keras_engines", "KerasTapeEngine", "tf"),
    "keras-class": ("rnnlab.frameworks.keras_engines", "KerasClassEngine", "tf"),
}


def engine_class(name: str):
    if name not in ENGINES:
        raise RnnlabError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")
    module_name, class_name, extra = ENGINES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if extra is None or err.name not in ("torch", "tensorflow", "keras"):
            raise
        raise RnnlabError(f"--engine {name} needs {err.name}, which is not installed: "
                          f"pip install 'rnnlab[{extra}]'") from None
    return getattr(module, class_name)


DEVICE_PATTERN = r"auto|cpu|cuda(:\d{1,3})?|mps"   # --device; frameworks/torch.py resolves it
PRECISIONS = ("fp32", "bf16", "fp16")              # --precision: torch.autocast (frameworks/torch.py)
OFF_CPU_ENGINES = ("torch",)                       # the engines that can compute elsewhere than the CPU


def require_cpu_unless_torch(engine: str, device: str, precision: str = "fp32",
                             fix: str = "add --engine torch") -> None:
    """The one-line refusal of a GPU or mixed precision for an engine that computes on the CPU in full
    precision (numpy, keras-*): it names the engine that can."""
    if engine in OFF_CPU_ENGINES:
        return
    if device not in ("auto", "cpu"):
        raise RnnlabError(f"--device {device} needs the torch engine: {fix} (the {engine} engine computes on the CPU)")
    if precision != "fp32":
        raise RnnlabError(f"--precision {precision} needs the torch engine: {fix} (the {engine} engine computes "
                          "in the --dtype it is given)")
