"""Beam search: keep the K most probable partial sequences instead of only the best next character.

Greedy decoding takes argmax p(y_t | y_<t) at every step, but the most probable *sequence* may begin with a
less probable character. Beam search keeps K hypotheses and their summed log-probabilities

    score(y_1 .. y_t) = sum_{i <= t} log p(y_i | y_<i)

and at every step extends each of the K hypotheses by each of the V characters and keeps the K best of the
K V candidates (:func:`beam_step`). K = 1 is greedy decoding.

Beam search is not monotone in K: the greedy hypothesis can fall out of a wider beam (K others scored
higher so far) and the survivors can end lower than it would have. So the candidates returned here always
include the greedy sequence, which makes "a wider beam never returns a lower score than greedy" a
guarantee rather than a hope.

:func:`beam_search` is the language models' version (``rnnlab sample --beam_size K``): the K most probable
continuations of a prime, of a fixed length, each with its log-probability. The translator's version, with an
end symbol and length normalisation, is in ``translate.py`` and uses the same :func:`beam_step`.
"""

from __future__ import annotations

import numpy as np

from ..data.text import CharTokenizer
from ..errors import require, require_finite
from ..memory import require_memory
from ..nn import model as charmodel
from ..nn.activations import log_softmax
from .sampling import prime_context


def beam_step(scores: np.ndarray, logp: np.ndarray, beam_size: int):
    """scores (N, K) of the hypotheses of N independent searches, logp (N, K, V) of their next characters
    -> (scores, parents, tokens), each (N, beam_size), best first: candidate k of search n extends hypothesis
    parents[n, k] by tokens[n, k]. A hypothesis with score -inf (an unused slot) never wins over a finite one."""
    N, K, V = logp.shape
    candidates = (scores[:, :, None] + logp).reshape(N, K * V)   # (N, K V)
    best = np.argsort(-candidates, axis=1, kind="stable")[:, :beam_size]  # (N, beam_size); ties: lower id first
    return np.take_along_axis(candidates, best, axis=1), best // V, best % V


def first_scores(n: int, beam_size: int) -> np.ndarray:
    """(N, K) start scores: 0 for one hypothesis, -inf for the other K - 1 slots, so that the first step
    does not extend K copies of the same empty hypothesis into K copies of the same candidates."""
    scores = np.full((n, beam_size), -np.inf)
    scores[:, 0] = 0.0
    return scores


def reorder_state(state: list, rows: np.ndarray) -> list:
    """A language model's state (per layer a tuple of (B, H) arrays) with its rows picked by ``rows``."""
    return [tuple(part[rows] for part in layer) for layer in state]


def continuations(params: dict, config: charmodel.ModelConfig, logits: np.ndarray, state: list,
                  beam_size: int, length: int) -> list[tuple[tuple, float]]:
    """A beam of width ``beam_size`` from the prime's last logits (V,) and state -> [(ids, logprob)]."""
    scores = first_scores(1, beam_size)                          # (1, K)
    state = reorder_state(state, np.zeros(beam_size, dtype=np.int64))  # (K, H): K copies of the prime's state
    require_finite(logits)
    logp = np.tile(log_softmax(logits.astype(np.float64)), (beam_size, 1))  # (K, V)
    sequences = np.zeros((beam_size, 0), dtype=np.int64)         # (K, t)
    for t in range(length):
        scores, parents, tokens = beam_step(scores, logp[None], beam_size)
        parents, tokens = parents[0], tokens[0]                  # (K,)
        sequences = np.concatenate([sequences[parents], tokens[:, None]], axis=1)
        if t + 1 < length:
            logits_t, state, _ = charmodel.forward(params, config, tokens[None, :], reorder_state(state, parents))
            require_finite(logits_t)
            logp = log_softmax(logits_t[0].astype(np.float64))   # (K, V)
    return [(tuple(seq), float(score)) for seq, score in zip(sequences.tolist(), scores[0], strict=True)
            if np.isfinite(score)]


def beam_search(params: dict, config: charmodel.ModelConfig, tokenizer: CharTokenizer, prime: str = "",
                beam_size: int = 5, length: int = 20) -> list[tuple[str, float]]:
    """The ``beam_size`` most probable continuations of ``prime`` found, ``length`` characters each, as
    [(prime + continuation, log p(continuation | prime))], most probable first. Without a prime the model
    starts after the start symbol, as ``sampling.sample`` does."""
    require(beam_size > 0, f"--beam_size must be > 0, got {beam_size}")
    require(length > 0, f"beam search length must be > 0, got {length}")
    state_numbers = config.num_layers * config.hidden_size * 2 + config.vocab_size
    require_memory(8 * beam_size * (2 * length + 4 * state_numbers), f"a beam of {beam_size:,} continuations of "
                   f"{length:,} characters", "give a smaller --beam_size or --length")
    ids = tokenizer.encode(prime_context(tokenizer, prime))
    state = charmodel.zero_state(config, 1, params["Wy"].dtype)
    logits, state, _ = charmodel.forward(params, config, ids.reshape(-1, 1), state)  # (T, 1, V)
    found = {}
    for width in sorted({beam_size, 1}, reverse=True):           # the greedy sequence is always a candidate
        for sequence, score in continuations(params, config, logits[-1, 0], state, width, length):
            found.setdefault(sequence, score)
    best = sorted(found.items(), key=lambda item: -item[1])[:beam_size]
    return [(prime + tokenizer.decode(sequence), score) for sequence, score in best]
