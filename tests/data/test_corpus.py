"""corpus.py: reading a dataset (shipped, file, folder, glob) as a stream, encoding it once to ids, and the
memory-mapped cache that makes the next start fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import corpus as corpus_module
from rnnlab.data.corpus import Corpus, guess_mode_from_ids, load_corpus, scan_lines
from rnnlab.data.text import NEWLINE, CharTokenizer, guess_mode
from rnnlab.errors import RnnlabError

# --- load_corpus ---------------------------------------------------------------------------------------


def test_load_shipped_dinos_is_a_lines_corpus_of_names():
    """'dinos' loads as ~1318 lowercase names, one per line, with a 27-character vocabulary (a-z + newline)."""
    corpus = load_corpus("dinos")
    assert corpus.mode == "lines"
    assert len(corpus.examples()) == 1318
    tok = CharTokenizer.fit(corpus.text)
    assert tok.vocab_size == 27
    assert NEWLINE in tok.index
    assert set(tok.chars) - {NEWLINE} == set("abcdefghijklmnopqrstuvwxyz")


def test_load_shipped_shakespeare_is_a_stream_corpus():
    """'shakespeare' loads as one continuous text of about 1.1M characters."""
    corpus = load_corpus("shakespeare")
    assert corpus.mode == "stream"
    assert 1_000_000 < len(corpus.text) < 1_200_000


def test_load_shipped_dataset_mode_can_be_overridden():
    """An explicit mode wins over the shipped dataset's own mode."""
    assert load_corpus("dinos", mode="stream").mode == "stream"


def test_load_corpus_from_utf8_file(tmp_path):
    """A path to a UTF-8 file loads with its exact text, its file name as name, and a guessed mode."""
    path = tmp_path / "names.txt"
    path.write_text("zoë\nrené\n恐竜\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.text == "zoë\nrené\n恐竜\n"
    assert corpus.name == "names.txt"
    assert corpus.mode == "lines"
    assert corpus.examples() == ["zoë", "rené", "恐竜"]


def test_load_corpus_normalises_windows_line_endings(tmp_path):
    """CRLF line endings become plain newlines, so '\\r' never enters the vocabulary."""
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"rex\r\nanna\r\n")
    corpus = load_corpus(str(path))
    assert corpus.text == "rex\nanna\n"
    assert corpus.examples() == ["rex", "anna"]


def test_load_corpus_strips_utf8_byte_order_mark(tmp_path):
    """A UTF-8 file saved with a byte-order mark (e.g. by Notepad) loads without '\\ufeff' in its text.

    Otherwise the invisible BOM becomes a vocabulary character and part of the first training example.
    """
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffrex\nanna\n".encode("utf-8"))
    corpus = load_corpus(str(path))
    assert corpus.text == "rex\nanna\n"
    assert corpus.examples() == ["rex", "anna"]


def test_load_corpus_missing_file_raises(tmp_path):
    """A path that does not exist raises RnnlabError naming it and saying what to give instead."""
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(RnnlabError, match="not found") as excinfo:
        load_corpus(missing)
    assert missing in str(excinfo.value)
    assert "UTF-8 text file" in str(excinfo.value)


@pytest.mark.parametrize("content", [b"", b"   \n\n\t \n", b"\r\n\r\n"], ids=["empty", "whitespace", "crlf-only"])
def test_load_corpus_empty_or_whitespace_file_raises(tmp_path, content):
    """An empty or whitespace-only file raises RnnlabError saying it has no text."""
    path = tmp_path / "blank.txt"
    path.write_bytes(content)
    with pytest.raises(RnnlabError, match="empty or only whitespace") as excinfo:
        load_corpus(str(path))
    assert "blank.txt" in str(excinfo.value)


def test_load_corpus_empty_directory_raises(tmp_path):
    """A folder is a dataset of its files; an empty one raises RnnlabError saying it holds none."""
    with pytest.raises(RnnlabError, match="holds no files"):
        load_corpus(str(tmp_path))


def test_load_corpus_undecodable_bytes_raise(tmp_path):
    """Bytes that are not UTF-8 raise RnnlabError with the offending offset and a conversion hint."""
    path = tmp_path / "latin.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RnnlabError, match="not valid UTF-8") as excinfo:
        load_corpus(str(path))
    message = str(excinfo.value)
    assert "offset 0" in message
    assert "iconv" in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__  # no chained traceback


