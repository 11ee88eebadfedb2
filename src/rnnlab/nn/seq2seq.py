"""Seq2Seq: a bidirectional encoder and an attention decoder with input feeding, built from the cells of
``cells.py`` and the one sequence loop of ``recurrence.py``.

    source ids x (S, B) --enc_f--> hf (S, B, He)      the forward direction: the usual loop
                        --enc_b--> hb (S, B, He)      the backward direction: the SAME loop over every sequence
                                                      reversed within its length (bidirectional.py)
    h = [hf ; hb]                   (S, B, 2He)       the encoder outputs that attention looks at

    s_0 = tanh([hf_{n-1} ; hb_0] Wb + bb)             the decoder starts from both directions' last steps
                                                      (n = the source length; an LSTM decoder's cell state starts at 0)
    for t = 1 .. T   (teacher forcing: w_0 = the start symbol, then the TRUE previous character w)
        zx_t     = Wx[w_{t-1}] + b + ctx_{t-1} Wc       input feeding: the previous context enters with the char
        s_t      = cell(zx_t, s_{t-1})                (B, Hd)  cells.py
        ctx_t, a_t = attention(s_t, h, source mask)     (B, 2He), (B, S)  attention.py; ctx_0 = 0
        logits_t = s_t Wy + ctx_t Wyc + by              (B, V)

``attention="none"`` is the classic encoder-decoder: no context, no Wc / Wyc, logits_t = s_t Wy + by; all the
decoder knows about the source is s_0.

Padding: the forward direction's outputs at real positions never see the padding that follows them, the
backward direction reads the real characters first, the decoder starts from the states at each sequence's
own last position, attention gives padded positions weight 0, and the loss masks padded targets: padding
changes neither the loss nor any gradient.

Parameters are one flat dict of named arrays, so optimizers, clipping and checkpoints work unchanged:

    enc_f.Wx (Vs, G He)  enc_f.Wh (He, G He)  enc_f.b [enc_f.bh]     (and enc_b.* alike)  encoder
    bridge.W (2He, Hd)   bridge.b (Hd,)                                                 s_0
    dec.Wx (Vt, G Hd)    dec.Wh (Hd, G Hd)    dec.b [dec.bh]   dec.Wc (2He, G Hd)        decoder cell
    att.*                                                              attention score  (attention.py)
    Wy (Hd, Vt)          Wyc (2He, Vt)        by (Vt,)                                  output layer

:func:`loss_and_grads` is the learning signal, in the same order as the language model's:

    1. forward        encoder, decoder steps, logits
    2. loss (+ dy)    L, dy = softmax_cross_entropy(logits, targets, target mask)
    3. project        ds_t = dy_t Wy^T,   dctx_t = dy_t Wyc^T
    4. backward       the decoder steps in reverse (attention, cell, input feeding), the keys, the bridge,
                      then both encoder directions through sequence_backward
    5. output grads   dWy = s^T dy,  dWyc = ctx^T dy,  dby = sum dy
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import require
from .attention import SCORES, attend, attend_backward, attention_param_shapes, check_sizes, init_attention
from .bidirectional import bidirectional_backward, bidirectional_forward
from .cells import CELLS
from .initializers import uniform
from .losses import softmax_cross_entropy
from .model import check_param_shapes, strip_prefix
from .output import output_forward, output_layer_grads, project_logit_grad_to_hidden
from .recurrence import input_grads, project_inputs, recurrent_grads

ATTENTION_KINDS = (*SCORES, "none")


@dataclass(frozen=True)
class Seq2SeqConfig:
    source_vocab_size: int
    target_vocab_size: int
    encoder_cell: str = "gru"
    encoder_hidden: int = 64       # units per direction: the encoder outputs have 2 * encoder_hidden
    decoder_cell: str = "gru"
    decoder_hidden: int = 128
    attention: str = "additive"    # a score of attention.SCORES, or "none"
    attention_size: int = 64       # the additive score's hidden width (other scores ignore it)
    max_output_length: int = 16    # decoding stops after this many characters (the end symbol included)

    def __post_init__(self):
        for name in ("encoder_cell", "decoder_cell"):
            cell = getattr(self, name)
            require(cell in CELLS, f"unknown --{name} {cell!r}: use one of {', '.join(CELLS)}")
            require(CELLS[cell].recurrent_weights, f"--cell {cell}: the translator steps its cells one character "
                    "at a time with attention; use rnn, lstm or gru (mingru and minlstm are for language models)")
        for name in ("source_vocab_size", "target_vocab_size"):
            require(getattr(self, name) >= 2, f"{name} is {getattr(self, name)}: a vocabulary needs at least 2 symbols")
        for name in ("encoder_hidden", "decoder_hidden", "attention_size", "max_output_length"):
            require(getattr(self, name) > 0, f"--{name} must be > 0, got {getattr(self, name)}")
        require(self.attention in ATTENTION_KINDS,
                f"unknown --attention {self.attention!r}: use one of {', '.join(ATTENTION_KINDS)}")
        if self.uses_attention:
            check_sizes(self.attention, self.decoder_hidden, self.context_size)

    @property
    def uses_attention(self) -> bool:
        return self.attention != "none"

    @property
    def context_size(self) -> int:
        return 2 * self.encoder_hidden

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Seq2SeqConfig:
        return cls(**data)


def init_params(config: Seq2SeqConfig, rng: np.random.Generator, dtype=np.float32) -> dict:
    """Cells as cells.py initialises them; other matrices U(+-1/sqrt(fan-in)); biases 0."""
    enc, dec = CELLS[config.encoder_cell], CELLS[config.decoder_cell]
    He, Hd, C, Vt = config.encoder_hidden, config.decoder_hidden, config.context_size, config.target_vocab_size
    params = {}

    def add(prefix: str, group: dict) -> None:
        params.update({prefix + name: value for name, value in group.items()})

    add("enc_f.", enc.init(config.source_vocab_size, He, rng))
    add("enc_b.", enc.init(config.source_vocab_size, He, rng))
    add("bridge.", {"W": uniform(rng, (C, Hd), 1.0 / np.sqrt(C)), "b": np.zeros(Hd)})
    add("dec.", dec.init(Vt, Hd, rng))
    if config.uses_attention:
        params["dec.Wc"] = uniform(rng, (C, dec.n_gates * Hd), 1.0 / np.sqrt(Hd))
        add("att.", init_attention(config.attention, Hd, C, config.attention_size, rng))
        params["Wyc"] = uniform(rng, (C, Vt), 1.0 / np.sqrt(C))
    params["Wy"] = uniform(rng, (Hd, Vt), 1.0 / np.sqrt(Hd))
    params["by"] = np.zeros(Vt)
    return {name: value.astype(dtype) for name, value in params.items()}


def param_shapes(config: Seq2SeqConfig) -> dict:
    """{name: shape} of every parameter :func:`init_params` makes, computed without allocating anything."""
    enc, dec = CELLS[config.encoder_cell], CELLS[config.decoder_cell]
    He, Hd, C, Vt = config.encoder_hidden, config.decoder_hidden, config.context_size, config.target_vocab_size
    shapes = {}
    for prefix in ("enc_f.", "enc_b."):
        shapes.update({prefix + n: s for n, s in enc.param_shapes(config.source_vocab_size, He).items()})
    shapes.update({"bridge.W": (C, Hd), "bridge.b": (Hd,)})
    shapes.update({"dec." + n: s for n, s in dec.param_shapes(Vt, Hd).items()})
    if config.uses_attention:
        shapes["dec.Wc"] = (C, dec.n_gates * Hd)
        shapes.update({"att." + n: s for n, s in
                       attention_param_shapes(config.attention, Hd, C, config.attention_size).items()})
        shapes["Wyc"] = (C, Vt)
    return {**shapes, "Wy": (Hd, Vt), "by": (Vt,)}


def check_params(config: Seq2SeqConfig, params: dict) -> None:
    """Raise RnnlabError unless ``params`` has exactly the arrays (names and shapes) ``config`` needs."""
    check_param_shapes(param_shapes(config), params, f"translator {config.encoder_cell}/{config.decoder_cell}, "
                                                     f"{config.attention} attention")


# --------------------------------------------------------------------------------------------------------
# What the decoder starts from and looks at
# --------------------------------------------------------------------------------------------------------

@dataclass
class Memory:
    """The encoder's result as the decoder uses it, computed once per batch of sources (batch first)."""

    values: np.ndarray | None    # (B, S, 2He) encoder outputs; None without attention
    keys: np.ndarray | None      # (B, S, K) the score's keys of them
    mask: np.ndarray             # (B, S) 1 at real source characters
    s0: np.ndarray               # (B, Hd) the decoder's first state, tanh([hf_{n-1}; hb_0] Wb + bb)

    def repeat(self, k: int) -> Memory:
        """Every row k times in a row (row b becomes rows b k .. b k + k - 1): for beam search."""
        def rep(a):
            return None if a is None else np.repeat(a, k, axis=0)

        return Memory(rep(self.values), rep(self.keys), rep(self.mask), rep(self.s0))


