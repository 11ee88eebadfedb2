"""The same character model in PyTorch and Keras: weight conversion both ways, and training engines.

    rnnlab.frameworks.torch   TorchCharRNN (nn.RNN / nn.LSTM / nn.GRU + nn.Linear), to_torch / from_torch,
                              TorchEngine                                             (pip install 'rnnlab[torch]')
    rnnlab.frameworks.keras   build_keras_model (functional), TFCharRNN (keras.Model subclass with its own
                              train_step and generate), to_keras / from_keras         (pip install 'rnnlab[tf]')
    rnnlab.frameworks.onnx    the language model as an ONNX graph (to_onnx), and the ONNX Runtime session
                              that runs it (onnx_forward)                          (pip install 'rnnlab[export]')
    rnnlab.frameworks.keras_engines   the optimizer mapping and KerasFitEngine, KerasTapeEngine,
                              KerasClassEngine

This package itself needs NumPy only: torch and tensorflow are imported by those two modules, and only
when one of them is asked for (``engines.engine_class`` or :func:`load_framework`).

Import rule (tests/test_architecture.py): ``rnnlab.frameworks``, ``rnnlab.nn``, ``rnnlab.data``,
``rnnlab.training`` (their engines are training engines: the process group, the engine interface) and the
edges (``errors``, ``memory``) -- never tools or the CLI.

Gate blocks. Every framework stores a layer's G gate blocks side by side in one (In, G*H) matrix (PyTorch:
its transpose), but not in the same order. The orders are written once, here, in rnnlab's gate names:

=======  ================  ================  ==============================  ================================
cell     rnnlab            PyTorch           Keras (its own names)           ONNX operators LSTM / GRU / RNN
=======  ================  ================  ==============================  ================================
rnn      (a)               (a)               (a)                             (a)
lstm     (i, f, g, o)      (i, f, g, o)      (i, f, g, o)  candidate ``c``   (i, o, f, g)  candidate ``c``
gru      (r, z, n)         (r, z, n)         (z, r, n)     candidate ``h``   (z, r, n)     candidate ``h``
mingru   (u, h~)           (u, h~)           (u, h~)                         no operator: (u, h~), Split + Scan
minlstm  (f, i, h~)        (f, i, h~)        (f, i, h~)                      no operator: (f, i, h~), Split + Scan
=======  ================  ================  ==============================  ================================

(the min cells' twins are rnnlab's own layers, torch_layers.MinRNN and keras.MinRNNCell: one order for all)

and :func:`reorder_gates` moves blocks from one order to another (z is the GRU's update gate, which
cells.py calls u; ``rnnlab.frameworks.onnx`` writes the model as an ONNX graph of those operators). The bias
layouts (PyTorch's two bias vectors, Keras' (2, 3H) GRU bias, ONNX's [input; recurrent] bias) are handled by
each module's conversion (:func:`to_torch` here, NumPy only); see docs/frameworks.md for every convention
difference.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ..errors import RnnlabError
from ..nn.cells import CELLS
from ..nn.optim import OPTIMIZERS

MIN_GATES = {"mingru": ("u", "h~"), "minlstm": ("f", "i", "h~")}   # the twins are rnnlab's own layers: one order
RNNLAB_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), **MIN_GATES}
TORCH_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), **MIN_GATES}
KERAS_GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("z", "r", "n"), **MIN_GATES}
ONNX_GATES = {"rnn": ("a",), "lstm": ("i", "o", "f", "g"), "gru": ("z", "r", "n")}     # ONNX operators' own orders

FRAMEWORKS = ("torch", "keras", "onnx")
FRAMEWORK_PACKAGES = {"torch": "torch", "tensorflow": "tf", "keras": "tf",     # package -> pip extra
                      "onnx": "export", "onnxruntime": "export"}


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


def layer_to_torch(p: dict, cell: str, prefix: str, k: int) -> dict:
    """One layer {Wx, Wh, b[, bh]} -> the torch.nn.{RNN,LSTM,GRU} weights of its layer k, named ``prefix`` +
    ``weight_ih_l{k}`` etc. (NumPy, no torch needed)."""
    b = p["b"]
    bh = p.get("bh", np.zeros_like(b))                               # RNN/LSTM: no recurrent bias
    return {f"{prefix}weight_ih_l{k}": to_torch_gates(p["Wx"], cell, axis=1).T,   # (GH, In)
            f"{prefix}weight_hh_l{k}": to_torch_gates(p["Wh"], cell, axis=1).T,   # (GH, H)
            f"{prefix}bias_ih_l{k}": to_torch_gates(b, cell, axis=0),             # (GH,)
            f"{prefix}bias_hh_l{k}": to_torch_gates(bh, cell, axis=0)}            # (GH,)


def layered(config) -> bool:
    """Whether the model is not a plain stack of nn.RNN / LSTM / GRU: minGRU, minLSTM or the residual block,
    built by ``torch_layers.TorchLayeredRNN`` instead of ``torch.TorchCharRNN``."""
    return config.block != "plain" or not CELLS[config.cell].recurrent_weights


def regularizers_on(config) -> list[str]:
    """The flags of the regularisers (nn/regularizers.py) a language model's config turns on, beyond plain
    --dropout: each needs the NumPy engine's masks (or zoneout's step-by-step mixing) in a twin."""
    names = [name for name in ("dropout_input", "dropout_output", "weight_drop", "ar", "tar")
             if getattr(config, name, 0)]
    if getattr(config, "locked_dropout", False) and config.dropout > 0:
        names.append("locked_dropout")
    if getattr(config, "has_zoneout", False):
        names.append("zoneout")
    return names


def to_torch(params: dict, config) -> dict:
    """rnnlab params -> {state_dict name: array} of ``frameworks.torch.TorchCharRNN`` -- an ``nn.RNN/LSTM/GRU``
    named ``rnn`` and an ``nn.Linear`` named ``out`` -- or, for a layered model (min cells, residual block), of
    ``torch_layers.TorchLayeredRNN`` (:func:`layered_to_torch`); in NumPy, same dtype (no torch needed)."""
    if layered(config):
        return layered_to_torch(params, config)
    state = {}
    for k in range(config.num_layers):
        state.update(layer_to_torch({name[len(f"l{k}."):]: value for name, value in params.items()
                                     if name.startswith(f"l{k}.")}, config.cell, "rnn.", k))
    state["out.weight"] = params["Wy"].T                                                          # (V, H)
    state["out.bias"] = params["by"]                                                              # (V,)
    return {name: np.ascontiguousarray(value) for name, value in state.items()}


def norm_names(prefix_torch: str, prefix_rnnlab: str, norm: str) -> list:
    """(torch name, rnnlab name) of one normalisation: nn.RMSNorm's weight, nn.LayerNorm's weight and bias."""
    return [(f"{prefix_torch}weight", f"{prefix_rnnlab}g")] + (
        [(f"{prefix_torch}bias", f"{prefix_rnnlab}b")] if norm == "layer" else [])


def layered_names(config) -> list:
    """(TorchLayeredRNN state_dict name, rnnlab name, transposed) of every parameter of a layered model but a
    classic cell's recurrent layer (those are :func:`layer_to_torch`'s). Every name belongs to a standard
    torch.nn module: ``proj`` an nn.Linear, ``norm*`` nn.RMSNorm / nn.LayerNorm, ``ff.0`` / ``ff.2``
    nn.Linear, ``emb`` nn.Embedding, ``out`` nn.Linear."""
    pairs = []
    for k in range(config.num_layers):
        t, r = (f"layers.{k}.", f"l{k}.")
        rnn = f"{t}rnn." if config.residual else t
        if not CELLS[config.cell].recurrent_weights:
            pairs += [(f"{rnn}proj.weight", f"{r}Wx", True), (f"{rnn}proj.bias", f"{r}b", False)]
        if config.residual:
            pairs += [(tn, rn, False) for tn, rn in norm_names(f"{t}norm1.", f"{r}norm1.", config.norm)]
            pairs += [(tn, rn, False) for tn, rn in norm_names(f"{t}norm2.", f"{r}norm2.", config.norm)]
            pairs += [(f"{t}ff.0.weight", f"{r}ff.W1", True), (f"{t}ff.0.bias", f"{r}ff.b1", False),
                      (f"{t}ff.2.weight", f"{r}ff.W2", True), (f"{t}ff.2.bias", f"{r}ff.b2", False)]
    if config.residual:
        pairs += [("emb.weight", "emb", False)] + [(tn, rn, False) for tn, rn in norm_names("norm.", "norm.",
                                                                                            config.norm)]
    return pairs + [("out.weight", "Wy", True), ("out.bias", "by", False)]


def layered_to_torch(params: dict, config) -> dict:
    """rnnlab params -> {TorchLayeredRNN state_dict name: array} (NumPy, same dtype; the reverse is
    ``torch_layers.layered_from_torch``)."""
    state = {torch_name: params[name].T if transposed else params[name]
             for torch_name, name, transposed in layered_names(config)}
    if CELLS[config.cell].recurrent_weights:                     # the residual block around RNN / LSTM / GRU
        for k in range(config.num_layers):
            p = {name[len(f"l{k}."):]: value for name, value in params.items() if name.startswith(f"l{k}.")}
            state.update(layer_to_torch(p, config.cell, f"layers.{k}.rnn.", 0))
    return {name: np.ascontiguousarray(value) for name, value in state.items()}


def to_torch_gates(array: np.ndarray, cell: str, axis: int) -> np.ndarray:
    return reorder_gates(array, RNNLAB_GATES[cell], TORCH_GATES[cell], axis=axis)


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