def test_load_corpus_unknown_dataset_name_lists_the_shipped_ones():
    """An unknown bare name raises RnnlabError that lists the shipped datasets."""
    with pytest.raises(RnnlabError, match="not found") as excinfo:
        load_corpus("dinosaurs")
    message = str(excinfo.value)
    assert "'dinosaurs'" in message
    assert "dinos" in message and "shakespeare" in message


def test_load_corpus_unknown_mode_raises():
    """A mode other than auto/lines/stream raises RnnlabError listing the valid ones."""
    with pytest.raises(RnnlabError, match="auto, lines, stream"):
        load_corpus("dinos", mode="words")


def test_load_corpus_auto_mode_uses_guess(tmp_path):
    """A prose file loads as a stream corpus when the mode is auto, and as lines when asked."""
    path = tmp_path / "prose.txt"
    path.write_text("First paragraph here.\n\nSecond one.\n", encoding="utf-8")
    assert load_corpus(str(path)).mode == "stream"
    assert load_corpus(str(path), mode="lines").mode == "lines"


# --- reading in chunks: the same text whatever the chunk boundaries --------------------------------------


TRICKY = "héllo\r\nwörld 你好 🦕\r\n\r\nend\r" + "x\r\n" * 5


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_chunked_reading_gives_the_same_ids_as_reading_whole(tmp_path, monkeypatch, chunk):
    """A multi-byte character, a BOM or a \\r\\n split across two chunks decodes exactly as in one piece."""
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeff".encode() + TRICKY.encode("utf-8"))
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk)
    corpus = load_corpus(str(path))
    assert corpus.text == TRICKY.replace("\r\n", "\n")
    assert corpus.tokenizer == CharTokenizer.fit(corpus.text)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(list("ab é\n\t🦕")), max_size=60))
def test_line_scan_and_mode_guess_agree_with_the_string_versions(text):
    """scan_lines finds exactly the non-blank lines str.split finds, and guess_mode_from_ids says what
    text.guess_mode says, for any short text of tricky characters."""
    if not text.strip():
        return
    corpus = Corpus.from_text(text, mode="stream")
    starts, ends, _ = scan_lines(corpus.ids, corpus.tokenizer, block=7)   # tiny blocks: lines cross them
    lines = [corpus.tokenizer.decode(corpus.ids[a:b]) for a, b in zip(starts, ends, strict=True)]
    assert lines == [line for line in text.split(NEWLINE) if line.strip()]
    assert guess_mode_from_ids(corpus.ids, corpus.tokenizer, block=5) == guess_mode(text)


def test_ids_use_the_smallest_unsigned_type():
    """uint8 up to 256 characters, uint16 up to 65,536, uint32 above."""
    assert Corpus.from_text("abc\n").ids.dtype == np.uint8
    assert Corpus.from_text("".join(chr(0x4E00 + i) for i in range(300))).ids.dtype == np.uint16
    assert corpus_module.id_dtype(70_000) == np.uint32


# --- folders and globs ---------------------------------------------------------------------------------


def test_a_folder_is_its_files_joined_by_a_blank_line(tmp_path):
    """Every non-hidden file under the folder, sorted by path, joined by the documented separator."""
    books = tmp_path / "books"
    (books / "sub").mkdir(parents=True)
    (books / "b.txt").write_text("second book\n")
    (books / "a.txt").write_text("first book\n")
    (books / "sub" / "c.txt").write_text("third\n")
    (books / ".hidden").write_text("never read\n")
    corpus = load_corpus(str(books))
    sep = corpus_module.DOCUMENT_SEPARATOR
    assert corpus.text == sep.join(["first book\n", "second book\n", "third\n"])
    assert corpus.mode == "stream"


def test_a_glob_pattern_names_its_files(tmp_path):
    (tmp_path / "x1.txt").write_text("one\n")
    (tmp_path / "x2.txt").write_text("two\n")
    (tmp_path / "y.md").write_text("not me\n")
    corpus = load_corpus(str(tmp_path / "x*.txt"))
    assert corpus.text == "one\n" + corpus_module.DOCUMENT_SEPARATOR + "two\n"


def test_a_glob_that_matches_nothing_is_one_error(tmp_path):
    with pytest.raises(RnnlabError, match="matches no files"):
        load_corpus(str(tmp_path / "*.txt"))


def test_a_non_utf8_file_in_a_folder_is_named(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(RnnlabError, match="bad.txt is not valid UTF-8"):
        load_corpus(str(tmp_path))


# --- the cache -----------------------------------------------------------------------------------------


@pytest.fixture
def big_text(tmp_path, monkeypatch):
    """A text the cache handles (the size threshold lowered to 0 for the test)."""
    monkeypatch.setattr(corpus_module, "CACHE_MIN_BYTES", 0)
    path = tmp_path / "big.txt"
    path.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(2000)))
    return path


