"""Generating text from a trained model, one character at a time.

At each step the model's logits z for the next character become probabilities

    p = softmax(z / tau)      (tau = temperature; tau < 1 sharpens, tau > 1 flattens, tau -> 0 is greedy)

optionally restricted to the ``top_k`` most likely characters, and the next character is drawn from p
(or taken as argmax p with ``greedy``). It is fed back in as the next input. The same function serves
every cell and every model size: it only needs a forward pass -- ``model.forward`` by default, or the
same model on a GPU (``frameworks.torch.device_forward``, ``rnnlab sample --engine torch --device cuda``).

The draw needs one uniform number per character, ``rng.random()``: a ``numpy.random.Generator`` (what
``rnnlab sample --seed`` uses), or :class:`PortableRandom`, a small generator whose every step is written out
so that another language reproduces it exactly -- the exported web page (``rnnlab export --format html``)
draws with the same generator in JavaScript, so one seed gives one text in NumPy, in the page and through
ONNX Runtime (docs/export.md says where the texts can still part).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..data.text import NEWLINE, CharTokenizer
from ..errors import require, require_finite
from ..memory import require_memory
from ..nn import model as charmodel
from ..nn.activations import softmax


def next_char_distribution(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """logits (V,) -> float64 probabilities (V,) after temperature and top-k."""
    z = np.asarray(logits, dtype=np.float64)
    require_finite(z)
    if top_k is not None:
        require(0 < top_k <= len(z), f"--top_k must be between 1 and the vocabulary size {len(z)}, got {top_k}")
        kth_largest = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= kth_largest, z, -np.inf)               # ties at the k-th value are all kept
    return softmax(z, temperature)


def pick(p: np.ndarray, rng: np.random.Generator, greedy: bool = False) -> int:
    """Draw an index from p (inverse-CDF with one uniform number), or its argmax when greedy."""
    if greedy:
        return int(np.argmax(p))
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


MASK32 = 0xFFFFFFFF


class PortableRandom:
    """xoshiro128** (Blackman & Vigna 2018) on four 32-bit words, seeded by splitmix32: uniform numbers that
    JavaScript (``templates/rnnlab.js``, ``PortableRandom``) reproduces bit for bit, since every operation
    is a 32-bit integer one and the final float is exact in double precision.

        next:    result = rotl(s1 * 5, 7) * 9;  t = s1 << 9;  s2 ^= s0;  s3 ^= s1;  s1 ^= s2;  s0 ^= s3;
                 s2 ^= t;  s3 = rotl(s3, 11)                                          (all mod 2^32)
        random:  ((next() >> 5) * 2^26 + (next() >> 6)) / 2^53                        53 random bits in [0, 1)
        seed:    s_k = splitmix32 output k of the seed (0 <= seed < 2^32), k = 0..3

    Only ``random()`` is offered: it is all :func:`pick` needs, so an instance stands in for a Generator.
    """

    def __init__(self, seed: int):
        require(isinstance(seed, int) and 0 <= seed <= MASK32,
                f"--seed of the portable generator must be an integer from 0 to {MASK32}, got {seed}")
        weyl, state = seed, []
        for _ in range(4):                                       # splitmix32: a Weyl sequence, then fmix32
            weyl = (weyl + 0x9E3779B9) & MASK32
            z = ((weyl ^ (weyl >> 16)) * 0x85EBCA6B) & MASK32
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & MASK32
            state.append(z ^ (z >> 16))
        self.state = state if any(state) else [1, 0, 0, 0]      # the all-zero state would stay zero

    def next_uint32(self) -> int:
        s0, s1, s2, s3 = self.state
        result = (rotl32((s1 * 5) & MASK32, 7) * 9) & MASK32
        t = (s1 << 9) & MASK32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self.state = [s0, s1, s2, rotl32(s3, 11)]
        return result

    def random(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        high = self.next_uint32() >> 5
        return (high * 67108864 + (self.next_uint32() >> 6)) / 9007199254740992.0


def rotl32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & MASK32


def prime_context(tokenizer: CharTokenizer, prime: str, stop_at_newline: bool = False) -> str:
    """The text the model reads before generating: the prime, or the start symbol (a newline, else the first
    character of the vocabulary) without one. A name starts after a newline: with ``stop_at_newline``, a
    prime is read as the beginning of a name."""
    start = NEWLINE if NEWLINE in tokenizer.index else tokenizer.chars[0]
    return (start + prime if stop_at_newline and not prime.startswith(NEWLINE) else prime) or start


def generate(params: dict, config: charmodel.ModelConfig, tokenizer: CharTokenizer, rng: np.random.Generator,
             *, length: int = 200, temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
             prime: str = "", stop_at_newline: bool = False, forward=None) -> Iterator[str]:
    """Yield up to ``length`` characters after ``prime``, one at a time, as they are drawn: nothing is held,
    so a caller can print them as they come and stop whenever it likes (a signal, a closed pipe).

    With no prime the model starts after a newline (the start symbol of a ``lines`` corpus). With
    ``stop_at_newline`` generation ends at the first newline, which is not yielded (one name per call),
    and a prime is fed after a newline, as the beginning of a name. ``forward(ids (T, 1), state or None) ->
    (logits (T, 1, V), state)`` computes the model (default: the NumPy model of ``params``).
    """
    require(length > 0, f"sample length must be > 0, got {length}")
    require(temperature > 0, f"--temperature must be > 0, got {temperature}")
    forward = forward or numpy_forward(params, config)
    ids = tokenizer.encode(prime_context(tokenizer, prime, stop_at_newline))
    logits, state = forward(ids.reshape(-1, 1), None)                                 # (T, 1, V)
    for _ in range(length):
        idx = pick(next_char_distribution(logits[-1, 0], temperature, top_k), rng, greedy)
        char = tokenizer.chars[idx]
        if stop_at_newline and char == NEWLINE:
            return
        yield char
        logits, state = forward(np.array([[idx]]), state)


def sample(params: dict, config: charmodel.ModelConfig, tokenizer: CharTokenizer, rng: np.random.Generator,
           *, length: int = 200, prime: str = "", **options) -> str:
    """``prime`` + the text :func:`generate` makes (the same keyword options), as one string."""
    require_memory(4 * (length + len(prime)), f"a sample of {length:,} characters",
                   "give a smaller --length (or stream it: rnnlab sample prints as it generates)")
    return prime + "".join(generate(params, config, tokenizer, rng, length=length, prime=prime, **options))


def numpy_forward(params: dict, config: charmodel.ModelConfig):
    """``forward(ids (T, B), state or None) -> (logits (T, B, V), state)`` of the NumPy model."""
    def forward(ids: np.ndarray, state):
        state = charmodel.zero_state(config, ids.shape[1], params["Wy"].dtype) if state is None else state
        logits, state, _ = charmodel.forward(params, config, ids, state)
        return logits, state
    return forward
