"""From a corpus of ids to what a run consumes: the train/validation split, training batches, and a fixed,
budgeted validation set.

    Corpus.ids --split--> training part --LineBatches / StreamBatches--> Batch (T, B) per step
                      \\-> held-out part --first eval_tokens characters--> the same validation batches every time

``lines`` corpora are split by line after a *fixed* shuffle (its own ``Generator(0)``, so the split is the
same whatever the training seed, and a sorted list such as the dinosaur names does not put all the "z"
names into validation); ``stream`` corpora are split contiguously (the last part is validation). Nothing is
copied: examples and windows are sliced from ``Corpus.ids`` (a memory map for large corpora) when a batch
is made.

Validation on a budget: evaluating a whole held-out 10 % of a 1 GB text would take minutes per report, so
by default the first ``eval_tokens`` characters of the held-out part are measured -- the same slice every
time, so numbers stay comparable within a run and across runs, and the best-checkpoint logic compares like
with like. :data:`DEFAULT_EVAL_TOKENS` = 262,144 characters: the standard error of a mean loss over n
characters is about sigma / sqrt(n_eff); with a per-character sigma of ~1.5-2 nats and neighbouring
characters correlated (n_eff ~ n / 10), 256k characters measure the loss to about +-0.01 nats, below the
differences worth acting on, in a few seconds for a 2 x 256 LSTM on two cores. ``eval_tokens=None`` measures
the whole held-out part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import RnnlabError, require
from .batches import Batch, LineBatches, StreamBatches, pad_sequences
from .corpus import Corpus
from .text import NEWLINE

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_EVAL_TOKENS = 262_144


def val_fraction(given: float | None) -> float:
    """The held-out share of a run: --val_fraction, or DEFAULT_VAL_FRACTION when it is not given (the one
    place that default is applied, for language models and translators alike)."""
    return DEFAULT_VAL_FRACTION if given is None else given


class LineExamples:
    """The line examples ``(ids of "\\n" + line, ids of line + "\\n")`` of the lines [starts, ends) of ``ids``,
    made when asked for: a sequence of pairs without a list of strings or arrays behind it."""

    def __init__(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, newline_id: int):
        self.ids, self.starts, self.ends, self.newline = ids, starts, ends, newline_id

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        line = np.asarray(self.ids[self.starts[i]:self.ends[i]], dtype=np.int64)
        framed = np.empty(len(line) + 2, dtype=np.int64)          # "\n" + line + "\n"
        framed[0] = framed[-1] = self.newline
        framed[1:-1] = line
        return framed[:-1], framed[1:]

    def n_tokens(self) -> int:
        return int((self.ends - self.starts).sum()) + len(self)

    def subset(self, chosen: np.ndarray) -> LineExamples:
        return LineExamples(self.ids, self.starts[chosen], self.ends[chosen], self.newline)

    def longest(self) -> int:
        return int((self.ends - self.starts).max(initial=0)) + 1


def split_line_indices(n_lines: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training line indices, held-out line indices), both in text order, after the fixed shuffle."""
    n_val = int(round(n_lines * val_fraction))
    held_out = np.zeros(n_lines, dtype=bool)
    held_out[np.random.default_rng(0).permutation(n_lines)[:n_val]] = True
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


class LineEvalBatches:
    """One pass over line examples in fixed order, padded in chunks (validation of ``lines`` corpora)."""

    def __init__(self, examples, batch_size: int = 256):
        self.examples, self.batch_size = examples, batch_size

    def __iter__(self):
        for first in range(0, len(self.examples), self.batch_size):
            chunk = [self.examples[i] for i in range(first, min(first + self.batch_size, len(self.examples)))]
            ids, mask = pad_sequences([x for x, _ in chunk])
            targets, _ = pad_sequences([y for _, y in chunk])
            yield Batch(ids, targets, mask, True, 0)


