"""The character language model as an ONNX graph, with the recurrent state as explicit inputs and outputs.

    plain:     ids (T, B) int64 --OneHot--> x (T, B, V) --one layer per layer--> (T, B, H)
    residual:  ids --Gather emb--> x (T, B, H) --[y = x + layer(norm1 x); x = y + FFN(norm2 y)] per layer--> norm
               then --MatMul Wy, Add by--> logits (T, B, V)
    a layer:   RNN / LSTM / GRU: the standard operator;  minGRU / minLSTM: gates by elementary ops, Scan
    h0 (L, B, H) [c0 (L, B, H) for the LSTM]  -->  hn (L, B, H) [cn (L, B, H)]: the state after the last step

T and B are free: a runtime feeds one character at a time and passes ``hn`` (and ``cn``) back in to
sample, or feeds a whole window to score it; zeros for ``h0`` / ``c0`` are the start state. Feeding a
text in two calls with the state carried computes exactly what one call over the whole text computes.

Why the graph is written here, with ``onnx.helper``, and not exported through the torch twin
(``torch.onnx``): torch 2.13's exporter is the dynamo one, which needs the onnxscript package and traces
through ``torch.export``; the legacy TorchScript exporter is deprecated. Written directly, exporting needs
only the ``onnx`` package (no torch), every name in the graph is ours, each RNN / LSTM / GRU layer is ONE
standard operator whose meaning the ONNX specification fixes (runtimes have fused kernels for them; ONNX
Runtime Web runs them in WebAssembly), and the weight conversion is the same explicit gate reordering as
for PyTorch and Keras (``ONNX_GATES`` in ``frameworks/__init__.py``).

minGRU and minLSTM have no operator: a layer is their window kernel (mincells.py) -- every gate of the
window by elementary operators over (T, B, H) tensors, giving the linear recurrence's a_t and b_t, then a
``Scan`` over time whose body is one Mul and one Add (:func:`min_cell_layer`). The residual block's norms,
feed-forward layer and residuals are position-wise, so they are elementary operators over whole tensors
too (:func:`residual_stack`): RMSNorm written out (opset 17 has no RMSNormalization), LayerNorm as
``LayerNormalization``, GELU's tanh approximation written out in activations.py's order (no Gelu before
opset 20).

Opset 17 (IR version 8): every operator used here (OneHot, Gather, Slice, Squeeze / Unsqueeze with axes as
an input, Split, LSTM, GRU, RNN, Scan, MatMul, Add, Sub, Mul, Neg, Sigmoid, Softplus, Tanh, Sqrt,
Reciprocal, ReduceMean with axes as an attribute, LayerNormalization, Concat, Identity) has had its present
form since opsets 13-17, and 17 is the newest opset that runtimes of 2022 onwards (ONNX Runtime >= 1.12
and its web build, OpenVINO, TensorRT 8.6) all read.

The ONNX operators, in rnnlab's notation (docs/export.md has the full mapping):

* ``LSTM``: gates in the order (i, o, f, c); ``B`` = [input bias; recurrent bias] -> [b; 0]; no peepholes.
* ``GRU`` with ``linear_before_reset=1``: h~ = tanh(x W_h + b_h + r * (h R_h + bh_h)), the "reset after"
  GRU of cells.py; gates (z, r, h) where z is rnnlab's update gate u; ``B`` = [b; bh].
* ``RNN``: h' = tanh(x W + h R + b), ``B`` = [b; 0].

Adding a cell: one function in :data:`ONNX_LAYERS` that appends the nodes of one layer (a standard operator,
or elementary operators and a ``Scan`` as for the min cells); a block: one function in :data:`ONNX_STACKS`.

Precision: the graph computes in float32 whatever ``--dtype``; float16 weights are widened to float32
(exactly), so the graph then computes with the float16 values.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import RnnlabError, require
from ..nn.activations import GELU_C, GELU_K
from ..nn.cells import CELLS
from ..nn.norms import EPS as NORM_EPS
from . import ONNX_GATES, RNNLAB_GATES, reorder_gates

OPSET = 17
IR_VERSION = 8          # the IR version of opset 17 (onnx.helper.VERSION_TABLE): older runtimes read it
STATE_NAMES = ("h", "c")   # a cell's state tuple is (h,) or (h, c) (cells.py): graph inputs h0, c0 / outputs hn, cn


class Graph:
    """What one ONNX graph accumulates: nodes, weights (initializers) and unique names."""

    def __init__(self):
        self.nodes, self.initializers, self.scalars = [], [], {}

    def weight(self, name: str, array) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def constant(self, name: str, values, dtype=np.int64) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def scalar(self, value: float) -> str:
        """A float32 scalar, one initializer per value however often it is used (broadcast by the element-wise
        operators, as NumPy broadcasts a Python float in float32 arithmetic)."""
        if value not in self.scalars:
            self.scalars[value] = self.constant(f"scalar_{len(self.scalars)}", value, np.float32)
        return self.scalars[value]

    def node(self, op: str, inputs: list, outputs: list, **attributes) -> list:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(self.nodes)}", **attributes))
        return outputs

    def op(self, op: str, inputs: list, output: str, **attributes) -> str:
        """One node with one output, its name."""
        return self.node(op, inputs, [output], **attributes)[0]


def onnx_gates(array: np.ndarray, cell: str, axis: int) -> np.ndarray:
    return reorder_gates(array, RNNLAB_GATES[cell], ONNX_GATES[cell], axis=axis)


def layer_state_inputs(g: Graph, layer: int, n_states: int) -> list:
    """Layer ``layer``'s slice (1, B, H) of each state input (L, B, H): the operators' initial_h / initial_c."""
    start, end, axis = (g.constant(f"l{layer}.{name}", [value]) for name, value in
                        (("start", layer), ("end", layer + 1), ("axis", 0)))
    return [g.node("Slice", [f"{STATE_NAMES[k]}0", start, end, axis], [f"l{layer}.{STATE_NAMES[k]}0"])[0]
            for k in range(n_states)]


def standard_operator_layer(op: str, recurrent_bias: bool, **attributes):
    """A layer that is one ONNX recurrent operator: W (1, G*H, In), R (1, G*H, H), B (1, 2 G*H) = [b; bh]
    in ONNX's gate order. -> builder(g, layer, x, p, cell, hidden) -> (y (T, B, H), [final states (1, B, H)])."""
    def build(g: Graph, layer: int, x: str, p: dict, cell: str, hidden: int):
        W = g.weight(f"l{layer}.W", onnx_gates(p["Wx"], cell, axis=1).T[None])          # (1, GH, In)
        R = g.weight(f"l{layer}.R", onnx_gates(p["Wh"], cell, axis=1).T[None])          # (1, GH, H)
        bh = p["bh"] if recurrent_bias else np.zeros_like(p["b"])
        B = g.weight(f"l{layer}.B", np.concatenate([onnx_gates(p["b"], cell, 0), onnx_gates(bh, cell, 0)])[None])
        n_states = CELLS[cell].n_states
        states = layer_state_inputs(g, layer, n_states)
        outputs = [f"l{layer}.y4", *(f"l{layer}.{STATE_NAMES[k]}n" for k in range(n_states))]
        g.node(op, [x, W, R, B, "", *states], outputs, hidden_size=hidden, **attributes)
        y = g.node("Squeeze", [outputs[0], g.constant(f"l{layer}.squeeze", [1])], [f"l{layer}.y"])[0]  # (T, B, H)
        return y, outputs[1:]
    return build


