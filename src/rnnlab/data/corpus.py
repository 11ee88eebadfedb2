"""A corpus as token ids: read once as a stream, encoded once, memory-mapped after.

    file(s) --read in chunks--> characters --pass 1--> vocabulary, size, SHA-256
            --pass 2--> ids (uint8 / uint16 / uint32) --> cache file --np.memmap--> Corpus.ids

Holding a text as a Python string costs 1-4 bytes per character, its list of lines ~60 bytes per line, and
an int64 id array 8 bytes per character -- several copies of a 1 GB corpus do not fit in memory. Here the
text is never held whole: each file is read in chunks of :data:`CHUNK_BYTES`, decoded incrementally (UTF-8,
a byte-order mark dropped, ``\\r\\n`` -> ``\\n``), and turned into code points with NumPy. Pass 1 marks every
code point seen (the vocabulary is their sorted set, as ``CharTokenizer.fit`` would make it) and hashes the
bytes; pass 2 maps code points to ids through a lookup table and writes them, in the smallest unsigned type
that holds the vocabulary, to a cache file that training opens with ``np.memmap``: only the pages a batch
touches are ever read. A ``lines`` corpus also keeps two int64 arrays, the start and end of every non-blank
line, instead of a list of strings.

The cache (``--cache_dir``; default ``$XDG_CACHE_HOME/rnnlab`` or ``~/.cache/rnnlab``, never beside or
inside the data) is a folder marked by a ``CACHEDIR.TAG`` that holds, per text, ``<key>.ids`` and
``<key>.json``, where the key is the SHA-256 of the text's bytes plus the format version. A small
``stat-<key>.json`` per set of source files maps their (path, size, mtime, *ctime*, inode, device) to that
key, so a warm start reads almost no text; when a file changes, its stat entry no longer matches and the
text is hashed again. The change time cannot be set back by a user (``touch`` and ``os.utime`` set only
mtime and atime; writing a file sets ctime to now), so a file edited in place with its size and mtime
restored still misses the stat entry.

Cache files are written through the output guard (atomically, under the cache folder's lock, temporary
files that killed encoders left are removed) and are untrusted when read back. An entry is used only after
it is checked against itself and against the files: its JSON against a schema; its characters must be
strictly increasing (a permuted list would garble the text); its per-character counts must sum to its
length and each be at least 1; the ids file must have the CRC-32 recorded when its ids were written and
counted (one chunked read, which also proves every id lies inside the vocabulary); and its sample (the
SHA-256 of the text's size, first and last 4 KiB) must match the source files now. A stale or damaged
entry is rebuilt. ``verify=True`` (a resumed run) hashes the whole text again and compares it with the
entry: a resume checks what the corpus *is*, not what the cache says. Texts smaller than
:data:`CACHE_MIN_BYTES` are encoded in memory (in milliseconds) and never cached.

A ``--dataset`` may name a shipped corpus, a file, a folder (every non-hidden regular file under it,
sorted by path, except rnnlab's own checkpoint and cache folders) or a glob pattern (``'books/*.txt'``);
documents are joined by :data:`DOCUMENT_SEPARATOR`, one blank line. The files, the folder and the pattern
are inputs of the run (``files.note_read``): no output may be written there.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import itertools
import json
import mmap
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .. import files
from .. import schema as s
from ..errors import RnnlabError, require
from ..files import check_path_text, read_bytes, regular_file
from .text import DATA_MODES, NEWLINE, SHIPPED_DATASETS, CharTokenizer, guess_mode

CHUNK_BYTES = 8 * 2 ** 20
CACHE_MIN_BYTES = int(os.environ.get("RNNLAB_CACHE_MIN_BYTES", 8 * 2 ** 20))   # smaller texts: in memory
CACHE_FORMAT = 3
SAMPLE_BYTES = 4096        # the head and tail of a text that an entry's sample covers
DOCUMENT_SEPARATOR = "\n\n"
MAX_CODE_POINT = 0x10FFFF
LINES_AUTO_MAX = 100       # `auto` reads a text as a list when every line is 1..100 characters (text.guess_mode)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnlab"


# ---- sources: what --dataset names ---------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One file of a dataset (``path`` None for a shipped corpus, read from the package)."""

    name: str
    path: Path | None
    size: int
    stat_key: tuple            # (path, size, mtime_ns, ctime_ns, inode, device): a changed file changes this


