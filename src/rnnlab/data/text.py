"""Text in, integers out: the character tokenizer and the two ways of reading a text.

(Reading files, encoding them once and memory-mapping the ids is ``corpus.py``; splitting and batching is
``splits.py``.) A corpus is read in one of two *modes*:

* ``lines``  -- one example per line (dinosaur names). Example ``"rex"`` becomes
  ``inputs = "\\nrex"`` and ``targets = "rex\\n"``: the newline before a name is its start symbol and the
  newline after it its end symbol, so a model learns when a name stops.
* ``stream`` -- one continuous text (Shakespeare). Training reads ``seq_length`` windows from it and the
  target is the input shifted by one character.
"""

from __future__ import annotations

import numpy as np

from ..errors import RnnlabError, require

SHIPPED_DATASETS = {"dinos": ("dinos.txt", "lines"), "shakespeare": ("shakespeare.txt", "stream")}
DATA_MODES = ("auto", "lines", "stream", "pairs")
NEWLINE = "\n"


class CharTokenizer:
    """Maps characters to integer ids and back; the vocabulary is the sorted set of characters seen.

    With ``unk_token`` set, characters outside the vocabulary encode to that token instead of raising.
    """

    def __init__(self, chars: list[str], unk_token: str | None = None):
        require(len(chars) == len(set(chars)), "tokenizer vocabulary has duplicate characters")
        if unk_token is not None and unk_token not in chars:
            chars = [unk_token, *chars]
        self.chars = list(chars)
        self.unk_token = unk_token
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str, unk_token: str | None = None) -> CharTokenizer:
        return cls(sorted(set(text)), unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Text -> int64 ids of shape (len(text),)."""
        if self.unk_token is not None:
            unk = self.index[self.unk_token]
            return np.fromiter((self.index.get(ch, unk) for ch in text), dtype=np.int64, count=len(text))
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:10])
            raise RnnlabError(
                f"{len(unknown)} character(s) not in the vocabulary: {shown}; "
                "use only characters of the training text (or build the tokenizer with an unk_token)"
            )
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"chars": self.chars, "unk_token": self.unk_token}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(list(data["chars"]), data.get("unk_token"))

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.to_dict() == other.to_dict()


def line_example(tokenizer: CharTokenizer, line: str) -> tuple[np.ndarray, np.ndarray]:
    """``"rex"`` -> (ids of ``"\\nrex"``, ids of ``"rex\\n"``): start and end are both the newline."""
    ids = tokenizer.encode(NEWLINE + line + NEWLINE)
    return ids[:-1], ids[1:]


def guess_mode(text: str) -> str:
    """``lines`` when the text looks like a list (no blank lines, every line short), else ``stream``."""
    lines = text.strip(NEWLINE).split(NEWLINE)
    is_list = len(lines) > 1 and all(0 < len(line.strip()) <= 100 for line in lines)
    return "lines" if is_list else "stream"