def min_cell_layer(coefficients):
    """A minGRU / minLSTM layer (mincells.py), as the window kernel computes it: every gate of the window at once
    with elementary operators over (T, B, H) tensors -- ``coefficients(g, name, gate blocks) -> (a, b)`` --
    then the linear recurrence h_t = a_t h_{t-1} + b_t in a ``Scan`` whose body is one Mul and one Add
    (scan.linear_recurrence_loop). -> builder(g, layer, x, p, cell, hidden) as above."""
    def build(g: Graph, layer: int, x: str, p: dict, cell: str, hidden: int):
        name = f"l{layer}."
        zx = g.op("Add", [g.op("MatMul", [x, g.weight(f"{name}Wx", p["Wx"])], f"{name}xW"),
                          g.weight(f"{name}b", p["b"])], f"{name}zx")                      # (T, B, GH)
        gates = g.node("Split", [zx], [f"{name}z{k}" for k in range(CELLS[cell].n_gates)], axis=-1)  # (T, B, H)
        a, b = coefficients(g, name, gates)                                                 # (T, B, H) each
        (h0,) = layer_state_inputs(g, layer, 1)                                             # (1, B, H)
        h0 = g.op("Squeeze", [h0, g.constant(f"{name}axis0", [0])], f"{name}h0_2d")        # (B, H)
        hT, hs = g.node("Scan", [h0, a, b], [f"{name}hT", f"{name}y"], num_scan_inputs=2,
                        body=recurrence_body(name))                                         # (B, H), (T, B, H)
        return hs, [g.op("Unsqueeze", [hT, f"{name}axis0"], f"{name}hn")]                  # (1, B, H)
    return build