def find_sources(dataset: str) -> tuple[str, str | None, list[Source]]:
    """--dataset -> (display name, absolute path or None for a shipped corpus, the files in reading order)."""
    if dataset in SHIPPED_DATASETS:
        data = resources.files("rnnlab.corpora").joinpath(SHIPPED_DATASETS[dataset][0])
        return dataset, None, [Source(dataset, None, len(data.read_bytes()), (dataset,))]
    check_path_text(dataset, "--dataset")
    path = Path(dataset)
    if path.is_dir():
        files.note_read(path, f"the dataset folder {dataset}")
        found = sorted(p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts)
                       and not p.is_dir() and not inside_rnnlab_folder(p, path))
        require(found, f"dataset folder {dataset!r} holds no files: give a folder of UTF-8 text files")
    elif glob.has_magic(dataset):
        files.note_read_pattern(dataset, f"the dataset pattern {dataset}")
        found = sorted(Path(p) for p in glob.glob(dataset, recursive=True) if not os.path.isdir(p))
        require(found, f"dataset pattern {dataset!r} matches no files: check the pattern (quote it so the shell "
                       "does not expand it)")
    elif not path.exists() and not path.is_symlink():
        names = ", ".join(SHIPPED_DATASETS)
        hint = "a path to a UTF-8 text file" if path.suffix or "/" in dataset else f"one of {names} or a file path"
        raise RnnlabError(f"dataset {dataset!r} not found: give {hint}")
    else:
        found = [path]
    sources = []
    for file in found:
        regular_file(file, "dataset file" if len(found) > 1 else "dataset")
        files.note_read(file, "the dataset" if len(found) == 1 else f"a file of the dataset {dataset}")
        st = os.stat(file)
        sources.append(Source(file.name, file.resolve(), st.st_size,
                              (str(file.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)))
    return (path.name or dataset), str(Path(dataset).absolute()), sources


def inside_rnnlab_folder(path: Path, top: Path) -> bool:
    """Whether ``path`` lies in a checkpoint or cache folder of rnnlab's under ``top`` (never corpus text)."""
    return any(files.is_checkpoint_folder(folder) or files.is_cache_folder(folder)
               for folder in path.parents if folder == top or top in folder.parents)


def read_chunks(source: Source):
    if source.path is None:
        data = resources.files("rnnlab.corpora").joinpath(SHIPPED_DATASETS[source.name][0]).read_bytes()
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start:start + CHUNK_BYTES]
        return
    try:
        with open(source.path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    except OSError as err:
        raise RnnlabError(f"dataset file {source.path}: {err.strerror}: check its permissions") from None


def code_points(sources: list[Source], on_chunk: Callable[[bytes], None] = lambda b: None):
    """Every document's characters as chunks of code points (uint8 for ASCII, else uint32; UTF-8 decoded
    incrementally, BOM dropped, \r\n -> \n), with the separator between documents. ``on_chunk`` sees the raw
    bytes (the separator's included), for hashing and progress. A bad byte is one error naming the file and
    the offset."""
    separator = np.frombuffer(DOCUMENT_SEPARATOR.encode("utf-32-le"), dtype=np.uint32)
    for number, source in enumerate(sources):
        if number:
            on_chunk(DOCUMENT_SEPARATOR.encode("utf-8"))
            yield separator
        decoder, offset, pending_cr = codecs.getincrementaldecoder("utf-8-sig")(), 0, False
        for chunk in itertools.chain(read_chunks(source), [None]):   # lazily: one chunk in memory at a time
            final = chunk is None
            try:
                text = decoder.decode(b"" if final else chunk, final=final)
            except UnicodeDecodeError as err:
                raise RnnlabError(f"dataset file {source.path or source.name} is not valid UTF-8 (bad byte near "
                                  f"offset {offset + max(err.start, 0)}): convert it, e.g. with "
                                  "`iconv -t utf-8`") from None
            if not final:
                offset += len(chunk)
                on_chunk(chunk)
            if pending_cr:
                text = "\r" + text
            pending_cr = text.endswith("\r") and not final
            if pending_cr:
                text = text[:-1]                                 # its \n may start the next chunk
            text = text.replace("\r\n", NEWLINE)
            if text:                                             # ASCII: the bytes are the code points
                yield (np.frombuffer(text.encode("ascii"), dtype=np.uint8) if text.isascii()
                       else np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))


