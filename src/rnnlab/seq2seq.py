"""Seq2Seq: a bidirectional encoder and an attention decoder with input feeding, built from the cells of
``cells.py`` and the one sequence loop of ``recurrence.py``.

    source ids x (S, B) --enc_f--> hf (S, B, He)      the forward direction: the usual loop
                        --enc_b--> hb (S, B, He)      the backward direction: the SAME loop over every sequence
                                                      reversed within its length (padding stays at the end)
    h = [hf ; hb]                   (S, B, 2He)       the encoder outputs that attention looks at

    s_0 = tanh([hf_{n-1} ; hb_0] Wb + bb)             the decoder starts from both directions' last steps
                                                      (n = the source length; an LSTM decoder's c_0 = 0)
    for t = 1 .. T   (teacher forcing: y_0 = the start symbol, then the TRUE previous character)
        zx_t     = Wx[y_{t-1}] + b + c_{t-1} Wc       input feeding: the previous context enters with the char
        s_t      = cell(zx_t, s_{t-1})                (B, Hd)  cells.py
        c_t, a_t = attention(s_t, h, source mask)     (B, 2He), (B, S)  attention.py; c_0 = 0
        logits_t = s_t Wy + c_t Wyc + by              (B, V)

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
    3. project        ds_t = dy_t Wy^T,   dc_t = dy_t Wyc^T
    4. backward       the decoder steps in reverse (attention, cell, input feeding), the keys, the bridge,
                      then both encoder directions through rnn_backward
    5. output grads   dWy = s^T dy,  dWyc = c^T dy,  dby = sum dy
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .attention import SCORES, attend, attend_backward, check_sizes, init_attention
from .cells import CELLS, uniform
from .errors import require
from .losses import softmax_cross_entropy
from .model import check_param_shapes, strip_prefix
from .output import output_forward, output_layer_grads, project_logit_grad_to_hidden
from .recurrence import input_grads, project_inputs, recurrent_grads, rnn_backward, rnn_forward

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
    def from_dict(cls, data: dict) -> "Seq2SeqConfig":
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


def check_params(config: Seq2SeqConfig, params: dict) -> None:
    """Raise RnnlabError unless ``params`` has exactly the arrays (names and shapes) ``config`` needs."""
    check_param_shapes(init_params(config, np.random.default_rng(0)), params)


# --------------------------------------------------------------------------------------------------------
# Encoder: two directions of the one loop
# --------------------------------------------------------------------------------------------------------

def reversal_index(lengths: np.ndarray, S: int) -> np.ndarray:
    """(S, B) time indices that reverse each column within its length and leave its padding in place:
    index[t, b] = n_b - 1 - t for t < n_b, else t. Applying it twice gives back the original order."""
    t = np.arange(S)[:, None]                                    # (S, 1)
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (S, B)


def reverse_within_length(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """x (S, B, ...) in the order of :func:`reversal_index`."""
    return np.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=0)


def direction_forward(cell, ids: np.ndarray, p: dict):
    """One encoder direction: ids (S, B) -> (hs (S, B, He), SequenceCache), from the zero state."""
    zx = project_inputs(ids, p["Wx"], p["b"])                    # (S, B, G He)
    state0 = cell.zero_state(ids.shape[1], p["Wh"].shape[0], zx.dtype)
    hs, _, cache = rnn_forward(cell, zx, state0, p)              # (S, B, He)
    return hs, cache


def direction_backward(cell, dhs: np.ndarray, cache, ids: np.ndarray, p: dict) -> dict:
    """BPTT of one direction: dhs (S, B, He) -> its parameter gradients."""
    dzx, grads, _ = rnn_backward(cell, dhs, cache, p)            # (S, B, G He)
    grads["Wx"], grads["b"], _ = input_grads(ids, dzx, p["Wx"])
    return grads


@dataclass
class EncoderCache:
    source: np.ndarray           # (S, B) ids
    reversed_source: np.ndarray  # (S, B) ids, each sequence reversed within its length
    index: np.ndarray            # (S, B) reversal_index
    lengths: np.ndarray          # (B,)
    forward: object              # SequenceCache of each direction
    backward: object


def encode(params: dict, config: Seq2SeqConfig, source: np.ndarray, source_mask: np.ndarray):
    """source ids (S, B), mask (S, B) -> (h (S, B, 2He), last (B, 2He) = [hf_{n-1}; hb_0], EncoderCache)."""
    cell = CELLS[config.encoder_cell]
    S, B = source.shape
    lengths = source_mask.sum(axis=0).astype(np.int64)           # (B,)
    require(lengths.min() > 0, "every source text needs at least one character")
    index = reversal_index(lengths, S)
    reversed_source = reverse_within_length(source, index)       # (S, B)
    hf, cache_f = direction_forward(cell, source, strip_prefix(params, "enc_f."))           # (S, B, He)
    hb_reversed, cache_b = direction_forward(cell, reversed_source, strip_prefix(params, "enc_b."))
    hb = reverse_within_length(hb_reversed, index)               # (S, B, He) back in source order
    h = np.concatenate([hf, hb], axis=2)                         # (S, B, 2He)
    last = np.concatenate([hf[lengths - 1, np.arange(B)], hb[0]], axis=1)  # (B, 2He)
    return h, last, EncoderCache(source, reversed_source, index, lengths, cache_f, cache_b)


def encode_backward(dh: np.ndarray, dlast: np.ndarray, cache: EncoderCache, params: dict,
                    config: Seq2SeqConfig) -> dict:
    """dh (S, B, 2He), dlast (B, 2He) -> the gradients of both directions' parameters."""
    cell = CELLS[config.encoder_cell]
    He = config.encoder_hidden
    B = dh.shape[1]
    dhf = dh[:, :, :He].copy()                                   # (S, B, He)
    dhf[cache.lengths - 1, np.arange(B)] += dlast[:, :He]
    dhb = dh[:, :, He:].copy()                                   # (S, B, He)
    dhb[0] += dlast[:, He:]
    grads = {}
    for prefix, dhs, seq_cache, ids in (("enc_f.", dhf, cache.forward, cache.source),
                                        ("enc_b.", reverse_within_length(dhb, cache.index), cache.backward,
                                         cache.reversed_source)):
        direction_grads = direction_backward(cell, dhs, seq_cache, ids, strip_prefix(params, prefix))
        grads.update({prefix + name: value for name, value in direction_grads.items()})
    return grads


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

    def repeat(self, k: int) -> "Memory":
        """Every row k times in a row (row b becomes rows b k .. b k + k - 1): for beam search."""
        rep = lambda a: None if a is None else np.repeat(a, k, axis=0)  # noqa: E731
        return Memory(rep(self.values), rep(self.keys), rep(self.mask), rep(self.s0))


