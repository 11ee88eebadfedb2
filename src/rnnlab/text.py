"""Text in, integers out: loading a corpus, the character tokenizer, and splitting into examples.

A corpus is read in one of two *modes*:

* ``lines``  -- one example per line (dinosaur names). Example ``"rex"`` becomes
  ``inputs = "\\nrex"`` and ``targets = "rex\\n"``: the newline before a name is its start symbol and the
  newline after it its end symbol, so a model learns when a name stops.
* ``stream`` -- one continuous text (Shakespeare). Training reads ``seq_length`` windows from it and the
  target is the input shifted by one character.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import RnnlabError, require
from .files import check_path_text, read_bytes

SHIPPED_DATASETS = {"dinos": ("dinos.txt", "lines"), "shakespeare": ("shakespeare.txt", "stream")}
DATA_MODES = ("auto", "lines", "stream")
NEWLINE = "\n"


@dataclass(frozen=True)
class Corpus:
    """A loaded text and how to read it (``mode`` is ``"lines"`` or ``"stream"``).

    ``path`` is the file's absolute path (None for a shipped corpus); ``n_bytes`` and ``sha256`` fingerprint
    the file's bytes, so a checkpoint can tell whether it is resumed on the same data."""

    name: str
    text: str
    mode: str
    path: str | None = None
    n_bytes: int = 0
    sha256: str = ""

    def fingerprint(self) -> dict:
        """What a checkpoint records about its corpus (and compares on resume)."""
        return {"name": self.name, "mode": self.mode, "chars": len(self.text), "bytes": self.n_bytes,
                "sha256": self.sha256, "path": self.path}

    def examples(self) -> list[str]:
        """The non-empty lines of a ``lines`` corpus (each one training example)."""
        return [line for line in self.text.split(NEWLINE) if line.strip()]


def guess_mode(text: str) -> str:
    """``lines`` when the text looks like a list (no blank lines, every line short), else ``stream``."""
    lines = text.strip(NEWLINE).split(NEWLINE)
    is_list = len(lines) > 1 and all(0 < len(line.strip()) <= 100 for line in lines)
    return "lines" if is_list else "stream"


def load_corpus(dataset: str, mode: str = "auto") -> Corpus:
    """Load a shipped dataset by name (``dinos``, ``shakespeare``) or any UTF-8 text file by path."""
    require(mode in DATA_MODES, f"unknown data mode {mode!r}: use one of {', '.join(DATA_MODES)}")
    if dataset in SHIPPED_DATASETS:
        filename, shipped_mode = SHIPPED_DATASETS[dataset]
        data = resources.files("rnnlab.data").joinpath(filename).read_bytes()
        return Corpus(dataset, data.decode("utf-8"), shipped_mode if mode == "auto" else mode, None, len(data),
                      hashlib.sha256(data).hexdigest())
    check_path_text(dataset, "--dataset")
    path = Path(dataset)
    if not path.exists():
        names = ", ".join(SHIPPED_DATASETS)
        hint = "a path to a UTF-8 text file" if path.suffix or "/" in dataset else f"one of {names} or a file path"
        raise RnnlabError(f"dataset {dataset!r} not found: give {hint}")
    data = read_bytes(path, "dataset")
    try:
        text = data.decode("utf-8-sig")  # -sig: drop a byte-order mark (Notepad writes one)
    except UnicodeDecodeError as err:
        raise RnnlabError(
            f"dataset {dataset!r} is not valid UTF-8 (bad byte at offset {err.start}): "
            "convert it, e.g. with `iconv -t utf-8`"
        ) from None
    text = text.replace("\r\n", NEWLINE)
    require(text.strip() != "", f"dataset {dataset!r} is empty or only whitespace: give a file with text in it")
    return Corpus(path.name, text, guess_mode(text) if mode == "auto" else mode, str(path.resolve()), len(data),
                  hashlib.sha256(data).hexdigest())


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
    def fit(cls, text: str, unk_token: str | None = None) -> "CharTokenizer":
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
    def from_dict(cls, data: dict) -> "CharTokenizer":
        return cls(list(data["chars"]), data.get("unk_token"))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.to_dict() == other.to_dict()


def line_example(tokenizer: CharTokenizer, line: str) -> tuple[np.ndarray, np.ndarray]:
    """``"rex"`` -> (ids of ``"\\nrex"``, ids of ``"rex\\n"``): start and end are both the newline."""
    ids = tokenizer.encode(NEWLINE + line + NEWLINE)
    return ids[:-1], ids[1:]


def split_corpus(corpus: Corpus, val_fraction: float) -> tuple[str, str]:
    """Train / validation text.

    ``lines`` corpora are split by line after a *fixed* shuffle (its own ``Generator(0)``, so the split is
    the same whatever the training seed, and a sorted list such as the dinosaur names does not put all the
    "z" names into validation); ``stream`` corpora are split contiguously (the last part is validation).
    """
    require(0.0 <= val_fraction < 1.0, f"--val_fraction must be in [0, 1), got {val_fraction}")
    if corpus.mode == "lines":
        lines = corpus.examples()
        n_val = int(round(len(lines) * val_fraction))
        order = np.random.default_rng(0).permutation(len(lines))
        held_out = set(order[:n_val].tolist())
        train = [line for i, line in enumerate(lines) if i not in held_out]
        val = [line for i, line in enumerate(lines) if i in held_out]
        return "".join(line + NEWLINE for line in train), "".join(line + NEWLINE for line in val)
    cut = len(corpus.text) - int(round(len(corpus.text) * val_fraction))
    return corpus.text[:cut], corpus.text[cut:]
