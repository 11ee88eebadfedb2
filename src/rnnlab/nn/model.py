"""CharModel: a stack of recurrent layers (any cell in ``CELLS``) under a softmax output layer.

    ids (T, B) --layer 0--> h^0 (T, B, H) --dropout--> layer 1 --> ... --> h^{L-1} --Wy, by--> logits (T, B, V)

That is the plain stack (``--block plain``, the default). ``--block residual`` puts every layer in the
residual block of block.py instead -- embedding, pre-normalisation, residual connections, a feed-forward
layer, a final normalisation (:func:`residual_forward`) -- for any cell.

Parameters are one flat dict of named arrays -- ``l0.Wx``, ``l0.Wh``, ``l0.b`` (+ ``l0.bh`` for GRU), ...,
``Wy``, ``by`` -- and gradients use the same keys, so optimizers, clipping and checkpoints see one
uniform dict. The first layer's ``Wx`` (V, G*H) doubles as the character embedding: x is one-hot, so
``x @ Wx`` is the row ``Wx[id]``.

:func:`loss_and_grads` is the whole learning signal, step by step:

    1. forward        logits = model(ids)
    2. loss (+ dy)     L, dy = softmax_cross_entropy(logits, targets, mask)
    3. project to da   da = dy Wy^T
    4. backward        BPTT through every layer, top to bottom
    5. output grads    dWy = h^T dy, dby = sum dy

The regularisers of regularizers.py (all off by default) act where a training step draws their masks
(:func:`draw_masks`, once per batch): locked dropout on the characters (``dropout_input``), between the
layers (``dropout`` with ``locked_dropout``) and on the top layer's output (``dropout_output``); weight drop on
every W_h; zoneout inside the sequence loop (and its expectation at evaluation); AR and TAR on the top
layer's output, whose gradient joins da before BPTT (step 3 of :func:`loss_and_grads`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..errors import RnnlabError, TrainingDiverged, require
from .block import (
    BLOCKS,
    block_param_shapes,
    init_block,
    init_norm,
    norm_of,
    norm_param_shapes,
    residual_layer_backward,
    residual_layer_forward,
)
from .cells import CELLS
from .initializers import DEFAULT_INIT, init_output
from .losses import softmax_cross_entropy
from .norms import NORMS, norm_backward, norm_forward
from .optim import clip_by_global_norm, clip_by_value, global_norm
from .output import output_forward, output_layer_grads, project_logit_grad_to_hidden
from .recurrence import (
    Workspace,
    embedding_grad,
    layer_input_grads,
    layer_inputs,
    sequence_backward,
    sequence_forward,
    workspace_empty,
)
from .regularizers import (
    activation_penalty,
    drop_weights,
    dropout_mask,
    input_dropout_scale,
    weight_drop_grad,
    zoneout_mask,
)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = "rnn"
    hidden_size: int = 100
    num_layers: int = 1
    dropout: float = 0.0  # plain: between stacked layers; residual: on both branches; training only (inverted)
    block: str = "plain"  # plain: layers stacked directly; residual: pre-norm + residual + feed-forward (block.py)
    norm: str = "rms"     # residual block: rms (RMSNorm) or layer (LayerNorm)
    ffn_mult: int = 4     # residual block: the feed-forward layer's width in units of hidden_size
    # the regularisers (regularizers.py; training only but zoneout, whose expectation evaluation uses)
    dropout_input: float = 0.0         # locked dropout on the characters: whole character types per sequence
    dropout_output: float = 0.0        # locked dropout on the top layer's output, before the output layer
    locked_dropout: bool = False       # ``dropout`` draws one mask per sequence instead of one per character
    weight_drop: float = 0.0           # DropConnect on every W_h: one mask per training step
    zoneout: float = 0.0               # zoneout rate of h (the RNN's and GRU's only state)
    zoneout_cell: float | None = None  # LSTM: zoneout rate of c (None: ``zoneout``'s)
    ar: float = 0.0                    # activation regularisation alpha: alpha mean ||h_t||^2 of the top layer
    tar: float = 0.0                   # temporal activation regularisation beta: beta mean ||h_t - h_{t-1}||^2
    # fields older checkpoints lack (their models had the defaults): the checkpoint schema lets them be missing
    ADDED_LATER: ClassVar[tuple] = ("block", "norm", "ffn_mult", "dropout_input", "dropout_output", "locked_dropout",
                                    "weight_drop", "zoneout", "zoneout_cell", "ar", "tar")
    # fields that change only how the model is trained, not the function it computes at evaluation: a run may
    # resume with other values (every other field is the model itself)
    TRAINING_ONLY: ClassVar[tuple] = ("dropout", "dropout_input", "dropout_output", "locked_dropout", "weight_drop",
                                      "ar", "tar")

    def __post_init__(self):
        require(self.cell in CELLS, f"unknown cell {self.cell!r}: use one of {', '.join(CELLS)}")
        require(self.vocab_size >= 2, f"vocabulary of {self.vocab_size} character(s): a corpus needs at least 2")
        require(self.hidden_size > 0, f"--hidden_size must be > 0, got {self.hidden_size}")
        require(self.num_layers > 0, f"--num_layers must be > 0, got {self.num_layers}")
        require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        require(self.block in BLOCKS, f"unknown --block {self.block!r}: use one of {', '.join(BLOCKS)}")
        require(self.norm in NORMS, f"unknown --norm {self.norm!r}: use one of {', '.join(NORMS)}")
        require(self.ffn_mult > 0, f"--ffn_mult must be > 0, got {self.ffn_mult}")
        for name in ("dropout_input", "dropout_output", "weight_drop", "zoneout", "zoneout_cell"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value < 1.0, f"--{name} must be in [0, 1), got {value}")
        for name in ("ar", "tar"):
            require(getattr(self, name) >= 0, f"--{name} must be >= 0, got {getattr(self, name)}")
        require(not self.has_zoneout or CELLS[self.cell].window_forward is None,
                f"--zoneout does not apply to --cell {self.cell}: its window kernel computes a whole window at once "
                "(docs/mincells.md); zone out an rnn, lstm or gru")

    @property
    def residual(self) -> bool:
        return self.block == "residual"

    @property
    def zoneout_rates(self) -> tuple:
        """The zoneout rate of each state part: (h,) or, for the LSTM, (h, c)."""
        cell_rate = self.zoneout if self.zoneout_cell is None else self.zoneout_cell
        return (self.zoneout, cell_rate)[:CELLS[self.cell].n_states]

    @property
    def has_zoneout(self) -> bool:
        return any(self.zoneout_rates)

    @property
    def ffn_size(self) -> int:
        return self.ffn_mult * self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


def layer_params(params: dict, layer: int) -> dict:
    """The parameters of one layer with the ``l{k}.`` prefix removed: {Wx, Wh, b[, bh]}."""
    return strip_prefix(params, f"l{layer}.")


def strip_prefix(params: dict, prefix: str) -> dict:
    """The entries whose names start with ``prefix``, under their names without it (views, not copies)."""
    return {key[len(prefix):]: value for key, value in params.items() if key.startswith(prefix)}


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32, scheme: str = DEFAULT_INIT,
                forget_bias: float | None = None) -> dict:
    """Fresh parameters under an initialisation ``scheme`` (rnnlab, pytorch, keras, blockorth) with an
    optional LSTM ``forget_bias``; see ``initializers.py``. The residual stack's output layer starts at
    Wy = 0: the final normalisation hands it rows of RMS 1, which a Glorot Wy would turn into logits of
    standard deviation ~1.1 -- a first loss ~0.7 nats above ln V instead of ln V. (With Wy = 0 the first
    step's gradient reaches only Wy and by; the layers below learn from the second step on.)"""
    cell, H, V = CELLS[config.cell], config.hidden_size, config.vocab_size
    params = {"emb": init_output(V, H, rng, scheme)["Wy"]} if config.residual else {}   # (V, H)
    for layer in range(config.num_layers):
        layer_input = V if layer == 0 and not config.residual else H
        for name, value in cell.init(layer_input, H, rng, scheme, forget_bias).items():
            params[f"l{layer}.{name}"] = value
        if config.residual:
            for name, value in init_block(H, config.ffn_size, config.norm, rng, scheme).items():
                params[f"l{layer}.{name}"] = value
    params.update(init_output(H, V, rng, scheme))
    if config.residual:
        params.update(init_norm("norm.", H, config.norm))
        params["Wy"] = np.zeros((H, V))   # it reads unit-RMS rows: a drawn Wy would start 0.7 nats above ln V
    return {name: np.ascontiguousarray(value, dtype=dtype) for name, value in params.items()}  # one layout: C


def param_shapes(config: ModelConfig) -> dict:
    """{name: shape} of every parameter ``init_params`` makes, computed without allocating anything."""
    cell, H, V = CELLS[config.cell], config.hidden_size, config.vocab_size
    shapes = {"emb": (V, H)} if config.residual else {}
    for layer in range(config.num_layers):
        layer_shapes = cell.param_shapes(V if layer == 0 and not config.residual else H, H)
        if config.residual:
            layer_shapes.update(block_param_shapes(H, config.ffn_size, config.norm))
        shapes.update({f"l{layer}.{name}": shape for name, shape in layer_shapes.items()})
    if config.residual:
        shapes.update(norm_param_shapes("norm.", H, config.norm))
    return {**shapes, "Wy": (H, V), "by": (V,)}


def training_bytes(config: ModelConfig, batch: int, seq_length: int, itemsize: int, optimizer_slots: int) -> int:
    """About how many bytes one training step holds: parameters, gradients and optimizer moments, plus the
    per-step arrays of the forward pass and BPTT (input projections, states, caches, gate gradients,
    logits). An estimate to refuse impossible sizes up front, not an exact account."""
    cell, H, T, B = CELLS[config.cell], config.hidden_size, seq_length, batch
    n_params = sum(math.prod(shape) for shape in param_shapes(config).values())
    per_layer = T * B * H * (2 * cell.n_gates + sum(cell.cache_widths) + 2) + B * H
    if config.residual:                                        # norms, branches, the FFN's (T, B, F) arrays
        per_layer += T * B * (8 * H + 3 * config.ffn_size)
    activations = config.num_layers * per_layer + T * B * (2 * config.vocab_size + H)
    return itemsize * (n_params * (2 + optimizer_slots) + activations)


def check_params(config: ModelConfig, params: dict) -> None:
    """Raise RnnlabError unless ``params`` has exactly the arrays (names and shapes) ``config`` needs."""
    check_param_shapes(param_shapes(config), params,
                       f"{config.cell} {config.num_layers}x{config.hidden_size}, vocabulary {config.vocab_size}")


def check_param_shapes(expected: dict, params: dict, model: str = "the model") -> None:
    """Raise RnnlabError unless ``params`` has the names of ``expected`` ({name: shape}), each array with
    that shape; ``model`` describes the model in the message."""
    missing = sorted(expected.keys() - params.keys())
    extra = sorted(params.keys() - expected.keys())
    require(not missing and not extra, f"parameters do not match the model: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if params[name].shape != tuple(shape):
            raise RnnlabError(f"parameter {name} has shape {params[name].shape}, the model needs {tuple(shape)} "
                              f"({model})")


def zero_state(config: ModelConfig, batch: int, dtype=np.float32) -> list:
    """The initial state: one tuple of zero (B, H) arrays per layer."""
    cell = CELLS[config.cell]
    return [cell.zero_state(batch, config.hidden_size, dtype) for _ in range(config.num_layers)]


@dataclass
class StepMasks:
    """Every random draw of one training step (regularizers.py), made once for the whole batch
    (:func:`draw_masks`); None where that regulariser is off."""

    dropout: list | None = None       # between stacked layers (plain) / on the residual branches: (T or 1, B, H)
    inputs: np.ndarray | None = None  # (B, V) the locked character mask (--dropout_input)
    output: np.ndarray | None = None  # (1, B, H) on the top layer's output (--dropout_output)
    weights: list | None = None       # per layer, M (H, G*H) on W_h (--weight_drop)
    zoneout: list | None = None       # per layer, per state part: Z (T, B, H) bool, or 0 for a part not zoned out

    def rows(self, rows: slice) -> StepMasks:
        """A batch shard's share: every mask cut to the shard's sequences (columns); W_h's masks whole."""
        def cut(mask):
            return mask if not isinstance(mask, np.ndarray) else mask[rows] if mask.ndim == 2 else mask[:, rows]
        return StepMasks(None if self.dropout is None else [cut(m) for m in self.dropout], cut(self.inputs),
                         cut(self.output), self.weights,
                         None if self.zoneout is None else [tuple(cut(z) for z in layer) for layer in self.zoneout])


@dataclass
class ForwardCache:
    """What the backward pass needs from the forward pass."""

    layer_inputs: list = field(default_factory=list)   # x of each layer: ids (T, B), then (T, B, H)
    sequences: list = field(default_factory=list)      # per layer, its recurrence.SequenceCache
    dropout_masks: list = field(default_factory=list)  # per layer below the top: scaled 0/1 mask or None
    layer_params: list = field(default_factory=list)   # per layer, its parameters as the step used them
    top_hidden: np.ndarray | None = None               # what the output layer reads, (T, B, H)
    top_recurrent: np.ndarray | None = None            # the top layer's own output h (AR, TAR), (T, B, H)
    masks: StepMasks | None = None                     # the step's random draws (None: evaluation)
    input_scale: np.ndarray | None = None              # (T, B) character dropout's share of each input row


def dropout_mask_count(config: ModelConfig) -> int:
    """Masks per training step: plain, one between each two layers; residual, one per branch (2 per layer)."""
    return 2 * config.num_layers if config.residual else config.num_layers - 1


def draw_masks(config: ModelConfig, ids_shape: tuple, rng: np.random.Generator | None, dtype) -> StepMasks | None:
    """Every mask one training step over ids (T, B) draws, in a fixed order -- ``dropout`` first (as it always
    was: the default step draws exactly what it did), then the characters, the output, each layer's W_h, each
    layer's zoneout -- or None when the step draws nothing (no ``rng``, or no regulariser on). A batch split
    into shards draws them once for the whole batch, so each shard uses its rows of the very masks the unsplit
    step would use (:meth:`StepMasks.rows`)."""
    if rng is None:
        return None
    (T, B), H, c = ids_shape, config.hidden_size, config
    masks = StepMasks()
    if c.dropout > 0 and dropout_mask_count(c) > 0:
        shape = (1 if c.locked_dropout else T, B, H)            # locked: one mask per sequence
        masks.dropout = [dropout_mask(c.dropout, shape, rng, dtype) for _ in range(dropout_mask_count(c))]
    if c.dropout_input > 0:
        masks.inputs = dropout_mask(c.dropout_input, (B, c.vocab_size), rng, dtype)       # (B, V)
    if c.dropout_output > 0:
        masks.output = dropout_mask(c.dropout_output, (1, B, H), rng, dtype)              # (1, B, H)
    cell = CELLS[c.cell]
    if c.weight_drop > 0 and cell.recurrent_weights:
        masks.weights = [dropout_mask(c.weight_drop, (H, cell.n_gates * H), rng, dtype) for _ in range(c.num_layers)]
    if c.has_zoneout:
        masks.zoneout = [tuple(zoneout_mask(rate, (T, B, H), rng) if rate else 0.0 for rate in c.zoneout_rates)
                         for _ in range(c.num_layers)]
    return masks if any(getattr(masks, f.name) is not None for f in fields(StepMasks)) else None


def layer_step_params(params: dict, layer: int, masks: StepMasks | None) -> dict:
    """Layer ``layer``'s parameters as a training step uses them: with W~_h = W_h * M under weight drop."""
    p = layer_params(params, layer)
    return p if masks is None or masks.weights is None else drop_weights(p, masks.weights[layer])


def layer_zoneout(config: ModelConfig, masks: StepMasks | None, layer: int) -> tuple | None:
    """The ``zoneout`` argument of layer ``layer``'s sequence loop: the step's masks when training, the rates
    themselves (the expectation) when evaluating, None without zoneout."""
    if not config.has_zoneout:
        return None
    return config.zoneout_rates if masks is None or masks.zoneout is None else masks.zoneout[layer]


def character_scale(masks: StepMasks | None, ids: np.ndarray) -> np.ndarray | None:
    """(T, B) character dropout's scale of each input row, or None."""
    return None if masks is None or masks.inputs is None else input_dropout_scale(ids, masks.inputs)


def forward(params: dict, config: ModelConfig, ids: np.ndarray, state: list,
            dropout_rng: np.random.Generator | None = None, ws: Workspace | None = None,
            masks: StepMasks | None = None):
    """ids (T, B) -> (logits (T, B, V), final state, cache). A training step's random draws come from
    ``dropout_rng`` (:func:`draw_masks`) or are given as ``masks`` (a batch shard's rows); with neither it is
    evaluation: no dropout, zoneout's expectation. With a workspace ``ws`` the large per-step arrays are reused
    from the previous call."""
    if masks is None and dropout_rng is not None:
        masks = draw_masks(config, ids.shape, dropout_rng, params["Wy"].dtype)
    if config.residual:
        return residual_forward(params, config, ids, state, ws, masks)
    cell = CELLS[config.cell]
    cache = ForwardCache(masks=masks, input_scale=character_scale(masks, ids))
    x = ids
    final_state = []
    for layer in range(config.num_layers):
        p = layer_step_params(params, layer, masks)
        zx = layer_inputs(cell, x, p, ws, f"l{layer}.", cache.input_scale if layer == 0 else None)  # (T, B, GH)
        hs, last, steps = sequence_forward(cell, zx, state[layer], p, ws, f"l{layer}.",       # (T, B, H)
                                           layer_zoneout(config, masks, layer))
        cache.layer_inputs.append(x)
        cache.sequences.append(steps)
        cache.layer_params.append(p)
        final_state.append(last)
        mask = None
        if masks is not None and masks.dropout is not None and layer < config.num_layers - 1:
            mask = masks.dropout[layer]                          # (T, B, H), or (1, B, H) locked
        if mask is not None:
            hs = hs * mask
        cache.dropout_masks.append(mask)
        x = hs
    cache.top_recurrent = x
    if masks is not None and masks.output is not None:
        x = x * masks.output                                     # (T, B, H) locked output dropout
    cache.top_hidden = x
    logits = workspace_empty(ws, "logits", (*ids.shape, params["Wy"].shape[1]), x.dtype)
    return output_forward(x, params["Wy"], params["by"], logits), final_state, cache


def backward(da: np.ndarray, cache: ForwardCache, params: dict, config: ModelConfig,
             ws: Workspace | None = None, d_top: np.ndarray | None = None) -> dict:
    """BPTT through the stack: da = dL/dh of the top layer (T, B, H) -> grads of every layer parameter.
    ``d_top``: a gradient on the top recurrent layer's own output besides da (AR and TAR)."""
    if config.residual:
        return residual_backward(da, cache, params, config, ws, d_top)
    cell = CELLS[config.cell]
    grads = {}
    dh = da if d_top is None else da + d_top
    weight_masks = cache.masks.weights if cache.masks is not None else None
    for layer in reversed(range(config.num_layers)):
        p = cache.layer_params[layer]
        dzx, layer_grads, _ = sequence_backward(cell, dh, cache.sequences[layer], p, ws=ws, name=f"l{layer}.")
        if weight_masks is not None:
            weight_drop_grad(layer_grads, weight_masks[layer])   # dW_h = dW~_h * M
        x = cache.layer_inputs[layer]
        layer_grads["Wx"], layer_grads["b"], dx = layer_input_grads(cell, x, dzx, p["Wx"],
                                                                    cache.input_scale if layer == 0 else None)
        grads.update({f"l{layer}.{name}": value for name, value in layer_grads.items()})
        if layer > 0:
            mask = cache.dropout_masks[layer - 1]
            dh = dx if mask is None else dx * mask               # (T, B, H) into the layer below
    return grads


@dataclass
class ResidualCache:
    """What the residual stack's backward needs from its forward."""

    ids: np.ndarray                                    # (T, B) character ids
    layers: list = field(default_factory=list)         # per layer, its block.LayerCache
    layer_params: list = field(default_factory=list)   # per layer, its parameters as the step used them
    top_norm: object = None                            # norms.NormCache of the final normalisation
    top_hidden: np.ndarray | None = None               # norm(x^L) (T, B, H): what the output layer reads
    top_recurrent: np.ndarray | None = None            # the last layer's recurrent output h (AR, TAR)
    masks: StepMasks | None = None                     # the step's random draws (None: evaluation)
    input_scale: np.ndarray | None = None              # (T, B) character dropout's share of each embedding row


def residual_forward(params: dict, config: ModelConfig, ids: np.ndarray, state: list, ws: Workspace | None = None,
                     masks: StepMasks | None = None):
    """The residual stack (block.py): x^0 = E[ids], L residual layers, logits = norm(x^L) Wy + by; ``masks`` as
    drawn by :func:`draw_masks` (None: evaluation)."""
    cell = CELLS[config.cell]
    cache = ResidualCache(ids, masks=masks, input_scale=character_scale(masks, ids))
    x = np.take(params["emb"], ids, axis=0)                      # (T, B, H) the embedding
    if cache.input_scale is not None:
        x *= cache.input_scale[..., None]                        # character dropout: s_t E[id_t]
    final_state = []
    for layer in range(config.num_layers):
        drops = (None, None)                                     # the layer's two branch masks
        if masks is not None and masks.dropout is not None:
            drops = tuple(masks.dropout[2 * layer:2 * layer + 2])
        p = layer_step_params(params, layer, masks)
        x, last, layer_cache = residual_layer_forward(cell, x, p, state[layer], drops, ws, f"l{layer}.",
                                                      layer_zoneout(config, masks, layer))
        cache.layers.append(layer_cache)
        cache.layer_params.append(p)
        final_state.append(last)
    top, cache.top_norm = norm_forward(x, *norm_of(params, "norm."))   # (T, B, H)
    cache.top_recurrent = cache.layers[-1].hs
    if masks is not None and masks.output is not None:
        top = top * masks.output                                 # (T, B, H) locked output dropout
    cache.top_hidden = top
    logits = workspace_empty(ws, "logits", (*ids.shape, params["Wy"].shape[1]), x.dtype)
    return output_forward(top, params["Wy"], params["by"], logits), final_state, cache


def residual_backward(da: np.ndarray, cache: ResidualCache, params: dict, config: ModelConfig,
                      ws: Workspace | None = None, d_top: np.ndarray | None = None) -> dict:
    """Backward of :func:`residual_forward`: da = dL/d norm(x^L) (T, B, H) -> grads of every parameter but
    the output layer's; ``d_top`` joins the last layer's recurrent output gradient (AR, TAR)."""
    cell = CELLS[config.cell]
    dx, top_grads = norm_backward(da, cache.top_norm, params["norm.g"])
    grads = {f"norm.{name}": value for name, value in top_grads.items()}
    weight_masks = cache.masks.weights if cache.masks is not None else None
    for layer in reversed(range(config.num_layers)):
        dx, layer_grads = residual_layer_backward(cell, dx, cache.layers[layer], cache.layer_params[layer], ws,
                                                  f"l{layer}.", d_top if layer == config.num_layers - 1 else None)
        if weight_masks is not None:
            weight_drop_grad(layer_grads, weight_masks[layer])   # dW_h = dW~_h * M
        grads.update({f"l{layer}.{name}": value for name, value in layer_grads.items()})
    if cache.input_scale is not None:
        dx = dx * cache.input_scale[..., None]                   # the rows as they entered
    grads["emb"] = embedding_grad(cache.ids, dx, params["emb"].shape[0])   # (V, H)
    return grads


def evaluate_loss(params: dict, config: ModelConfig, ids: np.ndarray, targets: np.ndarray, state: list,
                  mask: np.ndarray | None = None, count: float | None = None):
    """Forward only (no dropout) -> (loss in nats/char, final state): for validation. ``count``: as in
    :func:`loss_and_grads`."""
    logits, final_state, _ = forward(params, config, ids, state)
    return softmax_cross_entropy(logits, targets, mask, count)[0], final_state


def loss_and_grads(params: dict, config: ModelConfig, ids: np.ndarray, targets: np.ndarray, state: list,
                   mask: np.ndarray | None = None, dropout_rng: np.random.Generator | None = None,
                   ws: Workspace | None = None, count: float | None = None, masks: StepMasks | None = None):
    """-> (loss in nats/char, grads, final state). The learning signal of one step, in order.
    ``ws``: reuse large arrays between calls (the training engine keeps one); the grads stay valid only
    until the next call with the same workspace. ``count`` (the characters the loss is a mean over; default
    this batch's) and ``masks`` (see :func:`forward`) let a shard of a batch compute its exact share of the
    whole batch's loss and gradients (``parallel.py``).

    With AR / TAR on, the gradients are those of the objective L + L_AR + L_TAR (:func:`regularized_loss`);
    the loss returned, and reported, is L alone: nats per character."""
    logits, final_state, cache = forward(params, config, ids, state, dropout_rng, ws, masks)  # 1. forward
    loss, dy = softmax_cross_entropy(logits, targets, mask, count)                    # 2. loss (+ dy)
    da = workspace_empty(ws, "da", (*ids.shape, config.hidden_size), dy.dtype)
    project_logit_grad_to_hidden(dy, params["Wy"], da)                                # 3. project to da
    d_top = regularizer_grads(da, cache, config, mask, count)                         #    (+ regularisers)
    grads = backward(da, cache, params, config, ws, d_top)                            # 4. BPTT
    grads.update(output_layer_grads(dy, cache.top_hidden))                            # 5. output grads
    return loss, grads, final_state


def regularizer_grads(da: np.ndarray, cache, config: ModelConfig, mask: np.ndarray | None = None,
                      count: float | None = None) -> np.ndarray | None:
    """Step 3's regularisers: da = dL/d(what the output layer reads) becomes, in place, the gradient of the
    top layer's output through the locked output dropout (da * D); returns dL_AR/dh + dL_TAR/dh of the top
    recurrent layer's output (None without AR and TAR)."""
    if cache.masks is not None and cache.masks.output is not None:
        da *= cache.masks.output                                 # (T, B, H)
    M = real_count(mask, da.shape[:2], count)
    if not (config.ar or config.tar) or M == 0:
        return None
    return activation_penalty(cache.top_recurrent, mask, M, config.ar, config.tar)[1]


def real_count(mask: np.ndarray | None, shape: tuple, count: float | None = None) -> float:
    """M, the real characters a batch's mean is over: ``count`` if given, else the mask's sum (or T*B)."""
    if count is not None:
        return float(count)
    return float(math.prod(shape) if mask is None else mask.sum())


def regularized_loss(params: dict, config: ModelConfig, ids: np.ndarray, targets: np.ndarray, state: list,
                     mask: np.ndarray | None = None, masks: StepMasks | None = None) -> float:
    """The objective whose gradient :func:`loss_and_grads` returns, for the step whose random draws are
    ``masks``: L + L_AR + L_TAR (regularizers.py). What the finite-difference checks differentiate."""
    logits, _, cache = forward(params, config, ids, state, masks=masks)
    loss, _ = softmax_cross_entropy(logits, targets, mask)
    if (config.ar or config.tar) and real_count(mask, ids.shape):
        loss += activation_penalty(cache.top_recurrent, mask, real_count(mask, ids.shape), config.ar, config.tar)[0]
    return loss


def train_step(params: dict, config: ModelConfig, optimizer, opt_state: dict, ids: np.ndarray, targets: np.ndarray,
               state: list, mask: np.ndarray | None = None, clip_value: float | None = None,
               clip_norm: float | None = None, dropout_rng: np.random.Generator | None = None,
               ws: Workspace | None = None):
    """One optimisation step, the whole flow in order -> (loss, final state); ``params`` and ``opt_state`` are
    updated in place. The NumPy engine (training/engines.py) runs these same two calls, the first one
    possibly as batch shards on threads (training/parallel.py)."""
    loss, grads, final_state = loss_and_grads(params, config, ids, targets, state, mask,   # 1-5. forward, loss,
                                              dropout_rng, ws)                            # da, BPTT, output grads
    apply_gradients(params, grads, loss, optimizer, opt_state, clip_value, clip_norm)    # 6-7. clip, update
    return loss, final_state


def apply_gradients(params: dict, grads: dict, loss: float, optimizer, opt_state: dict,
                    clip_value: float | None = None, clip_norm: float | None = None) -> None:
    """The end of every training step: check that loss and gradients are finite, clip, update."""
    norm = global_norm(grads)
    if not math.isfinite(loss) or not math.isfinite(norm):
        raise TrainingDiverged(f"the loss ({loss:.4g}) or its gradient is not finite; parameters left as they were")
    if clip_value is not None:                                     # 6. clip each entry, then the global norm
        clip_by_value(grads, clip_value)
        norm = None                                                # changed: clip_by_global_norm recomputes it
    if clip_norm is not None:
        clip_by_global_norm(grads, clip_norm, norm)
    optimizer.update(params, grads, opt_state)                     # 7. update