# ---- the corpus ----------------------------------------------------------------------------------------

@dataclass
class Corpus:
    """A text as ids. ``ids`` (N,) is an in-memory array or a read-only memmap of the cache file.

    ``path`` is the absolute path the dataset was given as (None for a shipped corpus); ``n_bytes`` and
    ``sha256`` fingerprint the text's bytes (documents and separators), so a checkpoint can tell whether it
    is resumed on the same data."""

    name: str
    mode: str                            # "lines" or "stream"
    ids: np.ndarray
    tokenizer: CharTokenizer
    path: str | None = None
    n_bytes: int = 0
    sha256: str = ""
    cached: Path | None = None           # the cache file behind ids, if any
    _lines: tuple | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_text(cls, text: str, mode: str = "auto", name: str = "text") -> Corpus:
        """A corpus from a string in memory (tests, notebooks): the same ids a file with this text gives."""
        require(mode in DATA_MODES, f"unknown data mode {mode!r}: use one of {', '.join(DATA_MODES)}")
        text = text.replace("\r\n", NEWLINE)
        tokenizer = CharTokenizer.fit(text)
        data = text.encode("utf-8")
        ids = tokenizer.encode(text).astype(id_dtype(tokenizer.vocab_size))
        return cls(name, guess_mode(text) if mode == "auto" else mode, ids, tokenizer, None, len(data),
                   hashlib.sha256(data).hexdigest())

    @property
    def text(self) -> str:
        """The whole text as a string (decodes every id: for small corpora, tests and tools)."""
        return self.tokenizer.decode(self.ids)

    def fingerprint(self) -> dict:
        """What a checkpoint records about its corpus (and compares on resume)."""
        return {"name": self.name, "mode": self.mode, "chars": int(len(self.ids)), "bytes": self.n_bytes,
                "sha256": self.sha256, "path": self.path}

    def line_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) int64 of every non-blank line (a line with a non-whitespace character): the
        examples of a ``lines`` corpus. Computed once, block by block."""
        if self._lines is None:
            self._lines = scan_lines(self.ids, self.tokenizer)[:2]
        return self._lines

    def examples(self) -> list[str]:
        """The non-blank lines as strings (for small corpora, tests and --novelty)."""
        starts, ends = self.line_bounds()
        return [self.tokenizer.decode(self.ids[a:b]) for a, b in zip(starts, ends, strict=True)]


def whitespace_ids(tokenizer: CharTokenizer) -> np.ndarray:
    """(V,) bool: is each vocabulary character whitespace (as ``str.isspace`` says)?"""
    return np.array([ch.isspace() for ch in tokenizer.chars], dtype=bool)


def line_blocks(ids: np.ndarray, tokenizer: CharTokenizer, block: int = 1 << 16, max_block: int = 1 << 22):
    """Yield, block by block, (starts, ends, lines, longest) of ``ids``: the start and end of each non-blank
    line (one with a non-whitespace character), how many lines the block holds (blank ones too) and the
    longest stripped line. Blocks end at a newline, so a line never straddles two of them; they start small
    and grow to ``max_block`` (a reader that stops early reads little)."""
    space = whitespace_ids(tokenizer)                            # (V,)
    newline = tokenizer.index.get(NEWLINE, -1)
    begin = 0
    while begin < len(ids):
        size = block
        while True:                                              # grow the block until it ends a line
            stop = min(begin + size, len(ids))
            part = np.asarray(ids[begin:stop])
            cut = np.flatnonzero(part == newline)
            if stop == len(ids) or len(cut):
                break
            size *= 2
        block = min(block * 2, max_block)
        final = stop == len(ids)
        if not final:
            part = part[:cut[-1] + 1]
        n = len(part)
        nl = np.flatnonzero(part == newline)
        line_start = np.r_[0, nl + 1]                             # every line of the block (+ an empty one
        line_end = np.r_[nl, n]                                   # after the block's last newline)
        solid = ~space[part]                                      # (n,) non-whitespace?
        pos = np.arange(n, dtype=np.int64)
        first = np.r_[np.minimum.accumulate(np.where(solid, pos, n)[::-1])[::-1], n]  # first solid at/after i
        last = np.r_[-1, np.maximum.accumulate(np.where(solid, pos, -1))]           # last solid before i
        has = first[line_start] < line_end                        # the line holds a solid character
        stripped = last[line_end] - first[line_start] + 1         # its length without outer whitespace
        longest = int(stripped[has].max(initial=0))
        n_lines = len(nl) + (1 if final and (not n or part[-1] != newline) else 0)
        yield line_start[has] + begin, line_end[has] + begin, n_lines, longest
        begin += n


def scan_lines(ids: np.ndarray, tokenizer: CharTokenizer, block: int = 1 << 22):
    """-> (starts, ends, longest stripped length) of every non-blank line of ``ids`` (int64 arrays)."""
    starts, ends, longest = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for block_starts, block_ends, _, block_longest in line_blocks(ids, tokenizer, block, max(block, 1 << 22)):
        starts.append(block_starts)
        ends.append(block_ends)
        longest = max(longest, block_longest)
    return np.concatenate(starts), np.concatenate(ends), longest


def guess_mode_from_ids(ids: np.ndarray, tokenizer: CharTokenizer, block: int = 1 << 16) -> str:
    """``text.guess_mode`` on ids: ``lines`` when there are several lines, none blank and none longer than
    100 characters once stripped; else ``stream`` -- decided at the first block that shows prose, so a book
    is never scanned to its end."""
    newline = tokenizer.index.get(NEWLINE, -1)
    first, last = 0, len(ids)
    while last > first and ids[last - 1] == newline:             # text.strip(NEWLINE)
        last -= 1
    while first < last and ids[first] == newline:
        first += 1
    total = 0
    for starts, _, n_lines, longest in line_blocks(ids[first:last], tokenizer, block):
        if len(starts) < n_lines or longest > LINES_AUTO_MAX:
            return "stream"
        total += n_lines
    return "lines" if total > 1 else "stream"


def release_pages(ids: np.ndarray) -> None:
    """Unmap the pages of a memory-mapped id array that this process has touched (they stay in the OS's
    page cache; the next access maps them again). Each place a batch reads makes about 2 MB of the file
    resident (the kernel maps page-cache pages in large blocks: measured, 122 MB after one batch of 64
    streams), and pages once mapped stay counted in the process's memory, so without this a run's resident
    memory would grow with the part of the corpus it has walked through -- to the whole file in an epoch.
    The batches call it every RELEASE_EVERY batches. No-op for arrays that are not memory maps."""
    mapping = getattr(ids, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


def id_dtype(vocab_size: int):
    """The smallest unsigned type that holds every id."""
    return np.uint8 if vocab_size <= 2 ** 8 else np.uint16 if vocab_size <= 2 ** 16 else np.uint32


def load_corpus(dataset: str, mode: str = "auto", cache_dir=None,
                on_progress: Callable[[int, int], None] | None = None, verify: bool = False) -> Corpus:
    """Load a shipped corpus, a UTF-8 file, a folder or a glob as ids (see the module docstring).

    ``on_progress(bytes_done, bytes_total)`` is called while a large text is read and encoded. ``verify``
    hashes a cached text again instead of trusting its stat entry (a resumed run compares what it *is*)."""
    require(mode in DATA_MODES, f"unknown data mode {mode!r}: use one of {', '.join(DATA_MODES)}")
    name, path, sources = find_sources(dataset)
    total = sum(source.size for source in sources)
    if total >= CACHE_MIN_BYTES:
        ids, tokenizer, n_bytes, sha, cached, guessed = cached_ids(sources, cache_dir, on_progress, verify)
    else:
        ids, tokenizer, n_bytes, sha = encode_in_memory(sources)
        cached, guessed = None, None
    require(_has_text(ids, tokenizer), f"dataset {dataset!r} is empty or only whitespace: give a file with text in it")
    if mode == "auto":
        mode = (SHIPPED_DATASETS[dataset][1] if dataset in SHIPPED_DATASETS else
                guessed or guess_mode_from_ids(ids, tokenizer))
    return Corpus(name, mode, ids, tokenizer, path, n_bytes, sha, cached)


def training_examples(fingerprint: dict) -> set[str]:
    """The examples (names) of the lines corpus a checkpoint's ``fingerprint`` describes, for --novelty: read
    from its recorded dataset, which must still be the same text (same size and SHA-256)."""
    require(fingerprint["mode"] == "lines",
            "--novelty needs a one-name-per-line corpus (this checkpoint was trained on running text)")
    source = fingerprint["path"] or fingerprint["name"]
    require(fingerprint["path"] is None or os.path.exists(source),
            f"--novelty needs the training text, but {source} no longer exists: run without --novelty")
    loaded = load_corpus(source, fingerprint["mode"], verify=True)
    require((loaded.sha256, loaded.n_bytes) == (fingerprint["sha256"], fingerprint["bytes"]),
            f"--novelty needs the training text, but {source} has changed since training: run without --novelty")
    return set(loaded.examples())


def _has_text(ids: np.ndarray, tokenizer: CharTokenizer) -> bool:
    """Whether any character is not whitespace (the vocabulary says, without a pass over the ids)."""
    return bool(len(ids)) and not whitespace_ids(tokenizer).all()


# ---- encoding ------------------------------------------------------------------------------------------

def scan_vocabulary(sources, on_bytes) -> tuple[CharTokenizer, int, str, int]:
    """Pass 1: -> (tokenizer, bytes, SHA-256 of the bytes, characters)."""
    seen = np.zeros(MAX_CODE_POINT + 1, dtype=bool)
    digest, n_bytes, n_chars = hashlib.sha256(), [0], 0

    def on_chunk(chunk: bytes) -> None:
        digest.update(chunk)
        n_bytes[0] += len(chunk)
        on_bytes(len(chunk))

    for cp in code_points(sources, on_chunk):
        seen[cp] = True
        n_chars += len(cp)
    chars = [chr(c) for c in np.flatnonzero(seen)]
    return CharTokenizer(chars), n_bytes[0], digest.hexdigest(), n_chars


def encode_chunks(sources, tokenizer: CharTokenizer, on_bytes):
    """Pass 2: the ids of every chunk, through a code point -> id lookup table."""
    lookup = np.zeros(MAX_CODE_POINT + 1, dtype=id_dtype(tokenizer.vocab_size))
    lookup[[ord(ch) for ch in tokenizer.chars]] = np.arange(tokenizer.vocab_size)
    for cp in code_points(sources, lambda chunk: on_bytes(len(chunk))):
        yield lookup[cp]


def encode_in_memory(sources) -> tuple[np.ndarray, CharTokenizer, int, str]:
    tokenizer, n_bytes, sha, n_chars = scan_vocabulary(sources, lambda n: None)
    ids = np.empty(n_chars, dtype=id_dtype(tokenizer.vocab_size))
    at = 0
    for part in encode_chunks(sources, tokenizer, lambda n: None):
        ids[at:at + len(part)] = part
        at += len(part)
    return ids, tokenizer, n_bytes, sha


# ---- the cache -----------------------------------------------------------------------------------------

ENTRY = s.Object({"format": s.Int(CACHE_FORMAT, CACHE_FORMAT), "sha256": s.Str(pattern=r"[0-9a-f]{64}"),
                  "bytes": s.Int(0), "length": s.Int(1), "dtype": s.Str(choices=["uint8", "uint16", "uint32"]),
                  "guessed_mode": s.Str(choices=["lines", "stream"]),
                  "chars": s.ListOf(s.Str(pattern=r"(?s).", max_len=1), max_len=MAX_CODE_POINT + 1),
                  "counts": s.ListOf(s.Int(1), max_len=MAX_CODE_POINT + 1),
                  "crc32": s.Int(0, 2 ** 32 - 1),
                  "sample": s.Str(pattern=r"[0-9a-f]{64}")})
STAT_ENTRY = s.Object({"format": s.Int(CACHE_FORMAT, CACHE_FORMAT), "sources": s.ListOf(s.ListOf(s.Any())),
                       "sha256": s.Str(pattern=r"[0-9a-f]{64}")})
CACHE_NAME = re.compile(r"[0-9a-f]{32}\.(ids|json)|stat-[0-9a-f]{32}\.json|" + re.escape(files.CACHE_TAG) + "|"
                        + re.escape(files.LOCK_NAME) + "|" + files.TEMP_NAME.pattern)


def _key(text: str) -> str:
    return hashlib.sha256(f"rnnlab-cache-{CACHE_FORMAT}:{text}".encode()).hexdigest()[:32]


def open_cache_folder(cache_dir) -> Path:
    """``--cache_dir`` as rnnlab's cache folder: created and marked with a CACHEDIR.TAG; a folder that holds
    anything but cache files is refused (the cache removes what it does not recognise as live)."""
    folder = files.prepare_folder(cache_dir if cache_dir is not None else default_cache_dir(), files.CACHE,
                                  "--cache_dir")
    if not files.is_cache_folder(folder):
        strangers = sorted(p.name for p in folder.iterdir() if not CACHE_NAME.fullmatch(p.name))
        require(not strangers, f"--cache_dir {folder} holds files that are not rnnlab's cache (e.g. {strangers[:1]}): "
                               "give an empty folder or an rnnlab cache folder")
        files.write_file(folder / files.CACHE_TAG, files.CACHE_TAG_TEXT.encode(), files.CACHE, "--cache_dir")
    return folder


def text_sample(sources) -> str:
    """SHA-256 of the text's size in bytes, its first and its last :data:`SAMPLE_BYTES` (documents joined by
    the separator, as the text's own SHA-256 sees them): cheap to recompute from the files on a warm start,
    and different for any other text that differs in size, beginning or end."""
    separator = DOCUMENT_SEPARATOR.encode("utf-8")
    parts = []
    for number, source in enumerate(sources):
        if number:
            parts.append((len(separator), separator, separator))
        parts.append((source.size, *_head_and_tail(source)))
    total = sum(size for size, _, _ in parts)
    head = b"".join(first for _, first, _ in parts)[:SAMPLE_BYTES]
    tail = b"".join(last for _, _, last in parts)[-SAMPLE_BYTES:]
    return hashlib.sha256(total.to_bytes(8, "little") + head + tail).hexdigest()


def _head_and_tail(source: Source) -> tuple[bytes, bytes]:
    """The first and last SAMPLE_BYTES of one source (the whole file when it is smaller)."""
    if source.path is None:
        data = resources.files("rnnlab.corpora").joinpath(SHIPPED_DATASETS[source.name][0]).read_bytes()
        return data[:SAMPLE_BYTES], data[-SAMPLE_BYTES:]
    try:
        with open(source.path, "rb") as f:
            head = f.read(SAMPLE_BYTES)
            f.seek(max(source.size - SAMPLE_BYTES, 0))
            return head, f.read(SAMPLE_BYTES)
    except OSError as err:
        raise RnnlabError(f"dataset file {source.path}: {err.strerror}: check its permissions") from None


def hash_text(sources) -> str:
    """The SHA-256 of the text's bytes (documents and separators), read again from the files."""
    digest = hashlib.sha256()
    for number, source in enumerate(sources):
        if number:
            digest.update(DOCUMENT_SEPARATOR.encode("utf-8"))
        for chunk in read_chunks(source):
            digest.update(chunk)
    return digest.hexdigest()