def encode_memory(params: dict, config: Seq2SeqConfig, source: np.ndarray, source_mask: np.ndarray):
    """source ids (S, B), mask (S, B) -> (Memory, (BidirectionalCache, last (B, 2He)))."""
    h, last, cache = bidirectional_forward(CELLS[config.encoder_cell], strip_prefix(params, "enc_f."),
                                           strip_prefix(params, "enc_b."), source, source_mask)
    s0 = np.tanh(last @ params["bridge.W"] + params["bridge.b"])  # (B, Hd)
    values = keys = None
    if config.uses_attention:
        values = np.ascontiguousarray(h.transpose(1, 0, 2))       # (B, S, 2He)
        keys = SCORES[config.attention].keys(values, strip_prefix(params, "att."))  # (B, S, K)
    return Memory(values, keys, source_mask.T, s0), (cache, last)


def initial_decoder_state(config: Seq2SeqConfig, memory: Memory) -> tuple:
    """(s_0,) for RNN/GRU, (s_0, 0) for LSTM; and the first context ctx_0 = 0 (None without attention)."""
    cell = CELLS[config.decoder_cell]
    state = (memory.s0, *cell.zero_state(*memory.s0.shape, memory.s0.dtype)[1:])
    context = np.zeros((memory.s0.shape[0], config.context_size), memory.s0.dtype) if config.uses_attention else None
    return state, context