def recurrence_body(name: str):
    """The Scan's body, one step of the linear recurrence: (h_{t-1}; a_t, b_t) -> (h_t; h_t as the output)."""
    value = lambda n: helper.make_tensor_value_info(f"{name}scan.{n}", TensorProto.FLOAT, None)  # noqa: E731
    nodes = [helper.make_node("Mul", [f"{name}scan.a", f"{name}scan.h_prev"], [f"{name}scan.ah"]),
             helper.make_node("Add", [f"{name}scan.ah", f"{name}scan.b"], [f"{name}scan.h"]),
             helper.make_node("Identity", [f"{name}scan.h"], [f"{name}scan.h_out"])]
    return helper.make_graph(nodes, f"{name}recurrence", [value("h_prev"), value("a"), value("b")],
                             [value("h"), value("h_out")])


def mingru_coefficients(g: Graph, name: str, gates: list) -> tuple:
    """[zu, h~] -> a = 1 - u, b = u h~ with u = sig(zu) (mingru_window_forward)."""
    zu, h_tilde = gates
    u = g.op("Sigmoid", [zu], f"{name}u")
    return g.op("Sub", [g.scalar(1.0), u], f"{name}a_t"), g.op("Mul", [u, h_tilde], f"{name}b_t")


def minlstm_coefficients(g: Graph, name: str, gates: list) -> tuple:
    """[zf, zi, h~] -> a = f' = sig(softplus(-zi) - softplus(-zf)), b = (1 - f') h~ (minlstm_window_forward's
    form, which never divides 0 by 0; ONNX's Softplus is computed without overflow by ONNX Runtime)."""
    zf, zi, h_tilde = gates
    log_terms = [g.op("Softplus", [g.op("Neg", [z], f"{name}minus_z{gate}")], f"{name}softplus_minus_z{gate}")
                 for gate, z in (("i", zi), ("f", zf))]                                     # -log i, -log f
    a = g.op("Sigmoid", [g.op("Sub", log_terms, f"{name}d")], f"{name}a_t")                 # f'
    i_prime = g.op("Sub", [g.scalar(1.0), a], f"{name}i_prime")
    return a, g.op("Mul", [i_prime, h_tilde], f"{name}b_t")


ONNX_LAYERS = {
    "rnn": standard_operator_layer("RNN", False, activations=["Tanh"]),
    "lstm": standard_operator_layer("LSTM", False),
    "gru": standard_operator_layer("GRU", True, linear_before_reset=1),
    "mingru": min_cell_layer(mingru_coefficients),
    "minlstm": min_cell_layer(minlstm_coefficients),
}


# --------------------------------------------------------------------------------------------------------
# The stacks (--block): ids -> what the output layer reads (T, B, H), and each layer's final states
# --------------------------------------------------------------------------------------------------------

def layer_weights(params: dict, layer: int) -> dict:
    return {name[len(f"l{layer}."):]: value for name, value in params.items() if name.startswith(f"l{layer}.")}