def cached_ids(sources, cache_dir, on_progress, verify: bool = False):
    """The ids of ``sources`` from the cache, building the entry first if it is missing, stale or damaged.
    -> (ids memmap, tokenizer, bytes, sha256, path, guessed mode)."""
    cache_dir = open_cache_folder(cache_dir)
    keys = [list(x.stat_key) for x in sources]
    stat_path = cache_dir / f"stat-{_key(json.dumps(keys))}.json"
    sample = text_sample(sources)
    known = _read_json(stat_path, STAT_ENTRY, lambda e: e["sources"] == keys)
    if known is not None and (not verify or hash_text(sources) == known["sha256"]):
        entry = open_entry(cache_dir, known["sha256"], sample)
        if entry is not None:
            return entry
    total = sum(source.size for source in sources)
    done = [0]

    def on_bytes(n: int) -> None:                                # both passes: progress runs to 2 x total
        done[0] += n
        if on_progress is not None:
            on_progress(done[0], 2 * total)

    tokenizer, n_bytes, sha256, n_chars = scan_vocabulary(sources, on_bytes)
    lock = files.DirectoryLock(cache_dir, "--cache_dir")
    lock.acquire()                                               # one encoder at a time writes the folder
    try:
        files.remove_stale_temps(cache_dir)                      # what killed encoders left
        entry = open_entry(cache_dir, sha256, sample)            # the same text under another name or date
        if entry is None:
            write_entry(cache_dir, sha256, n_bytes, n_chars, tokenizer, sample,
                        encode_chunks(sources, tokenizer, on_bytes))
            entry = open_entry(cache_dir, sha256, sample)
            require(entry is not None, f"the cache entry just written in {cache_dir} cannot be read back: "
                                       "check the disk, or give another --cache_dir")
        document = {"format": CACHE_FORMAT, "sources": keys, "sha256": sha256}
        files.write_file(stat_path, json.dumps(document).encode("utf-8"), files.CACHE, "--cache_dir")
    finally:
        lock.release()
    return entry