# --------------------------------------------------------------------------------------------------------
# One decoder step, shared by training (teacher forcing) and decoding (greedy, beam search)
# --------------------------------------------------------------------------------------------------------

def decoder_step(params: dict, config: Seq2SeqConfig, zx: np.ndarray, state: tuple, context, memory: Memory):
    """zx (B, G Hd) = the previous character's Wx[w] + b; state s_{t-1}; context ctx_{t-1} (B, 2He) or None
    -> (state s_t, context ctx_t, alpha_t (B, S) or None, cache)."""
    cell = CELLS[config.decoder_cell]
    dec = strip_prefix(params, "dec.")
    if context is not None:
        zx = zx + context @ dec["Wc"]                            # (B, G Hd) input feeding
    state, cell_cache = cell.step_forward(zx, state, dec)        # (B, Hd)
    if not config.uses_attention:
        return state, None, None, (cell_cache, None)
    (context, alpha), att_cache = attend(SCORES[config.attention], state[0], memory.keys, memory.values,
                                         memory.mask, strip_prefix(params, "att."))
    return state, context, alpha, (cell_cache, att_cache)        # (B, 2He), (B, S)


def output_logits(params: dict, s: np.ndarray, context) -> np.ndarray:
    """s (..., Hd), context (..., 2He) or None -> logits (..., V) = s Wy + c Wyc + by."""
    logits = output_forward(s, params["Wy"], params["by"])       # (..., V)
    if context is not None:
        logits += output_forward(context, params["Wyc"], 0.0)
    return logits


