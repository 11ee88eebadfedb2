"""Translating with a trained seq2seq model: greedy decoding and beam search over batches of sources, the
attention weights of every output character, and exact-match accuracy.

Decoding runs the training model's own step (``seq2seq.decoder_step``), feeding back its own prediction
instead of the true previous character:

    y_0 = start symbol;   y_t = argmax_y log p(y | y_<t, x)          (greedy)

until the end symbol or ``max_length`` characters. Many sources are decoded together: one batch of N rows
(the sources sorted by length, so little padding), and a row that has finished keeps running but is ignored.

Beam search (``beam_size`` K > 1) keeps K hypotheses per source (N K rows; see ``beam.py``). A finished
hypothesis stays in its beam with its score frozen (it can only be extended by "nothing", at log-probability
0). Among the final hypotheses the best is the one with the highest length-normalised score

    score = log p(y_1 .. y_n | x) / n^length_penalty           (n counts the end symbol)

so that short outputs are not preferred merely for having fewer factors below 1 (length_penalty 0: the raw
log-probability; at most :data:`MAX_LENGTH_PENALTY`). As in ``beam.py`` the greedy translation is always
among the candidates.

Batches are formed under a memory budget (:func:`decode_bytes`): the sources, sorted by length, are cut into
batches whose decoding fits in half of the memory available, so that a few very long lines do not pad
every other one to their length; a single source that cannot fit is refused before anything is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.batches import pad_sequences
from ..data.pairs import PairTokenizers
from ..errors import RnnlabError, require, require_finite
from ..memory import format_bytes, memory_budget
from ..nn import seq2seq as s2s
from ..nn.activations import log_softmax
from ..nn.recurrence import project_inputs
from .beam import beam_step, first_scores

MAX_LENGTH_PENALTY = 10.0   # n^penalty: beyond this every score rounds to 0 (GNMT's useful range is 0.6-2)
MAX_BATCH = 1000            # rows per batch, whatever the budget allows


@dataclass
class Translation:
    source: str
    output: str
    logprob: float           # log p of the output characters and of the end symbol (if it was reached)
    score: float             # logprob / n^length_penalty, n = characters generated, the end symbol included
    attention: np.ndarray    # (len(output), len(source)): row i = the weights while predicting output char i
    finished: bool           # the end symbol came within max_length


@dataclass
class Decoded:
    """The chosen hypothesis of every source of a batch."""

    tokens: np.ndarray       # (N, L) ids; after the end symbol: filler
    logps: np.ndarray        # (N, L) log p of each token (0 after the end symbol)
    alphas: np.ndarray | None  # (N, L, S) attention weights; None without attention


def next_log_probs(params: dict, config: s2s.Seq2SeqConfig, prev: np.ndarray, state, context, memory):
    """One decoding step for every row: prev (R,) ids -> (log p (R, V) float64, state, context, alpha (R, S))."""
    zx = project_inputs(prev[None, :], params["dec.Wx"], params["dec.b"])[0]     # (R, G Hd)
    state, context, alpha, _ = s2s.decoder_step(params, config, zx, state, context, memory)
    logits = s2s.output_logits(params, state[0], context)                        # (R, V)
    require_finite(logits)
    return log_softmax(logits.astype(np.float64)), state, context, alpha


def greedy_decode(params: dict, config: s2s.Seq2SeqConfig, memory: s2s.Memory, end_id: int,
                  max_length: int) -> Decoded:
    """The most probable next character at every step, for all N sources at once."""
    N = memory.s0.shape[0]
    state, context = s2s.initial_decoder_state(config, memory)
    prev, done = np.full(N, end_id), np.zeros(N, dtype=bool)    # the start symbol is the end symbol
    tokens, logps, alphas = [], [], []
    for _ in range(max_length):
        logp, state, context, alpha = next_log_probs(params, config, prev, state, context, memory)
        prev = logp.argmax(axis=1)                               # (N,)
        tokens.append(prev)
        logps.append(np.where(done, 0.0, logp[np.arange(N), prev]))
        alphas.append(alpha)
        done |= prev == end_id
        if done.all():
            break
    return Decoded(np.stack(tokens, axis=1), np.stack(logps, axis=1),
                   np.stack(alphas, axis=1) if config.uses_attention else None)


def beam_decode(params: dict, config: s2s.Seq2SeqConfig, memory: s2s.Memory, end_id: int, max_length: int,
                beam_size: int, length_penalty: float) -> Decoded:
    """Beam search for all N sources at once (N K rows); the best hypothesis by normalised score per source."""
    N, K = memory.s0.shape[0], beam_size
    memory = memory.repeat(K)                                    # row n K + k: hypothesis k of source n
    state, context = s2s.initial_decoder_state(config, memory)
    scores, done = first_scores(N, K), np.zeros((N, K), dtype=bool)
    prev = np.full(N * K, end_id)
    tokens, logps = np.zeros((N, K, 0), dtype=np.int64), np.zeros((N, K, 0))
    alphas = np.zeros((N, K, 0, memory.mask.shape[1])) if config.uses_attention else None
    n = np.arange(N)[:, None]                                    # (N, 1) for indexing (N, K) arrays
    for _ in range(max_length):
        logp, state, context, alpha = next_log_probs(params, config, prev, state, context, memory)
        logp = logp.reshape(N, K, -1)                            # (N, K, V)
        logp[done] = -np.inf                                     # a finished hypothesis only "continues" with
        logp[done, end_id] = 0.0                                 # the end symbol, at log p = 0: score frozen
        scores, parents, chosen = beam_step(scores, logp, K)     # (N, K) each
        rows = (n * K + parents).reshape(-1)                     # (N K,) the parent's row of each new row
        tokens = np.concatenate([tokens[n, parents], chosen[:, :, None]], axis=2)
        logps = np.concatenate([logps[n, parents], logp[n, parents, chosen][:, :, None]], axis=2)
        if alphas is not None:
            alphas = np.concatenate([alphas[n, parents], alpha.reshape(N, K, 1, -1)[n, parents]], axis=2)
        done = done[n, parents] | (chosen == end_id)
        state = tuple(part[rows] for part in state)
        context = None if context is None else context[rows]
        prev = chosen.reshape(-1)
        if done.all():
            break
    normalised = scores / output_lengths(tokens, end_id) ** length_penalty  # (N, K)
    best = np.argmax(np.where(np.isfinite(scores), normalised, -np.inf), axis=1)  # (N,)
    return Decoded(tokens[np.arange(N), best], logps[np.arange(N), best],
                   None if alphas is None else alphas[np.arange(N), best])


def output_lengths(tokens: np.ndarray, end_id: int) -> np.ndarray:
    """(..., L) ids -> (...) characters up to and including the first end symbol (L if there is none)."""
    is_end = tokens == end_id
    return np.where(is_end.any(axis=-1), is_end.argmax(axis=-1) + 1, tokens.shape[-1])


def normalised_scores(decoded: Decoded, end_id: int, length_penalty: float) -> np.ndarray:
    return decoded.logps.sum(axis=1) / output_lengths(decoded.tokens, end_id) ** length_penalty  # (N,)


def better_of(a: Decoded, b: Decoded, end_id: int, length_penalty: float) -> Decoded:
    """Per source, the hypothesis with the higher normalised score (a on ties)."""
    take_b = normalised_scores(b, end_id, length_penalty) > normalised_scores(a, end_id, length_penalty)
    L = max(a.tokens.shape[1], b.tokens.shape[1])

    def widen(z, fill):
        """Pad a decoding that stopped early to L steps."""
        return np.concatenate([z, np.full((z.shape[0], L - z.shape[1], *z.shape[2:]), fill, dtype=z.dtype)], axis=1)

    def pick(x, y, fill):
        if x is None:
            return None
        x, y = widen(x, fill), widen(y, fill)
        return np.where(take_b.reshape(-1, *[1] * (x.ndim - 1)), y, x)

    return Decoded(pick(a.tokens, b.tokens, end_id), pick(a.logps, b.logps, 0.0), pick(a.alphas, b.alphas, 0.0))


def encode_sources(tokenizers: PairTokenizers, texts: list[str], first: int = 1) -> list[np.ndarray]:
    """Source ids of every text; a character the translator never saw is an error naming the input (numbered
    from ``first``)."""
    known = tokenizers.source.index
    for number, text in enumerate(texts, start=first):
        unknown = sorted(set(text) - known.keys())
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:10])
            raise RnnlabError(f"input {number} ({text[:40]!r}) has {len(unknown)} character(s) the translator was "
                              f"not trained on: {shown}; it knows {''.join(tokenizers.source.chars)!r}")
    return [tokenizers.encode_source(text) for text in texts]


def decode_bytes(config: s2s.Seq2SeqConfig, source_length: int, max_length: int, beam_size: int) -> int:
    """About how many bytes decoding one source of ``source_length`` characters takes, all its hypotheses
    (the beam's K and the greedy one) together: per step the attention weights over the source, the
    tokens and log-probabilities kept, the logits; once the encoder's outputs and keys (float64 in places)."""
    rows = beam_size + (1 if beam_size > 1 else 0)
    S, L = source_length, max_length
    He, Hd, V = config.encoder_hidden, config.decoder_hidden, config.target_vocab_size
    per_hypothesis = 8 * (L * (S + 4) + 3 * V + 6 * Hd + S * (2 * He + config.attention_size))
    encoder = 8 * S * (2 * He * (CELLS_WIDTH + 2) + config.attention_size)
    return rows * per_hypothesis + encoder


CELLS_WIDTH = 8             # the widest cell's cached arrays per unit (LSTM: gates and states), for the estimate


def budget_batches(lengths: list[int], row_bytes, budget: int | None, max_batch: int = MAX_BATCH) -> list[list[int]]:
    """Indices of the non-empty sources sorted by length, cut into batches that fit ``budget`` bytes (at most
    ``max_batch`` rows each); ``row_bytes(S)`` is one row's cost at source length S."""
    order = sorted((i for i in range(len(lengths)) if lengths[i]), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:                               # sorted: the last row of a batch is its longest
        if current and (len(current) >= max_batch or
                        (budget is not None and (len(current) + 1) * row_bytes(lengths[i]) > budget)):
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def translate(params: dict, config: s2s.Seq2SeqConfig, tokenizers: PairTokenizers, texts: list[str], *,
              beam_size: int = 1, max_length: int | None = None, length_penalty: float = 1.0,
              max_batch: int = MAX_BATCH, first: int = 1) -> list[Translation]:
    """One Translation per text, in order. An empty text translates to an empty output. The texts are
    decoded in batches that fit the memory budget (module docstring); errors number them from ``first``."""
    require(beam_size > 0, f"--beam_size must be > 0, got {beam_size}")
    require(max_batch > 0, f"batch size must be > 0, got {max_batch}")
    require(0 <= length_penalty <= MAX_LENGTH_PENALTY,
            f"--length_penalty must be between 0 and {MAX_LENGTH_PENALTY:g}, got {length_penalty}")
    max_length = config.max_output_length if max_length is None else max_length
    require(max_length > 0, f"--max_length must be > 0, got {max_length}")
    end = tokenizers.end_id
    ids = encode_sources(tokenizers, texts, first)
    budget = memory_budget(0.5)

    def row_bytes(S: int) -> int:
        return decode_bytes(config, S, max_length, beam_size)

    for number, source in enumerate(ids, start=first):
        if budget is not None and row_bytes(len(source)) > budget:
            raise RnnlabError(f"input {number} ({len(source):,} characters, up to {max_length:,} output characters) "
                              f"needs about {format_bytes(row_bytes(len(source)))} to translate, more than the "
                              f"{format_bytes(budget)} it may use here: give shorter inputs (a translator's "
                              "checkpoint with a huge max_output_length is damaged)")
    results = [Translation("", "", 0.0, 0.0, np.zeros((0, 0)), True) for _ in texts]
    for chunk in budget_batches([len(x) for x in ids], row_bytes, budget, max_batch):
        source, mask = pad_sequences([ids[i] for i in chunk])   # (S, N)
        memory, _ = s2s.encode_memory(params, config, source, mask)
        decoded = greedy_decode(params, config, memory, end, max_length)
        if beam_size > 1:
            beam = beam_decode(params, config, memory, end, max_length, beam_size, length_penalty)
            decoded = better_of(decoded, beam, end, length_penalty)   # never worse than greedy
        lengths = output_lengths(decoded.tokens, end)
        for row, i in enumerate(chunk):
            n = int(lengths[row])
            finished = bool(decoded.tokens[row, n - 1] == end)
            out = decoded.tokens[row, :n - 1] if finished else decoded.tokens[row, :n]
            logprob = float(decoded.logps[row, :n].sum())
            alpha = (decoded.alphas[row, :len(out), :len(ids[i])] if decoded.alphas is not None
                     else np.zeros((len(out), len(ids[i]))))
            results[i] = Translation(texts[i], tokenizers.target.decode(out), logprob, logprob / n ** length_penalty,
                                     np.asarray(alpha, dtype=np.float64), finished)
    return results


def exact_match(params: dict, config: s2s.Seq2SeqConfig, tokenizers: PairTokenizers, pairs: list, *,
                beam_size: int = 1) -> float:
    """The fraction of pairs whose translation equals the target exactly (greedy decoding by default)."""
    require(len(pairs) > 0, "exact match needs at least one pair")
    translations = translate(params, config, tokenizers, [source for source, _ in pairs], beam_size=beam_size)
    return float(np.mean([t.output == target for t, (_, target) in zip(translations, pairs, strict=True)]))