def test_a_cached_corpus_is_a_memory_map_equal_to_the_text(big_text, tmp_path):
    corpus = load_corpus(str(big_text), cache_dir=tmp_path / "cache")
    assert isinstance(corpus.ids, np.memmap) and corpus.cached.parent == tmp_path / "cache"
    assert corpus.text == big_text.read_text()
    assert corpus.tokenizer == CharTokenizer.fit(big_text.read_text())


def test_a_warm_start_reads_no_text(big_text, tmp_path, monkeypatch):
    """The second load finds the entry by the file's stat and never calls the encoder."""
    cache = tmp_path / "cache"
    first = load_corpus(str(big_text), cache_dir=cache)
    monkeypatch.setattr(corpus_module, "scan_vocabulary", lambda *a: pytest.fail("the text was read again"))
    second = load_corpus(str(big_text), cache_dir=cache)
    np.testing.assert_array_equal(first.ids, second.ids)
    assert second.sha256 == first.sha256


def test_a_changed_file_is_encoded_again(big_text, tmp_path):
    cache = tmp_path / "cache"
    load_corpus(str(big_text), cache_dir=cache)
    big_text.write_text("a completely different text\n" * 100)
    assert load_corpus(str(big_text), cache_dir=cache).text == "a completely different text\n" * 100


@pytest.mark.parametrize("damage", ["truncate", "json", "ids too large"])
def test_a_damaged_cache_entry_is_rebuilt(big_text, tmp_path, damage):
    """A truncated ids file, a broken JSON or ids out of the vocabulary: the entry is rebuilt, not trusted."""
    cache = tmp_path / "cache"
    good = load_corpus(str(big_text), cache_dir=cache)
    ids_file = good.cached
    del good
    if damage == "truncate":
        ids_file.write_bytes(ids_file.read_bytes()[:100])
    elif damage == "json":
        ids_file.with_suffix(".json").write_text("{not json")
    else:
        ids_file.write_bytes(b"\xff" * ids_file.stat().st_size)
    again = load_corpus(str(big_text), cache_dir=cache)
    assert again.text == big_text.read_text()