# --------------------------------------------------------------------------------------------------------
# Training: teacher-forced forward over a batch, its backward, the loss
# --------------------------------------------------------------------------------------------------------

@dataclass
class ForwardCache:
    memory: Memory
    encoder: tuple               # (bidirectional.BidirectionalCache, last (B, 2He))
    dec_in: np.ndarray           # (T, B) ids read by the decoder
    states: np.ndarray           # (T + 1, B, Hd) s_0 .. s_T
    contexts: np.ndarray | None  # (T + 1, B, 2He) ctx_0 .. ctx_T
    steps: list                  # per step (cell cache, attention cache)


def forward(params: dict, config: Seq2SeqConfig, batch):
    """Teacher forcing over a batch (see pairs.PairBatch) -> (logits (T, B, Vt), ForwardCache)."""
    memory, encoder_cache = encode_memory(params, config, batch.source, batch.source_mask)
    T, B = batch.dec_in.shape
    zx = project_inputs(batch.dec_in, params["dec.Wx"], params["dec.b"])    # (T, B, G Hd), all steps at once
    state, context = initial_decoder_state(config, memory)
    states, contexts, steps = [state[0]], [context], []
    for t in range(T):
        state, context, _, step_cache = decoder_step(params, config, zx[t], state, context, memory)
        states.append(state[0])
        contexts.append(context)
        steps.append(step_cache)
    states = np.stack(states)                                    # (T + 1, B, Hd)
    contexts = np.stack(contexts) if config.uses_attention else None  # (T + 1, B, 2He)
    logits = output_logits(params, states[1:], None if contexts is None else contexts[1:])  # (T, B, Vt)
    return logits, ForwardCache(memory, encoder_cache, batch.dec_in, states, contexts, steps)


def decoder_backward(ds_above: np.ndarray, dctx_above, cache: ForwardCache, params: dict, config: Seq2SeqConfig):
    """BPTT through the decoder steps, last to first. ds_above (T, B, Hd) and dctx_above (T, B, 2He) (None
    without attention) are the gradients the output layer sends to each s_t and ctx_t. Each step adds what
    step t+1 sends back: through the recurrence into s_t, and through input feeding (zx_{t+1} = ... + ctx_t Wc)
    into ctx_t; attention turns dctx_t into gradients of the query s_t, of the keys and of the values.

    -> (grads with "dec." and "att." names, dL/d(keys) (B, S, K), dL/d(values) (B, S, 2He), dL/ds_0 (B, Hd))."""
    cell, score = CELLS[config.decoder_cell], SCORES.get(config.attention)
    dec, att = strip_prefix(params, "dec."), strip_prefix(params, "att.")
    memory, T = cache.memory, len(cache.steps)
    if score is not None:
        dkeys, dvalues = np.zeros_like(memory.keys), np.zeros_like(memory.values)
        att_grads = {name: np.zeros_like(value) for name, value in att.items()}
    dzx, dzh = [None] * T, [None] * T
    dstate = tuple(np.zeros_like(cache.states[0]) for _ in range(cell.n_states))
    dctx_next = 0.0                                              # dL/dctx_t through step t+1's input
    for t in reversed(range(T)):
        cell_cache, att_cache = cache.steps[t]
        ds = dstate[0] + ds_above[t]                             # (B, Hd) from step t+1 and from the output
        if score is not None:
            dq, dk, dv, score_grads = attend_backward(dctx_above[t] + dctx_next, att_cache, att)
            ds = ds + dq                                         # the state was the query
            dkeys += dk
            dvalues += dv
            for name, value in score_grads.items():
                att_grads[name] += value
        dzx[t], dzh[t], dstate = cell.step_backward((ds, *dstate[1:]), cell_cache, dec)
        if score is not None:
            dctx_next = dzx[t] @ dec["Wc"].T                     # (B, 2He) into ctx_{t-1}
    dzx, dzh = np.stack(dzx), np.stack(dzh)                      # (T, B, G Hd)
    grads = recurrent_grads(cache.states[:-1], dzh, cell.recurrent_bias)  # Wh [, bh]: one GEMM over all steps
    grads["Wx"], grads["b"], _ = input_grads(cache.dec_in, dzx, dec["Wx"])
    grads = {"dec." + name: value for name, value in grads.items()}
    if score is None:
        return grads, None, None, dstate[0]          # (an LSTM decoder's first cell state is 0: no gradient)
    C = config.context_size                                      # dWc = sum_t ctx_{t-1}^T dzx_t, one GEMM
    grads["dec.Wc"] = cache.contexts[:-1].reshape(-1, C).T @ dzx.reshape(-1, dzx.shape[-1])
    grads.update({"att." + name: value for name, value in att_grads.items()})
    return grads, dkeys, dvalues, dstate[0]


