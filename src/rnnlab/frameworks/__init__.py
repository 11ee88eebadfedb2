"""The same character model in PyTorch and Keras: weight conversion both ways, and training engines.

    rnnlab.frameworks.torch   TorchCharRNN (nn.RNN / nn.LSTM / nn.GRU + nn.Linear), to_torch / from_torch,
                              TorchEngine                                             (pip install 'rnnlab[torch]')
    rnnlab.frameworks.keras   build_keras_model (functional), TFCharRNN (keras.Model subclass with its own
                              train_step and generate), to_keras / from_keras, KerasFitEngine,
                              KerasTapeEngine, KerasClassEngine                       (pip install 'rnnlab[tf]')

This package itself needs NumPy only: torch and tensorflow are imported by those two modules, and only
when one of them is asked for (``engines.engine_class`` or :func:`load_framework`).

Gate blocks. Every framework stores a layer's G gate blocks side by side in one (In, G*H) matrix (PyTorch:
its transpose), but not in the same order. The orders are written once, here, in rnnlab's gate names:

=====  ================  ================  =========================================================
cell   rnnlab            PyTorch           Keras (its own names)
=====  ================  ================  =========================================================
rnn    (a)               (a)               (a)
lstm   (i, f, g, o)      (i, f, g, o)      (i, f, g, o)   Keras calls the candidate ``c``
gru    (r, z, n)         (r, z, n)         (z, r, n)      Keras calls the candidate ``h``
=====  ================  ================  =========================================================

and :func:`reorder_gates` moves blocks from one order to another. The bias layouts (PyTorch's two bias
vectors, Keras' (2, 3H) GRU bias) are handled by each module's ``to_*`` / ``from_*`` pair; see
docs/frameworks.md for every convention difference.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import RnnlabError

RNNLAB_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
TORCH_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
KERAS_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("z", "r", "n")}

# framework module -> (the package it imports first, the pip extra that installs it)
FRAMEWORKS = {"torch": ("torch", "torch"), "keras": ("tensorflow", "tf")}
FRAMEWORK_PACKAGES = {"torch": "torch", "tensorflow": "tf", "keras": "tf"}


def reorder_gates(array: np.ndarray, source: tuple, target: tuple, axis: int = -1) -> np.ndarray:
    """Cut ``array`` into len(source) equal gate blocks along ``axis`` and put them in ``target`` order.

    reorder_gates(W, ("r", "z", "n"), ("z", "r", "n")) swaps the first two (H-wide) blocks of W.
    """
    blocks = dict(zip(source, np.split(array, len(source), axis=axis)))
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


def unsupported(framework: str, setting: str, fix: str) -> RnnlabError:
    """The error for an rnnlab setting a framework cannot reproduce exactly: what, and what to change."""
    return RnnlabError(f"{framework} cannot reproduce {setting}: {fix}")