def test_a_cache_folder_that_cannot_be_written_is_one_error(big_text, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(RnnlabError, match="--cache_dir"):
        load_corpus(str(big_text), cache_dir=blocker / "cache")


def test_progress_is_reported_while_encoding(big_text, tmp_path):
    seen = []
    load_corpus(str(big_text), cache_dir=tmp_path / "cache", on_progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert all(b - a >= 0 for (a, _), (b, _) in pairwise(seen))


def test_a_resumed_run_on_a_memory_mapped_corpus_is_bit_identical(big_text, tmp_path):
    """N steps + resume to 2N on a cached, memory-mapped corpus == 2N steps in one go (the data position is
    a window offset into the memory map, restored exactly)."""
    from rnnlab.training.checkpoint import load_checkpoint
    from rnnlab.training.config import TrainConfig
    from rnnlab.training.trainer import Trainer

    common = dict(dataset=str(big_text), cache_dir=str(tmp_path / "cache"), cell="gru", hidden_size=12,
                  batch_size=4, seq_length=16, sample_every=1000, eval_every=10)
    full = Trainer(TrainConfig(iterations=30, **common))
    assert isinstance(full.corpus.ids, np.memmap)
    full.run()
    Trainer(TrainConfig(iterations=15, checkpoint_dir=str(tmp_path / "ck"), **common)).run()
    resumed = Trainer.resume(load_checkpoint(tmp_path / "ck"), {"iterations": 30})
    resumed.run()
    for name, value in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)


# ---- issue 21: a cache that cannot go stale ----------------------------------------------------------------

def cache_files(cache) -> dict:
    """{kind: path} of a cache holding one text: its ids, its JSON and its stat entry."""
    found = {p.suffix: p for p in cache.iterdir() if not p.name.startswith(("stat-", ".", "CACHEDIR"))}
    return {"ids": found[".ids"], "entry": found[".json"], "stat": next(cache.glob("stat-*.json"))}


def test_an_edit_in_place_with_size_and_mtime_restored_is_seen(big_text, tmp_path):
    """The stat key holds the change time, which no user can set back: the edited text is encoded again."""
    cache = tmp_path / "cache"
    load_corpus(str(big_text), cache_dir=cache)
    before = os.stat(big_text)
    data = bytearray(big_text.read_bytes())
    data[100:104] = b"WXYZ"                                     # same size
    big_text.write_bytes(bytes(data))
    os.utime(big_text, ns=(before.st_atime_ns, before.st_mtime_ns))   # mtime restored; ctime moved on
    assert os.stat(big_text).st_mtime_ns == before.st_mtime_ns
    assert load_corpus(str(big_text), cache_dir=cache).text == data.decode()


def test_a_cache_entry_whose_characters_were_permuted_is_rebuilt(big_text, tmp_path):
    cache = tmp_path / "cache"
    load_corpus(str(big_text), cache_dir=cache)
    entry = cache_files(cache)["entry"]
    document = json.loads(entry.read_text())
    document["chars"] = document["chars"][1:] + document["chars"][:1]     # same characters, another order
    entry.write_text(json.dumps(document))
    assert load_corpus(str(big_text), cache_dir=cache).text == big_text.read_text()


def test_cache_entry_counts_must_match_its_ids(big_text, tmp_path):
    """Ids swapped between two characters (same size, same vocabulary) disagree with the counts: rebuilt."""
    cache = tmp_path / "cache"
    good = load_corpus(str(big_text), cache_dir=cache)
    ids = np.array(good.ids)
    del good
    a, b = ids[0], ids[1]
    swapped = np.where(ids == a, b, np.where(ids == b, a, ids))
    cache_files(cache)["ids"].write_bytes(swapped.tobytes())
    assert load_corpus(str(big_text), cache_dir=cache).text == big_text.read_text()


def test_an_edited_stat_entry_cannot_make_one_corpus_train_on_anothers_ids(big_text, tmp_path):
    cache = tmp_path / "cache"
    other = tmp_path / "other.txt"
    other.write_text("another corpus entirely\n" * 500)
    load_corpus(str(other), cache_dir=cache)
    other_sha = json.loads(cache_files(cache)["entry"].read_text())["sha256"]
    load_corpus(str(big_text), cache_dir=cache)
    for stat_entry in cache.glob("stat-*.json"):
        document = json.loads(stat_entry.read_text())
        document["sha256"] = other_sha                          # every stat entry now points at other.txt's ids
        stat_entry.write_text(json.dumps(document))
    assert load_corpus(str(big_text), cache_dir=cache).text == big_text.read_text()


def test_resume_reads_what_the_corpus_is_not_what_the_cache_says(big_text, tmp_path):
    """A stale entry that passes every cheap check (its stat entry forged to the edited file's stat, an edit
    away from the sampled head and tail) is still caught by --resume, which hashes the whole text."""
    from rnnlab.training.checkpoint import load_checkpoint
    from rnnlab.training.config import TrainConfig
    from rnnlab.training.trainer import Trainer

    cache = tmp_path / "cache"
    common = dict(dataset=str(big_text), cache_dir=str(cache), hidden_size=8, batch_size=2, seq_length=8,
                  sample_every=1000, val_fraction=0.0)
    Trainer(TrainConfig(iterations=3, checkpoint_dir=str(tmp_path / "ck"), **common)).run()
    data = bytearray(big_text.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = b"line"[::-1]                      # same size, same characters, in the middle
    big_text.write_bytes(bytes(data))
    stat_entry = cache_files(cache)["stat"]
    document = json.loads(stat_entry.read_text())
    st = os.stat(big_text)
    document["sources"][0][1:] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    new_name = corpus_module._key(json.dumps(document["sources"]))
    (cache / f"stat-{new_name}.json").write_text(json.dumps(document))   # the forged entry a warm start finds
    assert load_corpus(str(big_text), cache_dir=cache).text != big_text.read_text()   # the cheap path is fooled
    with pytest.raises(RnnlabError, match="is not the text checkpoint"):
        Trainer.resume(load_checkpoint(tmp_path / "ck"), {"iterations": 6})


def test_a_killed_encoders_temporary_file_is_removed_by_the_next_encoder(big_text, tmp_path):
    cache = tmp_path / "cache"
    load_corpus(str(big_text), cache_dir=cache)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    leftover = cache / f".{'0' * 32}.ids.rnnlab-{dead}-0123abcd.tmp"
    leftover.write_bytes(b"\0" * 4096)
    big_text.write_text("a new text to encode\n" * 300)
    load_corpus(str(big_text), cache_dir=cache)
    assert not leftover.exists()


def test_the_cache_folder_is_marked_and_a_folder_of_other_files_is_refused(big_text, tmp_path):
    load_corpus(str(big_text), cache_dir=tmp_path / "new")
    assert (tmp_path / "new" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(RnnlabError, match="holds files that are not rnnlab's cache"):
        load_corpus(str(big_text), cache_dir=tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_an_old_cache_folder_without_its_tag_is_adopted(big_text, tmp_path):
    cache = tmp_path / "cache"
    load_corpus(str(big_text), cache_dir=cache)
    (cache / "CACHEDIR.TAG").unlink()                          # as rnnlab before the tag made it
    assert load_corpus(str(big_text), cache_dir=cache).text == big_text.read_text()
    assert (cache / "CACHEDIR.TAG").exists()


def test_a_dataset_folder_skips_rnnlabs_own_checkpoint_and_cache_folders(tmp_path):
    books = tmp_path / "books"
    (books / "run").mkdir(parents=True)
    (books / "cache").mkdir()
    (books / "a.txt").write_text("the only text\n")
    (books / "run" / "latest.json").write_text('{"format_version": 2}')
    (books / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (books / "cache" / "0123.json").write_text("{}")
    assert load_corpus(str(books)).text == "the only text\n"


# ---- bounded memory: one chunk at a time, mapped pages released ------------------------------------------

def test_a_file_is_read_one_chunk_at_a_time(tmp_path, monkeypatch):
    """Encoding pulls the next chunk of the file only after the previous one's code points were used: the
    text is never held whole (a 300 MB file once peaked at 362 MB of memory when every chunk was read first)."""
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 64)
    path = tmp_path / "t.txt"
    path.write_text("abcdefgh" * 100)
    pulled = []
    real = corpus_module.read_chunks

    def counting(source):
        for chunk in real(source):
            pulled.append(len(chunk))
            yield chunk

    monkeypatch.setattr(corpus_module, "read_chunks", counting)
    _, _, sources = corpus_module.find_sources(str(path))
    stream = corpus_module.code_points(sources)
    first = next(stream)
    assert len(pulled) == 1 and len(first) == 64
    assert sum(len(part) for part in stream) == 800 - 64 and len(pulled) == 800 // 64 + 1


def resident_kb(path) -> int:
    """This process's resident pages of the mapping of ``path`` (Linux: /proc/self/smaps)."""
    total, current = 0, None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                current = head[5] if len(head) > 5 else None
            elif head[0] == "Rss:" and current == str(path):
                total += int(head[1])
    return total


@pytest.mark.skipif(not hasattr(corpus_module.mmap, "MADV_DONTNEED") or not os.path.exists("/proc/self/smaps"),
                    reason="Linux: madvise and /proc/self/smaps")
def test_release_pages_unmaps_what_a_memory_mapped_corpus_touched(tmp_path):
    path = tmp_path / "ids.bin"
    np.arange(4 << 20, dtype=np.uint8).tofile(path)              # 4 MB
    ids = np.memmap(path, dtype=np.uint8, mode="r")
    assert int(ids[::4096].astype(np.int64).sum()) >= 0          # touch every page
    assert resident_kb(path) >= 4000
    corpus_module.release_pages(ids[100:])                       # a view of it releases the whole mapping
    assert resident_kb(path) < 100
    assert ids[5000] == 5000 % 256                               # and reads on afterwards
    corpus_module.release_pages(np.zeros(3))                     # not a memory map: nothing happens


def test_batches_release_the_mapped_pages_every_so_often(monkeypatch):
    from rnnlab.data import batches as batches_module
    from rnnlab.data.batches import StreamBatches

    released = []
    monkeypatch.setattr(batches_module, "release_pages", lambda data: released.append(data))
    monkeypatch.setattr(batches_module, "RELEASE_EVERY", 4)
    stream = StreamBatches(np.arange(1000) % 7, batch_size=2, seq_length=5)
    for _ in range(12):
        next(stream)
    assert len(released) == 3 and all(data is stream.data for data in released)


def test_line_batches_release_the_mapped_pages_of_their_examples(monkeypatch):
    from rnnlab.data import batches as batches_module
    from rnnlab.data.batches import LineBatches
    from rnnlab.data.splits import LineExamples

    released = []
    monkeypatch.setattr(batches_module, "release_pages", lambda data: released.append(data))
    monkeypatch.setattr(batches_module, "RELEASE_EVERY", 2)
    ids = np.tile(np.array([1, 2, 3, 0]), 50)                   # 50 lines "abc" ended by id 0
    starts = np.arange(50) * 4
    examples = LineExamples(ids, starts, starts + 3, 0)
    batches = LineBatches(examples, batch_size=5, rng=np.random.default_rng(0))
    for _ in range(8):
        next(batches)
    assert len(released) == 4 and all(data is ids for data in released)