def backward(dy: np.ndarray, cache: ForwardCache, params: dict, config: Seq2SeqConfig) -> dict:
    """dy = dL/dlogits (T, B, Vt) -> the gradient of every parameter (steps 3 to 5 of loss_and_grads)."""
    memory, attention = cache.memory, config.uses_attention
    ds_above = project_logit_grad_to_hidden(dy, params["Wy"])   # (T, B, Hd)        3. project
    dctx_above = project_logit_grad_to_hidden(dy, params["Wyc"]) if attention else None  # (T, B, 2He)
    grads, dkeys, dvalues, ds0 = decoder_backward(ds_above, dctx_above, cache, params, config)   # 4. BPTT
    if attention:                                                # the keys were computed from the values
        dvalues_via_keys, key_grads = SCORES[config.attention].keys_backward(dkeys, memory.values,
                                                                             strip_prefix(params, "att."))
        dvalues += dvalues_via_keys
        grads.update({"att." + name: value for name, value in key_grads.items()})
    encoder_cache, last = cache.encoder                          # s_0 = tanh(last Wb + bb)
    dpre = ds0 * (1.0 - memory.s0 * memory.s0)                   # (B, Hd)
    grads["bridge.W"], grads["bridge.b"] = last.T @ dpre, dpre.sum(axis=0)
    dlast = dpre @ params["bridge.W"].T                          # (B, 2He)
    dh = (dvalues.transpose(1, 0, 2) if attention                # (S, B, 2He)
          else np.zeros(encoder_cache.source.shape + (config.context_size,), dpre.dtype))
    for prefix, direction_grads in zip(("enc_f.", "enc_b."), bidirectional_backward(  # both directions' BPTT
            CELLS[config.encoder_cell], dh, dlast, encoder_cache, strip_prefix(params, "enc_f."),
            strip_prefix(params, "enc_b.")), strict=True):
        grads.update({prefix + name: value for name, value in direction_grads.items()})
    grads.update(output_layer_grads(dy, cache.states[1:]))       # Wy, by            5. output grads
    if attention:
        grads["Wyc"] = output_layer_grads(dy, cache.contexts[1:])["Wy"]   # sum_t ctx_t^T dy_t
    return grads


def loss_and_grads(params: dict, config: Seq2SeqConfig, batch) -> tuple[float, dict]:
    """-> (loss in nats per target character, grads). The learning signal of one step, in order."""
    logits, cache = forward(params, config, batch)                                       # 1. forward
    loss, dy = softmax_cross_entropy(logits, batch.targets, batch.target_mask)           # 2. loss (+ dy)
    return loss, backward(dy, cache, params, config)                                     # 3.-5.


def evaluate_loss(params: dict, config: Seq2SeqConfig, batch) -> float:
    """Teacher-forced loss (nats per target character) without gradients: for validation."""
    logits, _ = forward(params, config, batch)
    return softmax_cross_entropy(logits, batch.targets, batch.target_mask)[0]