class StreamEvalBatches:
    """One pass over a text as parallel streams with the state carried (validation of ``stream`` corpora)."""

    def __init__(self, ids: np.ndarray, seq_length: int, max_streams: int = 32):
        streams = max(1, min(max_streams, (len(ids) - 1) // seq_length))
        self.windows = StreamBatches(ids, streams, seq_length)
        self.n_windows = self.windows.stream_len // seq_length
        self.n_tokens = self.n_windows * seq_length * streams

    def __iter__(self):
        self.windows.load_state_dict({"epoch": 0, "position": 0})
        for _ in range(self.n_windows):
            yield next(self.windows)


@dataclass
class TrainData:
    """What a run reads: ``batches`` (an endless iterator with a saveable position), ``val_batches`` (one
    pass, or None without validation), ``val_tokens`` (characters one validation measures)."""

    batches: LineBatches | StreamBatches
    val_batches: LineEvalBatches | StreamEvalBatches | None
    val_tokens: int
    steps_per_epoch: int
    longest_example: int       # time steps of the longest batch (memory estimates)
    notes: list


def build_data(corpus: Corpus, config, rng: np.random.Generator) -> TrainData:
    """Split ``corpus`` as ``config`` asks (val_fraction, eval_tokens, batch_size, seq_length) and make
    its batches. An explicit val_fraction that cannot be honoured is an error; the default one is dropped
    with a note."""
    fraction = val_fraction(config.val_fraction)
    build = _line_data if corpus.mode == "lines" else _stream_data
    train, val, problem = build(corpus, config, fraction)
    notes = []
    if problem is not None:
        problem_text, fix = problem
        message = f"cannot split {corpus.name!r} into training and validation: {problem_text}"
        if config.val_fraction is not None:
            raise RnnlabError(f"{message}; use {fix}, or --val_fraction 0")
        notes.append(f"{message}; training on all of it without validation")
        train, val, _ = build(corpus, config, 0.0)
    return _assemble(corpus, config, rng, train, val, notes)


def split_corpus(corpus: Corpus, val_fraction: float):
    """(training part, held-out part): ``LineExamples`` of whole lines for a ``lines`` corpus (after the
    fixed shuffle, each part in text order), id slices ``ids[:cut]``, ``ids[cut:]`` for a ``stream`` one."""
    require(0.0 <= val_fraction < 1.0, f"--val_fraction must be in [0, 1), got {val_fraction}")
    if corpus.mode == "stream":
        cut = len(corpus.ids) - int(round(len(corpus.ids) * val_fraction))
        return corpus.ids[:cut], corpus.ids[cut:]
    starts, ends = corpus.line_bounds()
    if NEWLINE not in corpus.tokenizer.index:                    # one line and no newline character at all
        raise RnnlabError(f"{corpus.name!r} has no newline, so it has no lines to read one by one: "
                          "use --data_mode stream")
    examples = LineExamples(corpus.ids, starts, ends, corpus.tokenizer.index[NEWLINE])
    train_idx, val_idx = split_line_indices(len(examples), val_fraction)
    return examples.subset(train_idx), examples.subset(val_idx)


def _line_data(corpus: Corpus, config, fraction: float):
    train, val = split_corpus(corpus, fraction)
    if fraction == 0:
        return train, None, None
    if len(train) == 0:
        return None, None, (f"it leaves 0 of its {len(val)} lines for training", "a smaller --val_fraction")
    if len(val) == 0:
        return None, None, ("it has too few lines to hold out any", "a larger --val_fraction")
    return train, val, None


def _stream_data(corpus: Corpus, config, fraction: float):
    train, val = split_corpus(corpus, fraction)
    if fraction == 0:
        return train, None, None
    need_train, need_val = config.seq_length * config.batch_size + 1, config.seq_length + 1
    if len(train) < need_train:
        return None, None, (f"it leaves {len(train)} characters for training, fewer than {need_train} "
                            f"(--batch_size x --seq_length + 1)", "a smaller --val_fraction")
    if len(val) < need_val:
        return None, None, (f"its validation part ({len(val)} characters) is shorter than one window "
                            f"(--seq_length {config.seq_length} + 1)",
                            "a larger --val_fraction, a smaller --seq_length")
    return train, val, None


def _assemble(corpus: Corpus, config, rng, train, val, notes) -> TrainData:
    budget = config.eval_tokens
    if corpus.mode == "lines":
        batches = LineBatches(train, config.batch_size, rng, shuffle=not config.deterministic)
        steps_per_epoch = math.ceil(len(train) / batches.batch_size)
        longest = train.longest()
        if val is not None and budget is not None:               # the first lines that fit the budget
            lengths = np.cumsum(val.ends - val.starts + 1)
            val = val.subset(np.arange(max(1, int(np.searchsorted(lengths, budget, side="right")))))
        val_batches = None if val is None else LineEvalBatches(val)
        val_tokens = 0 if val is None else val.n_tokens()
    else:
        batches = StreamBatches(train, config.batch_size, config.seq_length)
        steps_per_epoch = batches.stream_len // config.seq_length
        longest = config.seq_length
        if val is not None and budget is not None:
            val = val[:max(budget, config.seq_length) + 1]
        val_batches = None if val is None else StreamEvalBatches(val, config.seq_length)
        val_tokens = 0 if val_batches is None else val_batches.n_tokens
    return TrainData(batches, val_batches, val_tokens, steps_per_epoch, longest, notes)