def plain_stack(g: Graph, params: dict, config) -> tuple:
    """model.forward: one-hot ids (a row lookup in Wx, exactly), then the layers, each reading the h below."""
    x = g.node("OneHot", ["ids", g.constant("depth", config.vocab_size),
                          g.constant("one_hot_values", [0.0, 1.0], np.float32)], ["x"], axis=-1)[0]   # (T, B, V)
    finals = []
    for layer in range(config.num_layers):
        x, states = ONNX_LAYERS[config.cell](g, layer, x, layer_weights(params, layer), config.cell,
                                             config.hidden_size)
        finals.append(states)
    return x, finals


def normalisation(g: Graph, x: str, params: dict, prefix: str) -> str:
    """norms.norm_forward over the last axis: RMSNorm from elementary operators (opset 17 has none:
    x / sqrt(mean(x^2) + eps) * g), LayerNorm as the standard LayerNormalization operator (gain, bias, eps)."""
    g_name = g.weight(f"{prefix}g", params[f"{prefix}g"])
    if f"{prefix}b" in params:
        return g.op("LayerNormalization", [x, g_name, g.weight(f"{prefix}b", params[f"{prefix}b"])], f"{prefix}out",
                    axis=-1, epsilon=NORM_EPS)
    mean_square = g.op("ReduceMean", [g.op("Mul", [x, x], f"{prefix}square")], f"{prefix}mean_square", axes=[-1])
    root = g.op("Sqrt", [g.op("Add", [mean_square, g.scalar(NORM_EPS)], f"{prefix}plus_eps")], f"{prefix}root")
    r = g.op("Reciprocal", [root], f"{prefix}r")                                            # (T, B, 1)
    return g.op("Mul", [g.op("Mul", [x, r], f"{prefix}xh"), g_name], f"{prefix}out")


def gelu(g: Graph, z: str, name: str) -> str:
    """activations.gelu, the tanh approximation in its order of operations (opset 17 has no Gelu operator):
    0.5 z (1 + tanh(c z (1 + k z^2)))."""
    t = g.op("Mul", [g.op("Mul", [z, z], f"{name}z2"), g.scalar(GELU_K)], f"{name}kz2")
    t = g.op("Mul", [g.op("Add", [t, g.scalar(1.0)], f"{name}1_kz2"), z], f"{name}z_kz3")
    t = g.op("Tanh", [g.op("Mul", [t, g.scalar(GELU_C)], f"{name}inner")], f"{name}t")
    a = g.op("Mul", [g.op("Add", [t, g.scalar(1.0)], f"{name}1_t"), z], f"{name}z_1_t")
    return g.op("Mul", [a, g.scalar(0.5)], f"{name}gelu")


def feed_forward(g: Graph, v: str, params: dict, prefix: str) -> str:
    """block.feed_forward: gelu(v W1 + b1) W2 + b2."""
    z = g.op("Add", [g.op("MatMul", [v, g.weight(f"{prefix}W1", params[f"{prefix}W1"])], f"{prefix}vW1"),
                     g.weight(f"{prefix}b1", params[f"{prefix}b1"])], f"{prefix}z")          # (T, B, F)
    a = gelu(g, z, prefix)
    return g.op("Add", [g.op("MatMul", [a, g.weight(f"{prefix}W2", params[f"{prefix}W2"])], f"{prefix}aW2"),
                        g.weight(f"{prefix}b2", params[f"{prefix}b2"])], f"{prefix}out")     # (T, B, H)


def residual_stack(g: Graph, params: dict, config) -> tuple:
    """model.residual_forward: x = E[ids]; per layer y = x + RNN(norm1 x), x = y + FFN(norm2 y); norm(x)."""
    x = g.op("Gather", [g.weight("emb", params["emb"]), "ids"], "x", axis=0)                 # (T, B, H)
    finals = []
    for layer in range(config.num_layers):
        name = f"l{layer}."
        hs, states = ONNX_LAYERS[config.cell](g, layer, normalisation(g, x, params, f"{name}norm1."),
                                              layer_weights(params, layer), config.cell, config.hidden_size)
        y = g.op("Add", [x, hs], f"{name}residual1")                                         # (T, B, H)
        f = feed_forward(g, normalisation(g, y, params, f"{name}norm2."), params, f"{name}ff.")
        x = g.op("Add", [y, f], f"{name}residual2")
        finals.append(states)
    return normalisation(g, x, params, "norm."), finals