def _read_json(path: Path, schema: s.Object, accept) -> dict | None:
    """A cache JSON if it exists, is valid and ``accept`` says it applies; else None (rebuild)."""
    try:
        document = json.loads(read_bytes(path, "cache file", 2 ** 26, follow_links=False, note=False))
        schema.check(document, "")
    except (RnnlabError, ValueError, RecursionError):
        return None
    return document if accept(document) else None


def write_entry(cache_dir: Path, sha256: str, n_bytes: int, n_chars: int, tokenizer: CharTokenizer, sample: str,
                parts) -> None:
    """Stream the ids into ``<key>.ids`` through the output guard (a temporary file, renamed when complete),
    counting every id and taking the CRC-32 of their bytes on the way, then write the JSON that describes
    them."""
    key = _key(sha256)
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    crc = [0]

    def counted():
        for part in parts:
            counts[:] += np.bincount(part, minlength=tokenizer.vocab_size)
            data = part.tobytes()
            crc[0] = zlib.crc32(data, crc[0])
            yield data

    final = files.write_file(cache_dir / f"{key}.ids", counted(), files.CACHE, "--cache_dir")
    ids = np.memmap(final, dtype=id_dtype(tokenizer.vocab_size), mode="r", shape=(n_chars,))
    document = {"format": CACHE_FORMAT, "sha256": sha256, "bytes": n_bytes, "length": n_chars,
                "dtype": np.dtype(ids.dtype).name, "guessed_mode": guess_mode_from_ids(ids, tokenizer),
                "chars": tokenizer.chars, "counts": counts.tolist(), "crc32": crc[0], "sample": sample}
    del ids
    files.write_file(cache_dir / f"{key}.json", json.dumps(document, ensure_ascii=False).encode("utf-8"),
                     files.CACHE, "--cache_dir")


