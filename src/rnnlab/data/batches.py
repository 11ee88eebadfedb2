"""Turning token ids into training batches, with a position that can be saved and restored.

Two shapes of data (see ``text.py``):

* :class:`LineBatches` -- one example per line. ``batch_size`` examples of different lengths are padded to
  the longest with :func:`pad_sequences`, and a 0/1 mask marks the real positions so padding adds nothing to
  the loss or gradients. Every batch starts from a zero state. The order is reshuffled every epoch with the
  Generator passed in (or kept fixed with ``shuffle=False``).
* :class:`StreamBatches` -- continuous text. The text is cut into ``batch_size`` contiguous streams, and
  each batch is the next ``seq_length`` window of every stream, so the hidden state at the end of one batch
  is the right starting state for the next (truncated BPTT: the state is carried, its gradient is cut). At
  the end of the text an epoch ends and the state is reset.

Both yield :class:`Batch` objects with arrays of shape (T, B): time first, as the sequence loop wants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RnnlabError, require
from .corpus import release_pages

RELEASE_EVERY = 64   # batches between unmapping the touched pages of a memory-mapped corpus (corpus.release_pages)


@dataclass
class Batch:
    ids: np.ndarray              # (T, B) inputs
    targets: np.ndarray          # (T, B) next characters
    mask: np.ndarray | None      # (T, B) 1.0 for real characters, 0.0 for padding; None when all are real
    reset_state: bool            # start this batch from a zero state
    epoch: int                   # the epoch this batch belongs to

    @property
    def n_tokens(self) -> int:
        return int(self.ids.size if self.mask is None else self.mask.sum())


def pad_sequences(sequences: list[np.ndarray], pad_value: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different lengths into (T_max, B) ids and a (T_max, B) 0/1 float mask."""
    T = max(len(s) for s in sequences)
    padded = np.full((T, len(sequences)), pad_value, dtype=np.int64)   # (T, B)
    mask = np.zeros((T, len(sequences)), dtype=np.float64)             # (T, B)
    for b, seq in enumerate(sequences):
        padded[:len(seq), b] = seq
        mask[:len(seq), b] = 1.0
    return padded, mask


class LineBatches:
    """Padded batches of line examples: ``examples`` is any sequence (``len`` and ``[i]``) of pairs (ids,
    targets) of equal length -- a list, or ``data.LineExamples`` slicing them from a corpus' ids."""

    def __init__(self, examples, batch_size: int,
                 rng: np.random.Generator, shuffle: bool = True):
        require(len(examples) > 0, "no examples to train on: the corpus has no non-empty lines")
        require(batch_size > 0, f"--batch_size must be > 0, got {batch_size}")
        self.examples, self.batch_size, self.rng, self.shuffle = examples, min(batch_size, len(examples)), rng, shuffle
        self.epoch, self.position = 0, 0
        self.order = self._new_order()

    def _new_order(self) -> np.ndarray:
        """This epoch's order. The Generator's state *before* drawing it is kept: that state is all a
        checkpoint needs to redraw the same order (a few numbers instead of one index per example)."""
        self.order_rng_state = self.rng.bit_generator.state
        n = len(self.examples)
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.position >= len(self.order):
            self.epoch, self.position = self.epoch + 1, 0
            self.order = self._new_order()
        chosen = [self.examples[i] for i in self.order[self.position:self.position + self.batch_size]]
        self.position += self.batch_size
        if self.position % (RELEASE_EVERY * self.batch_size) < self.batch_size:
            release_pages(getattr(self.examples, "ids", None))
        return self.collate(chosen, self.epoch)

    @staticmethod
    def collate(chosen: list, epoch: int) -> Batch:
        """The examples of one batch -> a padded Batch (a subclass may build another kind of batch)."""
        ids, mask = pad_sequences([x for x, _ in chosen])
        targets, _ = pad_sequences([y for _, y in chosen])
        return Batch(ids, targets, None if mask.all() else mask, True, epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "rng": self.order_rng_state}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state``: the epoch's order is redrawn from the Generator state saved before it was
        drawn, which also leaves the Generator where the next epoch's shuffle continues."""
        epoch, position = int(state["epoch"]), int(state["position"])
        require(epoch >= 0 and 0 <= position <= len(self.examples) + self.batch_size,
                f"data position (epoch {epoch}, example {position}) does not fit a corpus of "
                f"{len(self.examples)} training examples: resume on the same data")
        set_generator_state(self.rng, state["rng"])
        self.epoch, self.position = epoch, position
        self.order = self._new_order()


class StreamBatches:
    """(T, B) windows walking through ``batch_size`` contiguous streams of one long id array.

    Stream b is ``data[b L : (b + 1) L]`` with L = (len(data) - 1) // B; window t of it is gathered from
    ``data`` when the batch is made (``data`` may be a memory map: nothing is copied up front)."""

    def __init__(self, data: np.ndarray, batch_size: int, seq_length: int):
        require(seq_length > 0, f"--seq_length must be > 0, got {seq_length}")
        require(batch_size > 0, f"--batch_size must be > 0, got {batch_size}")
        stream_len = (len(data) - 1) // batch_size
        require(stream_len >= seq_length,
                f"--seq_length {seq_length} needs at least {seq_length * batch_size + 1} characters "
                f"with --batch_size {batch_size}, the text has {len(data)}: use a smaller --seq_length "
                "or --batch_size, or a longer text")
        self.data, self.stream_len, self.seq_length = data, stream_len, seq_length
        self.stream_starts = np.arange(batch_size, dtype=np.int64) * stream_len    # (B,)
        self.epoch, self.position = 0, 0

    def window(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, targets) of the window at offset ``start`` of every stream, each (T, B) int64."""
        index = self.stream_starts[None, :] + np.arange(start, start + self.seq_length)[:, None]   # (T, B)
        ids = np.asarray(self.data[index], dtype=np.int64)
        return ids, np.asarray(self.data[index + 1], dtype=np.int64)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.position + self.seq_length > self.stream_len:
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position
        self.position += self.seq_length
        if start % (RELEASE_EVERY * self.seq_length) == 0:
            release_pages(self.data)
        return Batch(*self.window(start), None, start == 0, self.epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        require(epoch >= 0 and 0 <= position <= self.stream_len,
                f"data position (epoch {epoch}, window offset {position}) does not fit a text of "
                f"{self.stream_len} characters per stream: resume on the same data and --batch_size")
        self.epoch, self.position = epoch, position


def set_generator_state(rng: np.random.Generator, state: dict) -> None:
    """Restore a Generator's state from (untrusted) saved data: a bad state is one RnnlabError."""
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise RnnlabError(f"saved random-generator state is invalid ({err}): the checkpoint is damaged") from None