ONNX_STACKS = {"plain": plain_stack, "residual": residual_stack}


def to_onnx(params: dict, config, metadata: dict | None = None) -> bytes:
    """The serialised ONNX model of a language model (``model.ModelConfig``), checked by ``onnx.checker``.
    ``metadata`` ({str: str}) goes into the model's metadata_props (vocabulary, validation loss, ...)."""
    require(config.cell in ONNX_LAYERS, f"the ONNX export has no graph for the {config.cell} cell yet: export "
                                        f"it as html, safetensors or rnnlab")
    V, H, L, n_states = config.vocab_size, config.hidden_size, config.num_layers, CELLS[config.cell].n_states
    g = Graph()
    x, finals = ONNX_STACKS[config.block](g, params, config)      # (T, B, H), per layer its final states
    for k in range(n_states):                                     # hn (L, B, H) [cn]: the layers' final states
        g.node("Concat", [states[k] for states in finals], [f"{STATE_NAMES[k]}n"], axis=0)
    hy = g.node("MatMul", [x, g.weight("Wy", params["Wy"])], ["hy"])[0]                            # (T, B, V)
    g.node("Add", [hy, g.weight("by", params["by"])], ["logits"])

    state_shape = [L, "batch", H]
    graph = helper.make_graph(
        g.nodes, f"rnnlab_{config.cell}",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["time", "batch"]),
                *(helper.make_tensor_value_info(f"{STATE_NAMES[k]}0", TensorProto.FLOAT, state_shape)
                  for k in range(n_states))],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["time", "batch", V]),
                 *(helper.make_tensor_value_info(f"{STATE_NAMES[k]}n", TensorProto.FLOAT, state_shape)
                   for k in range(n_states))],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="rnnlab", doc_string=GRAPH_DOC)
    helper.set_model_props(model, {"rnnlab.cell": config.cell, "rnnlab.block": config.block,
                                   "rnnlab.hidden_size": str(H), "rnnlab.num_layers": str(L),
                                   "rnnlab.vocab_size": str(V), **(metadata or {})})
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


GRAPH_DOC = ("rnnlab character language model. Inputs: ids (time, batch) int64 character ids; h0 (layers, batch, "
             "hidden) float32 [and c0 for an LSTM], zeros to start. Outputs: logits (time, batch, vocabulary) for the "
             "character after each position; hn [cn]: the state after the last step, to feed back as h0 [c0]. The "
             "vocabulary (id -> character) is the JSON list in metadata_props rnnlab.vocabulary.")


# --------------------------------------------------------------------------------------------------------
# Running it: ONNX Runtime behind rnnlab's forward interface
# --------------------------------------------------------------------------------------------------------

def onnx_session(model: bytes | str):
    """An ONNX Runtime CPU session of a model (its bytes or a path), one thread (a character at a time
    gains nothing from more)."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise RnnlabError("running an ONNX model needs onnxruntime, which is not installed: "
                          "pip install 'rnnlab[export]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnx_forward(session):
    """``forward(ids (T, B), state or None) -> (logits (T, B, V), state)`` -- the interface of
    ``sampling.numpy_forward`` -- running the exported graph; the state is rnnlab's: per layer a tuple of
    (B, H) arrays. With it, ``sampling.sample(..., forward=onnx_forward(session))`` samples through ONNX
    Runtime with rnnlab's draw."""
    inputs = {i.name: i for i in session.get_inputs()}
    n_states = len(inputs) - 1
    L, H = inputs["h0"].shape[0], inputs["h0"].shape[2]

    def forward(ids: np.ndarray, state):
        B = ids.shape[1]
        if state is None:
            stacked = [np.zeros((L, B, H), np.float32) for _ in range(n_states)]
        else:
            stacked = [np.stack([layer[k] for layer in state]).astype(np.float32) for k in range(n_states)]
        feeds = {"ids": np.ascontiguousarray(ids, dtype=np.int64),
                 **{f"{STATE_NAMES[k]}0": stacked[k] for k in range(n_states)}}
        logits, *finals = session.run(None, feeds)
        return logits, [tuple(final[layer] for final in finals) for layer in range(L)]
    return forward

