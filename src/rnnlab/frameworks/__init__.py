"""The same character model in PyTorch and Keras: weight conversion both ways, and training engines.

    rnnlab.frameworks.torch   TorchCharRNN (nn.RNN / nn.LSTM / nn.GRU + nn.Linear), to_torch / from_torch,
                              TorchEngine                                             (pip install 'rnnlab[torch]')
    rnnlab.frameworks.keras   build_keras_model (functional), TFCharRNN (keras.Model subclass with its own
                              train_step and generate), to_keras / from_keras         (pip install 'rnnlab[tf]')
    rnnlab.frameworks.keras_engines   the optimizer mapping and KerasFitEngine, KerasTapeEngine,
                              KerasClassEngine

This package itself needs NumPy only: torch and tensorflow are imported by those two modules, and only
when one of them is asked for (``engines.engine_class`` or :func:`load_framework`).

Gate blocks. Every framework stores a layer's G gate blocks side by side in one (In, G*H) matrix (PyTorch:
its transpose), but not in the same order. The orders are written once, here, in rnnlab's gate names:

=======  ================  ================  =========================================================
cell     rnnlab            PyTorch           Keras (its own names)
=======  ================  ================  =========================================================
rnn      (a)               (a)               (a)
lstm     (i, f, g, o)      (i, f, g, o)      (i, f, g, o)   Keras calls the candidate ``c``
gru      (r, z, n)         (r, z, n)         (z, r, n)      Keras calls the candidate ``h``
mingru   (u, h~)           (u, h~)           (u, h~)        the twins are rnnlab's own layers
minlstm  (f, i, h~)        (f, i, h~)        (f, i, h~)     (torch_layers.MinRNN, keras.MinRNNCell)
=======  ================  ================  =========================================================

and :func:`reorder_gates` moves blocks from one order to another. The bias layouts (PyTorch's two bias
vectors, Keras' (2, 3H) GRU bias) are handled by each module's ``to_*`` / ``from_*`` pair; see
docs/frameworks.md for every convention difference.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ..errors import RnnlabError
from ..optim import OPTIMIZERS

MIN_GATES = {"mingru": ("u", "h~"), "minlstm": ("f", "i", "h~")}   # the twins are rnnlab's own layers: one order
RNNLAB_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), **MIN_GATES}
TORCH_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), **MIN_GATES}
KERAS_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("z", "r", "n"), **MIN_GATES}

FRAMEWORKS = ("torch", "keras")
FRAMEWORK_PACKAGES = {"torch": "torch", "tensorflow": "tf", "keras": "tf"}   # package -> pip extra


# The rnnlab optimizer options under which a framework's own optimizer follows rnnlab's trajectory
# (docs/frameworks.md). torch.optim needs none: rnnlab's defaults are PyTorch's conventions.
FRAMEWORK_OPTIMIZER_OPTIONS = {
    "torch": {},
    "keras": {"rms": {"eps_inside_sqrt": True}, "adam": {"eps_hat": True}, "adagrad": {"eps_inside_sqrt": True}},
}


def engine_optimizer_options(engine: str, optimizer: str) -> dict:
    """Options for ``optim.make_optimizer(optimizer, lr, **options)`` so that ``engine`` can run it exactly:
    {} for numpy and torch, e.g. {"eps_hat": True} for Adam on a Keras engine. Options that rnnlab's
    optimizer does not have (yet) are left out; the engine then says what is missing."""
    framework = "keras" if engine.startswith("keras") else engine
    options = FRAMEWORK_OPTIMIZER_OPTIONS.get(framework, {}).get(optimizer, {})
    known = OPTIMIZERS[optimizer].__dataclass_fields__ if optimizer in OPTIMIZERS else {}
    return {name: value for name, value in options.items() if name in known}


def reorder_gates(array: np.ndarray, source: tuple, target: tuple, axis: int = -1) -> np.ndarray:
    """Cut ``array`` into len(source) equal gate blocks along ``axis`` and put them in ``target`` order.

    reorder_gates(W, ("r", "z", "n"), ("z", "r", "n")) swaps the first two (H-wide) blocks of W.
    """
    blocks = dict(zip(source, np.split(array, len(source), axis=axis), strict=True))
    return np.concatenate([blocks[gate] for gate in target], axis=axis)


def load_framework(name: str):
    """``rnnlab.frameworks.torch`` or ``rnnlab.frameworks.keras``, imported now; a one-line RnnlabError
    naming the pip extra when the framework is not installed."""
    if name not in FRAMEWORKS:
        raise RnnlabError(f"unknown framework {name!r}: use one of {', '.join(FRAMEWORKS)}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name not in FRAMEWORK_PACKAGES:
            raise
        raise RnnlabError(f"rnnlab.frameworks.{name} needs {err.name}, which is not installed: "
                          f"pip install 'rnnlab[{FRAMEWORK_PACKAGES[err.name]}]'") from None


@dataclass
class MappedOptimizer:
    """A framework optimizer standing in for an rnnlab optimizer dataclass, and how their states relate.

    slots:    rnnlab slot name -> (the framework's name for it, factor): rnnlab value = factor * framework's
    lr_scale: the framework's learning rate = rnnlab's lr * lr_scale (Momentum "ema", see the modules)
    fixed_lr: None, or why this optimizer cannot follow rnnlab's trajectory once the learning rate changes
    """

    optimizer: object
    slots: dict
    lr_scale: float = 1.0
    fixed_lr: str | None = None


def unsupported(framework: str, setting: str, reason: str, option: str, value: bool) -> RnnlabError:
    """The one-line error for an rnnlab setting a framework cannot reproduce exactly: what, why, and the
    option to change (in Python and on the command line)."""
    return RnnlabError(f"{framework} cannot reproduce {setting} ({reason}): use {option}={value} "
                       f"(--optimizer_options {option}={str(value).lower()})")