def encode_memory(params: dict, config: Seq2SeqConfig, source: np.ndarray, source_mask: np.ndarray):
    """source ids (S, B), mask (S, B) -> (Memory, EncoderCache)."""
    h, last, cache = encode(params, config, source, source_mask)
    s0 = np.tanh(last @ params["bridge.W"] + params["bridge.b"])  # (B, Hd)
    values = keys = None
    if config.uses_attention:
        values = np.ascontiguousarray(h.transpose(1, 0, 2))       # (B, S, 2He)
        keys = SCORES[config.attention].keys(values, strip_prefix(params, "att."))  # (B, S, K)
    return Memory(values, keys, source_mask.T, s0), (cache, last)


def initial_decoder_state(config: Seq2SeqConfig, memory: Memory) -> tuple:
    """(s_0,) for RNN/GRU, (s_0, 0) for LSTM; and the first context c_0 = 0 (None without attention)."""
    cell = CELLS[config.decoder_cell]
    state = (memory.s0, *cell.zero_state(*memory.s0.shape, memory.s0.dtype)[1:])
    context = np.zeros((memory.s0.shape[0], config.context_size), memory.s0.dtype) if config.uses_attention else None
    return state, context


# --------------------------------------------------------------------------------------------------------
# One decoder step, shared by training (teacher forcing) and decoding (greedy, beam search)
# --------------------------------------------------------------------------------------------------------

