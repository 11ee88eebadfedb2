"""text.py: the character tokenizer, loading a corpus, line examples and the train/validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.errors import RnnlabError
from rnnlab.text import NEWLINE, CharTokenizer, Corpus, guess_mode, line_example, load_corpus, split_corpus

UNICODE_TEXT = "héllo wörld, naïve café — 你好，世界 🦕🦖 ünïcødé\nßœ∂ 😀👍🏽\n"


# --- CharTokenizer -------------------------------------------------------------------------------------


def test_tokenizer_vocabulary_is_the_sorted_set_of_characters():
    """fit() builds the vocabulary from the sorted distinct characters, each with its position as id."""
    tok = CharTokenizer.fit("banana\n")
    assert tok.chars == ["\n", "a", "b", "n"]
    assert tok.vocab_size == 4
    assert tok.index == {"\n": 0, "a": 1, "b": 2, "n": 3}


def test_tokenizer_encode_gives_int64_ids_of_text_length():
    """encode() maps every character to its id: an int64 array of shape (len(text),)."""
    tok = CharTokenizer.fit("banana\n")
    ids = tok.encode("nab\n")
    assert ids.dtype == np.int64
    assert ids.shape == (4,)
    assert ids.tolist() == [3, 1, 2, 0]


def test_tokenizer_round_trips_unicode_text():
    """Accented letters, CJK and emoji (incl. a skin-tone modifier) each get an id and decode back unchanged."""
    tok = CharTokenizer.fit(UNICODE_TEXT)
    assert tok.decode(tok.encode(UNICODE_TEXT)) == UNICODE_TEXT
    for ch in "é你🦕👍🏽":
        assert ch in tok.index


@settings(max_examples=200, deadline=None, derandomize=True, database=None)  # same examples every run
@given(st.text())
def test_tokenizer_round_trips_arbitrary_text(text):
    """For any Unicode text, decode(encode(text)) == text and every id lies in [0, vocab_size)."""
    tok = CharTokenizer.fit(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.shape == (len(text),)
    assert ((0 <= ids) & (ids < tok.vocab_size)).all()


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=1), st.one_of(st.none(), st.characters()))
def test_tokenizer_dict_round_trip_through_json_is_lossless(text, unk_token):
    """to_dict -> JSON -> from_dict gives an equal tokenizer (same chars, ids and unk token) for any text."""
    tok = CharTokenizer.fit(text, unk_token=unk_token)
    restored = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict(), ensure_ascii=False)))
    assert restored == tok
    assert restored.chars == tok.chars
    assert restored.encode(text).tolist() == tok.encode(text).tolist()


def test_tokenizer_save_load_round_trip(tmp_path):
    """save() writes UTF-8 JSON that load() turns back into the same tokenizer, Unicode included."""
    tok = CharTokenizer.fit(UNICODE_TEXT)
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["chars"] == tok.chars
    loaded = CharTokenizer.load(path)
    assert loaded == tok
    assert loaded.decode(tok.encode(UNICODE_TEXT)) == UNICODE_TEXT


def test_tokenizer_save_load_keeps_unk_token(tmp_path):
    """The unk token survives a save/load round trip and still catches unknown characters."""
    tok = CharTokenizer.fit("abc", unk_token="?")
    tok.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.unk_token == "?"
    assert loaded.encode("aZ").tolist() == tok.encode("aZ").tolist()


@pytest.mark.parametrize("unknown", ["Z", "é", "🦖", "你"])
def test_encode_unknown_character_raises_naming_it(unknown):
    """A character outside the vocabulary raises RnnlabError whose message names that character."""
    tok = CharTokenizer.fit("abc\n")
    with pytest.raises(RnnlabError) as excinfo:
        tok.encode("ab" + unknown + "c")
    assert repr(unknown) in str(excinfo.value)
    assert "unk_token" in str(excinfo.value)  # the message also says how to avoid the error


def test_encode_unknown_characters_are_all_reported():
    """Several unknown characters are all named (not only the first one)."""
    tok = CharTokenizer.fit("abc")
    with pytest.raises(RnnlabError, match="2 character") as excinfo:
        tok.encode("aXbY")
    assert "'X'" in str(excinfo.value) and "'Y'" in str(excinfo.value)


def test_unk_token_maps_unknown_characters_to_the_unk_id():
    """With unk_token set, unknown characters encode to the unk id instead of raising; known ones keep theirs."""
    tok = CharTokenizer.fit("abc", unk_token="?")
    unk = tok.index["?"]
    ids = tok.encode("aZb🦖c")
    assert ids.tolist() == [tok.index["a"], unk, tok.index["b"], unk, tok.index["c"]]
    assert tok.decode(ids) == "a?b?c"


def test_unk_token_already_in_text_is_not_duplicated():
    """An unk token that also occurs in the text stays a single vocabulary entry."""
    tok = CharTokenizer.fit("ab?", unk_token="?")
    assert tok.chars.count("?") == 1
    assert tok.vocab_size == 3


def test_tokenizer_rejects_duplicate_characters():
    """A hand-built vocabulary with a repeated character is refused (ids would be ambiguous)."""
    with pytest.raises(RnnlabError, match="duplicate"):
        CharTokenizer(["a", "b", "a"])


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


def test_load_corpus_directory_raises(tmp_path):
    """A directory raises RnnlabError saying it is a directory and a text file is needed."""
    with pytest.raises(RnnlabError, match="is a directory"):
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


# --- guess_mode ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, mode", [
    ("rex\nanna\nbob\n", "lines"),                      # a list of short lines
    ("rex\nanna", "lines"),                             # no trailing newline
    ("\n\nrex\nanna\n\n", "lines"),                     # leading/trailing newlines are ignored
    ("just one line", "stream"),                        # a single line is not a list
    ("para one\n\npara two\n", "stream"),               # a blank line inside means prose
    ("rex\n   \nanna\n", "stream"),                     # a whitespace-only line counts as blank
    ("short\n" + "x" * 101 + "\n", "stream"),           # a line over 100 chars is prose
    ("short\n" + "x" * 100 + "\n", "lines"),            # exactly 100 chars is still a name-like line
])
def test_guess_mode_tells_lists_from_prose(text, mode):
    """guess_mode says 'lines' for a list of short non-blank lines and 'stream' otherwise."""
    assert guess_mode(text) == mode


def test_load_corpus_auto_mode_uses_guess(tmp_path):
    """A prose file loads as a stream corpus when the mode is auto, and as lines when asked."""
    path = tmp_path / "prose.txt"
    path.write_text("First paragraph here.\n\nSecond one.\n", encoding="utf-8")
    assert load_corpus(str(path)).mode == "stream"
    assert load_corpus(str(path), mode="lines").mode == "lines"


# --- line_example --------------------------------------------------------------------------------------


def test_line_example_inputs_start_with_newline_and_targets_end_with_it():
    """'rex' -> inputs '\\nrex', targets 'rex\\n': the newline is both the start and the end symbol."""
    tok = CharTokenizer.fit("rex\nanna\n")
    inputs, targets = line_example(tok, "rex")
    assert tok.decode(inputs) == "\nrex"
    assert tok.decode(targets) == "rex\n"


def test_line_example_targets_are_inputs_shifted_by_one():
    """targets[t] is the character after inputs[t]: inputs[1:] == targets[:-1], equal lengths."""
    tok = CharTokenizer.fit(UNICODE_TEXT)
    inputs, targets = line_example(tok, "café 🦕")
    assert inputs.shape == targets.shape == (len("café 🦕") + 1,)
    np.testing.assert_array_equal(inputs[1:], targets[:-1])


# --- split_corpus --------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line for line in text.split(NEWLINE) if line]


def test_split_lines_corpus_is_by_whole_lines_and_covers_every_line():
    """Each line goes whole to train or validation; together they are exactly the original lines."""
    corpus = load_corpus("dinos")
    train, val = split_corpus(corpus, 0.1)
    train_lines, val_lines = _lines(train), _lines(val)
    assert sorted(train_lines + val_lines) == sorted(corpus.examples())
    assert not set(train_lines) & set(val_lines)  # dino names are unique, so no line is in both
    assert train.endswith(NEWLINE) and val.endswith(NEWLINE)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.25, 0.5])
def test_split_lines_corpus_respects_val_fraction(fraction):
    """The validation set has round(n * fraction) lines."""
    corpus = load_corpus("dinos")
    n = len(corpus.examples())
    train, val = split_corpus(corpus, fraction)
    assert len(_lines(val)) == round(n * fraction)
    assert len(_lines(train)) == n - round(n * fraction)


def test_split_lines_corpus_is_deterministic_and_ignores_global_rng():
    """The split is the same on every call, whatever the global NumPy RNG state (it seeds its own Generator)."""
    corpus = load_corpus("dinos")
    np.random.seed(1)
    first = split_corpus(corpus, 0.1)
    np.random.seed(12345)
    np.random.random(1000)
    second = split_corpus(corpus, 0.1)
    assert first == second


def test_split_lines_corpus_shuffles_before_holding_out():
    """A sorted name list does not send only its tail (the 'z' names) to validation."""
    corpus = load_corpus("dinos")
    _, val = split_corpus(corpus, 0.1)
    first_letters = {name[0] for name in _lines(val)}
    assert len(first_letters) > 10


def test_split_lines_corpus_keeps_train_order():
    """Within each part the lines keep their original relative order."""
    corpus = Corpus("letters", "".join(f"{c}\n" for c in "abcdefghijklmnopqrst"), "lines")
    train, val = split_corpus(corpus, 0.3)
    assert _lines(train) == sorted(_lines(train))
    assert _lines(val) == sorted(_lines(val))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
def test_split_stream_corpus_is_contiguous(fraction):
    """A stream corpus splits at one cut: train is the head, validation the tail, of round(n * fraction) chars."""
    corpus = Corpus("prose", "".join(chr(ord("a") + i % 26) for i in range(1000)), "stream")
    train, val = split_corpus(corpus, fraction)
    assert train + val == corpus.text
    assert len(val) == round(1000 * fraction)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_val_fraction_outside_unit_interval(fraction):
    """val_fraction must lie in [0, 1); anything else raises RnnlabError naming the flag."""
    with pytest.raises(RnnlabError, match="val_fraction"):
        split_corpus(load_corpus("dinos"), fraction)