def open_entry(cache_dir: Path, sha256: str, sample: str):
    """-> (ids memmap, tokenizer, bytes, sha256, path, guessed mode) of an entry that passes every check
    against itself and the files (module docstring), or None (missing, stale, damaged: rebuild). The ids
    file is read once in plain chunks (the check does not map it into this process): its CRC-32 must be the
    one recorded when its ids were written and counted, and no id may lie outside the vocabulary."""
    key = _key(sha256)
    entry = _read_json(cache_dir / f"{key}.json", ENTRY, lambda e: e["sha256"] == sha256 and e["sample"] == sample)
    if entry is None:
        return None
    chars, counts = entry["chars"], entry["counts"]
    increasing = all(a < b for a, b in zip(chars, chars[1:], strict=False))       # sorted, no repeat
    if len(chars) != len(counts) or not increasing or sum(counts) != entry["length"]:
        return None
    path = cache_dir / f"{key}.ids"
    try:
        tokenizer = CharTokenizer(chars)
        dtype = np.dtype(entry["dtype"])
        st = os.lstat(path)
        if (not stat.S_ISREG(st.st_mode) or st.st_size != entry["length"] * dtype.itemsize
                or dtype != id_dtype(tokenizer.vocab_size)):
            return None                                          # truncated, replaced or not ours: rebuild
        crc = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES - CHUNK_BYTES % 4):
                if int(np.frombuffer(chunk, dtype=dtype).max()) >= tokenizer.vocab_size:
                    return None                                  # an id outside the vocabulary
                crc = zlib.crc32(chunk, crc)
        if crc != entry["crc32"]:
            return None                                          # the ids are not those counted when written
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(entry["length"],))
    except (OSError, ValueError, RnnlabError):
        return None
    return ids, tokenizer, entry["bytes"], sha256, path, entry["guessed_mode"]
