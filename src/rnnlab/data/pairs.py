"""The ``pairs`` data mode: ``source<TAB>target`` lines (dates, transliteration, spelling ...) for seq2seq.

A pairs file is UTF-8 text with one example per line, the source and the target separated by ONE tab;
blank lines are skipped. The shipped ``dates`` dataset comes in three split files
(``rnnlab/corpora/dates.{train,valid,test}.txt``, built by ``scripts/build_dates.py``); a directory with
``train.txt``, ``valid.txt`` and optionally ``test.txt`` is read the same way; a single file is split
deterministically (its own ``Generator(0)``, so the split is the same whatever the training seed), every
copy of a source string going to the same split.

Characters: the source and the target each get their own :class:`~rnnlab.text.CharTokenizer`. The target's
newline is its start symbol (what the decoder reads first) and its end symbol (what it must predict last),
as for ``lines`` corpora:

    target "2018-05-09"  ->  decoder input "\\n2018-05-09",  decoder targets "2018-05-09\\n"

A batch (:class:`PairBatch`) holds time-first padded arrays and their 0/1 masks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import RnnlabError, require
from ..files import check_path_text, read_bytes
from .batches import LineBatches, pad_sequences
from .text import NEWLINE, CharTokenizer

TAB = "\t"
SPLITS = ("train", "valid", "test")
SHIPPED_PAIRS = {"dates": "dates.{split}.txt"}                  # name -> file pattern in rnnlab/corpora


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------

def parse_pairs(text: str, name: str) -> list[tuple[str, str]]:
    """The pairs of one file's text; a malformed line raises RnnlabError naming the file and the line."""
    pairs = []
    for number, line in enumerate(text.split(NEWLINE), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split(TAB)
        if len(fields) != 2:
            found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise RnnlabError(f"{name} line {number}: expected SOURCE<TAB>TARGET, found {found}: {line[:60]!r}")
        source, target = fields
        require(source != "" and target != "", f"{name} line {number}: the source and the target must both be "
                                               f"non-empty: {line[:60]!r}")
        pairs.append((source, target))
    require(pairs, f"{name} has no SOURCE<TAB>TARGET lines")
    return pairs


def decode_utf8(data: bytes, name: str) -> str:
    """UTF-8 (a byte-order mark dropped), or RnnlabError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise RnnlabError(f"{name} line {line} is not valid UTF-8 (bad byte at offset {err.start}): "
                          "convert the file, e.g. with `iconv -t utf-8`") from None


def read_pairs(path, digest=None) -> list[tuple[str, str]]:
    """The pairs of one file (``digest``, a hashlib object, is fed its bytes: the data's fingerprint)."""
    path = Path(path)
    require(path.exists() or path.is_symlink(),
            f"pairs file {str(path)!r} not found: give a UTF-8 file of SOURCE<TAB>TARGET lines")
    data = read_bytes(path, "pairs file")
    if digest is not None:
        digest.update(data)
    return parse_pairs(decode_utf8(data, str(path)), str(path))


@dataclass(frozen=True)
class PairData:
    """The pairs of a dataset, split (``test`` may be empty), and the fingerprint of the files they came
    from: ``path`` (absolute; None when shipped), ``n_bytes`` and ``sha256`` of their bytes in reading order."""

    name: str
    train: list
    valid: list
    test: list
    path: str | None = None
    n_bytes: int = 0
    sha256: str = ""

    def fingerprint(self) -> dict:
        """What a checkpoint records about its data (the same fields as a corpus's)."""
        chars = sum(len(s) + len(t) + 2 for part in (self.train, self.valid, self.test) for s, t in part)
        return {"name": self.name, "mode": "pairs", "chars": chars, "bytes": self.n_bytes, "sha256": self.sha256,
                "path": self.path}


def split_pairs(pairs: list, val_fraction: float, test_fraction: float = 0.0) -> tuple[list, list, list]:
    """Deterministic train / validation / test split by distinct source string (fixed Generator(0))."""
    require(val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1,
            f"validation ({val_fraction}) and test ({test_fraction}) fractions must be >= 0 and sum to < 1")
    sources = sorted({source for source, _ in pairs})
    order = np.random.default_rng(0).permutation(len(sources))
    n_val, n_test = round(len(sources) * val_fraction), round(len(sources) * test_fraction)
    split_of = {sources[i]: (1 if k < n_val else 2 if k < n_val + n_test else 0) for k, i in enumerate(order)}
    parts = ([], [], [])
    for pair in pairs:
        parts[split_of[pair[0]]].append(pair)
    return parts


def load_pairs(dataset: str, val_fraction: float = 0.1, test_fraction: float = 0.0) -> PairData:
    """A shipped pairs dataset by name (``dates``), a directory of split files, or one file to split."""
    digest = hashlib.sha256()
    if dataset in SHIPPED_PAIRS:
        files = resources.files("rnnlab.corpora")
        pattern = SHIPPED_PAIRS[dataset]
        splits = []
        for split in SPLITS:
            data = files.joinpath(pattern.format(split=split)).read_bytes()
            digest.update(data)
            splits.append(parse_pairs(data.decode("utf-8"), f"{dataset} {split}"))
        return PairData(dataset, *splits, None, sum(len(p) for p in splits), digest.hexdigest())
    check_path_text(dataset, "--dataset")
    path = Path(dataset)
    if path.is_dir():
        require((path / "train.txt").is_file() and (path / "valid.txt").is_file(),
                f"pairs directory {dataset!r} needs train.txt and valid.txt (and optionally test.txt)")
        train, valid = read_pairs(path / "train.txt", digest), read_pairs(path / "valid.txt", digest)
        test = read_pairs(path / "test.txt", digest) if (path / "test.txt").is_file() else []
        size = sum((path / f"{s}.txt").stat().st_size for s in SPLITS if (path / f"{s}.txt").is_file())
        return PairData(path.name, train, valid, test, str(path.absolute()), size, digest.hexdigest())
    if not path.exists():
        raise RnnlabError(f"pairs dataset {dataset!r} not found: give one of {', '.join(SHIPPED_PAIRS)}, "
                          "a SOURCE<TAB>TARGET file or a directory of train.txt / valid.txt")
    train, valid, test = split_pairs(read_pairs(path, digest), val_fraction, test_fraction)
    require(train and valid, f"{dataset!r} has too few distinct sources to hold out a validation part: "
                             "use a larger --val_fraction, or give more pairs")
    return PairData(path.name, train, valid, test, str(path.absolute()), path.stat().st_size, digest.hexdigest())


def uses_pairs(dataset: str, data_mode: str) -> bool:
    """Whether a run on ``dataset`` trains a translator (``--data_mode pairs``, or ``auto`` on pairs data): the
    one place this is decided (the settings' defaults and the Trainer's task both ask here)."""
    return data_mode == "pairs" or (data_mode == "auto" and looks_like_pairs(dataset))


def looks_like_pairs(dataset: str, probe_bytes: int = 1 << 20) -> bool:
    """Whether ``--data_mode auto`` should read ``dataset`` as pairs: a shipped pairs dataset, a directory with
    train.txt and valid.txt, or a file whose non-blank lines (in its first MB) each hold exactly one tab."""
    if dataset in SHIPPED_PAIRS:
        return True
    path = Path(dataset)
    try:
        if path.is_dir():
            return (path / "train.txt").is_file() and (path / "valid.txt").is_file()
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(probe_bytes)
    except (OSError, ValueError):
        return False
    lines = [line for line in head.split(b"\n")[:-1 if len(head) == probe_bytes else None] if line.strip()]
    return bool(lines) and all(line.count(b"\t") == 1 for line in lines)


# --------------------------------------------------------------------------------------------------------
# Characters to ids
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairTokenizers:
    """One tokenizer for the sources and one for the targets; the target's newline starts and ends a target."""

    source: CharTokenizer
    target: CharTokenizer

    @classmethod
    def fit(cls, pairs: list) -> PairTokenizers:
        return cls(CharTokenizer.fit("".join(s for s, _ in pairs)),
                   CharTokenizer.fit(NEWLINE + "".join(t for _, t in pairs)))

    @property
    def end_id(self) -> int:
        """The id the decoder reads first and must predict last (the target's newline)."""
        return self.target.index[NEWLINE]

    def encode_source(self, text: str) -> np.ndarray:
        return self.source.encode(text)

    def encode_target(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``"2018"`` -> (decoder input ids of ``"\\n2018"``, decoder targets ids of ``"2018\\n"``)."""
        ids = self.target.encode(NEWLINE + text + NEWLINE)
        return ids[:-1], ids[1:]

    def encode_pair(self, pair: tuple[str, str]) -> tuple:
        """-> (source ids, (decoder input ids, decoder target ids))."""
        return self.encode_source(pair[0]), self.encode_target(pair[1])

    def to_dict(self) -> dict:
        return {"source": self.source.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> PairTokenizers:
        """From a checkpoint's JSON (untrusted): the target vocabulary must hold the newline, which starts and
        ends every target."""
        target = CharTokenizer.from_dict(data["target"])
        require(NEWLINE in target.index, "the translator's target vocabulary has no newline, which starts and ends "
                                         "every output: the checkpoint is damaged")
        return cls(CharTokenizer.from_dict(data["source"]), target)


# --------------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------------

@dataclass
class PairBatch:
    source: np.ndarray           # (S, B) source ids
    source_mask: np.ndarray      # (S, B) 1.0 at real source characters
    dec_in: np.ndarray           # (T, B) what the decoder reads: the start symbol, then the target
    targets: np.ndarray          # (T, B) what it must predict: the target, then the end symbol
    target_mask: np.ndarray      # (T, B)
    epoch: int = 0
    reset_state: bool = True     # no state is carried from one batch of pairs to the next

    @property
    def ids(self) -> np.ndarray:
        """The source ids: ``batch.ids.shape[1]`` is the batch size, as for a language model's Batch."""
        return self.source

    @property
    def n_tokens(self) -> int:
        """Target characters (the end symbol included): what the loss is averaged over."""
        return int(self.target_mask.sum())


def collate_pairs(examples: list, epoch: int = 0) -> PairBatch:
    """Encoded pairs (source ids, (decoder input ids, decoder target ids)) -> a padded PairBatch."""
    source, source_mask = pad_sequences([s for s, _ in examples])
    dec_in, target_mask = pad_sequences([t[0] for _, t in examples])
    targets, _ = pad_sequences([t[1] for _, t in examples])
    return PairBatch(source, source_mask, dec_in, targets, target_mask, epoch)


class PairBatches(LineBatches):
    """Shuffled padded batches of encoded pairs, with the same saved position as LineBatches."""

    collate = staticmethod(collate_pairs)


def pair_eval_batches(examples: list, batch_size: int = 256) -> list[PairBatch]:
    """One pass over encoded pairs in order (validation)."""
    return [collate_pairs(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]
