"""Initialisation schemes: the starting weights of every cell and of the output layer, one scheme per entry.

A scheme fills one recurrent layer -- ``Wx`` (In, GH), ``Wh`` (H, GH) (not for minGRU / minLSTM, which have
none), ``b`` (GH,) and, for a cell with a recurrent bias (GRU), ``bh`` (GH,) -- and the output layer ``Wy``
(H, V), ``by`` (V,). ``pytorch`` and ``keras`` are those frameworks' own defaults, so a student can start
rnnlab exactly as they would:

==========  ============================  =========================  ======================  ================
scheme      Wx                            Wh                         b (and bh)              Wy, by
==========  ============================  =========================  ======================  ================
rnnlab      Glorot U(+-sqrt(6/(In+GH)))   orthogonal rows (H, GH)    0                       Glorot, 0
pytorch     U(+-1/sqrt(H))                U(+-1/sqrt(H))             U(+-1/sqrt(H)) each     U(+-1/sqrt(H))
keras       Glorot U(+-sqrt(6/(In+GH)))   orthogonal rows (H, GH)    0; LSTM forget slice 1  Glorot, 0
blockorth   U(+-1/sqrt(H))                orthogonal (H, H) per gate 0; LSTM forget slice 1  U(+-1/sqrt(H)), 0
==========  ============================  =========================  ======================  ================

"U(+-1/sqrt(H)) each": PyTorch has two bias vectors per layer (``bias_ih`` + ``bias_hh``) drawn
independently; where rnnlab has one (RNN, LSTM) it draws their *sum* (minGRU / minLSTM, whose twin is one
``nn.Linear``, draw one), so the function at step 0 has the
same distribution. The GRU keeps both, like PyTorch. "orthogonal rows (H, GH)": one orthogonal matrix over
all G gate blocks together (Keras' ``Orthogonal`` on the recurrent kernel), so ||h Wh|| = ||h|| and each
gate's (H, H) block has entries of standard deviation 1/sqrt(GH).

``rnnlab`` (the default) is Keras' scheme without the unit forget bias. ``blockorth`` is what rnnlab used
before: one orthogonal (H, H) block *per gate* -- every gate's recurrent input as large as the whole of
Keras', entries sqrt(G) times Keras' and sqrt(3) times PyTorch's -- and a forget-gate bias of 1. With it the
LSTM learned markedly slower than PyTorch's and its carried cell state grew into the thousands; the ablation
that chose the new default, for every cell, is in docs/results.md.

``forget_bias`` (LSTM only): when given, the forget-gate slice of ``b`` starts at that constant instead of
the scheme's own value. The forget gate f = sigma(z_f) is the share of the cell state kept per step, so
forget_bias 0 keeps half of it at the start, 1 keeps sigma(1) = 0.73 (Keras' ``unit_forget_bias``,
Jozefowicz et al. 2015), 3 keeps 0.95. ``None`` leaves the scheme's value: 0 for rnnlab, 1 for keras and
blockorth, random around 0 (as every bias) for pytorch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import require


def uniform(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape)


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """U(+-sqrt(6 / (fan_in + fan_out))): Glorot & Bengio 2010, Keras' default kernel initialiser."""
    return uniform(rng, (fan_in, fan_out), np.sqrt(6.0 / (fan_in + fan_out)))


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random (rows, cols) matrix with orthonormal rows (rows <= cols) or columns (rows >= cols): the QR
    of a Gaussian matrix, signs fixed so the distribution is uniform (Saxe et al. 2014; Keras' Orthogonal).
    (H, H): every singular value 1, so ||h @ Wh|| = ||h||."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))                                  # (max, min), orthonormal columns
    return q if rows >= cols else q.T


# A scheme: (cell, input_size, hidden, rng) -> {Wx, Wh, b[, bh]}  and  (hidden, vocab, rng) -> {Wy, by}.

def pytorch_layer(cell, input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    k, GH = 1.0 / np.sqrt(hidden), cell.n_gates * hidden
    p = {"Wx": uniform(rng, (input_size, GH), k)}
    if cell.recurrent_weights:
        p["Wh"] = uniform(rng, (hidden, GH), k)
    if cell.recurrent_bias:
        p["b"], p["bh"] = uniform(rng, GH, k), uniform(rng, GH, k)
    elif cell.recurrent_weights:
        p["b"] = uniform(rng, GH, k) + uniform(rng, GH, k)       # bias_ih + bias_hh
    else:
        p["b"] = uniform(rng, GH, k)                             # minGRU / minLSTM: one bias, as nn.Linear
    return p


def pytorch_output(hidden: int, vocab: int, rng: np.random.Generator) -> dict:
    k = 1.0 / np.sqrt(hidden)                                    # nn.Linear: kaiming_uniform(a=sqrt(5))
    return {"Wy": uniform(rng, (hidden, vocab), k), "by": uniform(rng, vocab, k)}


def glorot_orthogonal_layer(cell, input_size: int, hidden: int, rng: np.random.Generator,
                            forget_bias: float = 0.0) -> dict:
    """Keras' recurrent-layer defaults: Glorot Wx, one orthogonal (H, GH) Wh, zero biases; the LSTM's
    forget slice at ``forget_bias`` (Keras: 1, ``unit_forget_bias=True``; rnnlab: 0)."""
    GH = cell.n_gates * hidden
    p = {"Wx": glorot_uniform(rng, input_size, GH), "b": np.zeros(GH)}
    if cell.recurrent_weights:
        p["Wh"] = orthogonal(rng, hidden, GH)
    if cell.recurrent_bias:
        p["bh"] = np.zeros(GH)
    if cell.forget_gate is not None:
        set_forget_bias(cell, p, hidden, forget_bias)
    return p


def keras_layer(cell, input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    return glorot_orthogonal_layer(cell, input_size, hidden, rng, forget_bias=1.0)


def rnnlab_layer(cell, input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    return glorot_orthogonal_layer(cell, input_size, hidden, rng, forget_bias=0.0)


def keras_output(hidden: int, vocab: int, rng: np.random.Generator) -> dict:
    return {"Wy": glorot_uniform(rng, hidden, vocab), "by": np.zeros(vocab)}


def blockorth_layer(cell, input_size: int, hidden: int, rng: np.random.Generator) -> dict:
    GH = cell.n_gates * hidden
    p = {"Wx": uniform(rng, (input_size, GH), 1.0 / np.sqrt(hidden)), "b": np.zeros(GH)}
    if cell.recurrent_weights:
        p["Wh"] = np.concatenate([orthogonal(rng, hidden, hidden) for _ in range(cell.n_gates)], axis=1)
    if cell.recurrent_bias:
        p["bh"] = np.zeros(GH)
    if cell.forget_gate is not None:
        set_forget_bias(cell, p, hidden, 1.0)
    return p


def blockorth_output(hidden: int, vocab: int, rng: np.random.Generator) -> dict:
    return {"Wy": uniform(rng, (hidden, vocab), 1.0 / np.sqrt(hidden)), "by": np.zeros(vocab)}


INIT_SCHEMES: dict[str, tuple[Callable, Callable]] = {
    "rnnlab": (rnnlab_layer, keras_output),
    "pytorch": (pytorch_layer, pytorch_output),
    "keras": (keras_layer, keras_output),
    "blockorth": (blockorth_layer, blockorth_output),
}
DEFAULT_INIT = "rnnlab"


def set_forget_bias(cell, p: dict, hidden: int, value: float) -> None:
    """The forget-gate slice of ``b`` := value (block ``cell.forget_gate`` of the gate layout)."""
    block = cell.forget_gate
    p["b"][block * hidden:(block + 1) * hidden] = value


def check_init(cell, scheme: str, forget_bias: float | None) -> None:
    require(scheme in INIT_SCHEMES, f"unknown --init {scheme!r}: use one of {', '.join(INIT_SCHEMES)}")
    require(forget_bias is None or cell.forget_gate is not None,
            f"--forget_bias applies to the LSTM and minLSTM only; the {cell.name} cell has no forget gate")
    require(forget_bias is None or np.isfinite(forget_bias), f"--forget_bias must be finite, got {forget_bias}")


def init_layer(cell, input_size: int, hidden: int, rng: np.random.Generator, scheme: str = DEFAULT_INIT,
               forget_bias: float | None = None) -> dict:
    """One recurrent layer's parameters (float64) under ``scheme``; see the module docstring."""
    check_init(cell, scheme, forget_bias)
    p = INIT_SCHEMES[scheme][0](cell, input_size, hidden, rng)
    if forget_bias is not None:
        set_forget_bias(cell, p, hidden, forget_bias)
    return p


def init_output(hidden: int, vocab: int, rng: np.random.Generator, scheme: str = DEFAULT_INIT) -> dict:
    """The output layer's parameters (float64) under ``scheme``."""
    require(scheme in INIT_SCHEMES, f"unknown --init {scheme!r}: use one of {', '.join(INIT_SCHEMES)}")
    return INIT_SCHEMES[scheme][1](hidden, vocab, rng)