def decoder_step(params: dict, config: Seq2SeqConfig, zx: np.ndarray, state: tuple, context, memory: Memory):
    """zx (B, G Hd) = the previous character's Wx[y] + b; state s_{t-1}; context c_{t-1} (B, 2He) or None
    -> (state s_t, context c_t, alpha_t (B, S) or None, cache)."""
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
    encoder: tuple               # (EncoderCache, last (B, 2He))
    dec_in: np.ndarray           # (T, B) ids read by the decoder
    states: np.ndarray           # (T + 1, B, Hd) s_0 .. s_T
    contexts: np.ndarray | None  # (T + 1, B, 2He) c_0 .. c_T
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


def backward(dy: np.ndarray, cache: ForwardCache, params: dict, config: Seq2SeqConfig) -> dict:
    """dy = dL/dlogits (T, B, Vt) -> the gradient of every parameter."""
    cell = CELLS[config.decoder_cell]
    dec, att = strip_prefix(params, "dec."), strip_prefix(params, "att.")
    memory, attention = cache.memory, config.uses_attention
    ds_above = project_logit_grad_to_hidden(dy, params["Wy"])   # (T, B, Hd)        3. project
    grads = output_layer_grads(dy, cache.states[1:])             # Wy, by            5. output grads
    if attention:
        dc_above = project_logit_grad_to_hidden(dy, params["Wyc"])  # (T, B, 2He)
        grads["Wyc"] = output_layer_grads(dy, cache.contexts[1:])["Wy"]   # sum_t c_t^T dy_t
        dkeys, dvalues = np.zeros_like(memory.keys), np.zeros_like(memory.values)
        att_grads = {name: np.zeros_like(value) for name, value in att.items()}
    T = len(cache.steps)
    dzx, dzh = [None] * T, [None] * T
    dstate = tuple(np.zeros_like(cache.states[0]) for _ in range(cell.n_states))
    dc_next = 0.0                                                # dL/dc_t through step t+1's input
    for t in reversed(range(T)):                                 # 4. backward through the decoder steps
        cell_cache, att_cache = cache.steps[t]
        ds = dstate[0] + ds_above[t]                             # (B, Hd) from step t+1 and from the output
        if attention:
            dq, dk, dv, g = attend_backward(dc_above[t] + dc_next, att_cache, att)
            ds = ds + dq                                         # the state was the query
            dkeys += dk
            dvalues += dv
            for name, value in g.items():
                att_grads[name] += value
        dzx[t], dzh[t], dstate = cell.step_backward((ds, *dstate[1:]), cell_cache, dec)
        if attention:
            dc_next = dzx[t] @ dec["Wc"].T                       # (B, 2He) into c_{t-1}
    dzx, dzh = np.stack(dzx), np.stack(dzh)                      # (T, B, G Hd)
    dec_grads = recurrent_grads(cache.states[:-1], dzh, dec)     # Wh [, bh]
    dec_grads["Wx"], dec_grads["b"], _ = input_grads(cache.dec_in, dzx, dec["Wx"])
    if attention:
        C = config.context_size                                  # dWc = sum_t c_{t-1}^T dzx_t, one GEMM
        dec_grads["Wc"] = cache.contexts[:-1].reshape(-1, C).T @ dzx.reshape(-1, dzx.shape[-1])
        dvalues_via_keys, key_grads = SCORES[config.attention].keys_backward(dkeys, memory.values, att)
        dvalues += dvalues_via_keys
        grads.update({"att." + name: value for name, value in {**att_grads, **key_grads}.items()})
    grads.update({"dec." + name: value for name, value in dec_grads.items()})
    encoder_cache, last = cache.encoder                          # s_0 = tanh(last Wb + bb)
    dpre = dstate[0] * (1.0 - memory.s0 * memory.s0)             # (B, Hd)  (an LSTM's dc_0 is dropped: c_0 = 0)
    grads["bridge.W"], grads["bridge.b"] = last.T @ dpre, dpre.sum(axis=0)
    dlast = dpre @ params["bridge.W"].T                          # (B, 2He)
    dh = (dvalues.transpose(1, 0, 2) if attention                # (S, B, 2He)
          else np.zeros(encoder_cache.source.shape + (config.context_size,), dpre.dtype))
    grads.update(encode_backward(dh, dlast, encoder_cache, params, config))
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
