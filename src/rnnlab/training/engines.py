"""Engines: who computes a training step. The Trainer (data, validation, reports) is the same for all.

An engine is built from the model config, the *NumPy* initial parameters (so every engine starts from the
same weights), the optimizer dataclass from ``nn/optim.py`` (a framework engine builds its framework's
equivalent with the same hyper-parameters and conventions), its :class:`EngineSettings` (clipping, threads,
device, precision: what a step needs of the run's settings, nothing more) and the dropout Generator. It
offers:

    zero_state(batch_size)         -> an opaque initial state
    train_step(batch, state)       -> (loss in nats/char, final state)    forward, loss, backward, clip, update
    evaluate(batch, state)         -> (loss, final state)                 no dropout, no update
    numpy_params()                 -> {name: array} in rnnlab's layout    for sampling and checkpoints
    use_params(params)             -> the parameters it had               compute with others (an average)
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
from dataclasses import dataclass, fields

import numpy as np

from ..errors import RnnlabError
from ..nn import model as charmodel
from ..nn import seq2seq
from .parallel import ShardedSteps, min_shard_rows, resolve_threads


@dataclass(frozen=True)
class EngineSettings:
    """What an engine needs of a run's settings (config.OptimSettings' clipping, config.ComputeSettings' rest)."""

    clip_value: float | None = None
    clip_norm: float | None = None
    threads: int | None = None        # numpy: threads per step (None: the cores available)
    device: str = "auto"              # torch: where it computes
    precision: str = "fp32"           # torch: autocast

    @classmethod
    def of(cls, config) -> EngineSettings:
        """From a TrainConfig (or anything that has these settings by name)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class NumpyEngine:
    """The from-scratch engine: parameters and optimizer moments are dicts of NumPy arrays.

    ``settings.threads`` (None: every core available) is how many threads a step may use: a batch big
    enough is split into shards run side by side (``parallel.py``), a smaller one runs unsplit with BLAS on
    that many threads. ``shard_rows`` (the fewest rows per shard; default: ``parallel.min_shard_rows`` of
    the model's width; None: never shard) is for tests and benchmarks."""

    name = "numpy"
    device = "cpu"
    loss_read_every = 1

    def __init__(self, model_config, params, optimizer, settings: EngineSettings, dropout_rng: np.random.Generator,
                 shard_rows: int | None | str = "auto"):
        self.model_config, self.params, self.optimizer = model_config, params, optimizer
        self.opt_state = optimizer.init(params)
        self.clip_value, self.clip_norm = settings.clip_value, settings.clip_norm
        self.dropout_rng = dropout_rng
        self.dtype = next(iter(params.values())).dtype
        self.threads = resolve_threads(settings.threads)
        if shard_rows == "auto":
            shard_rows = min_shard_rows(model_config.hidden_size)
        self.shards = ShardedSteps(self.threads, shard_rows)   # with the step's Workspace(s), kept between steps

    def zero_state(self, batch_size: int):
        return charmodel.zero_state(self.model_config, batch_size, self.dtype)

    def train_step(self, batch, state):
        """One optimisation step: ``nn.model.train_step`` (forward, loss, da, BPTT, output grads, clip, update in
        order), run whole or as batch shards on threads (``parallel.py``: the same numbers)."""
        loss, grads, state = self.shards.loss_and_grads(      # forward, loss (+dy), da, BPTT, output-layer grads
            self.params, self.model_config, batch, state, self.dropout_rng)
        charmodel.apply_gradients(self.params, grads, loss, self.optimizer, self.opt_state, self.clip_value,
                                  self.clip_norm)                              # clip, update
        return loss, state

    def evaluate(self, batch, state):
        return self.shards.evaluate(self.params, self.model_config, batch, state)

    def numpy_params(self) -> dict:
        return self.params

    def use_params(self, params: dict) -> dict:
        """Compute with ``params`` from now on (no copy: evaluation of the weight average); -> the previous ones."""
        previous, self.params = self.params, params
        return previous

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

    def __init__(self, model_config, params, optimizer, settings: EngineSettings, dropout_rng: np.random.Generator):
        super().__init__(model_config, params, optimizer, settings, dropout_rng, shard_rows=None)

    def zero_state(self, batch_size: int):
        return None

    def train_step(self, batch, state):
        loss, grads = seq2seq.loss_and_grads(self.params, self.model_config, batch)  # forward ... output grads
        charmodel.apply_gradients(self.params, grads, loss, self.optimizer, self.opt_state, self.clip_value,
                                  self.clip_norm)                               # clip, update
        return loss, None

    def evaluate(self, batch, state):
        return seq2seq.evaluate_loss(self.params, self.model_config, batch), None

    def state_to_numpy(self, state):
        return None

    def state_from_numpy(self, state):
        return None


# name -> (module, class, pip extra); the framework modules are imported on first use only. The names are
# config.ENGINES (--engine's choices; a test checks the two agree).
ENGINE_MODULES = {
    "numpy": (__name__, "NumpyEngine", None),
    "torch": ("rnnlab.frameworks.torch", "TorchEngine", "torch"),
    "keras-fit": ("rnnlab.frameworks.keras_engines", "KerasFitEngine", "tf"),
    "keras-tape": ("rnnlab.frameworks.keras_engines", "KerasTapeEngine", "tf"),
    "keras-class": ("rnnlab.frameworks.keras_engines", "KerasClassEngine", "tf"),
}


def engine_class(name: str):
    if name not in ENGINE_MODULES:
        raise RnnlabError(f"unknown engine {name!r}: use one of {', '.join(ENGINE_MODULES)}")
    module_name, class_name, extra = ENGINE_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if extra is None or err.name not in ("torch", "tensorflow", "keras"):
            raise
        raise RnnlabError(f"--engine {name} needs {err.name}, which is not installed: "
                          f"pip install 'rnnlab[{extra}]'") from None
    return getattr(module, class_name)
