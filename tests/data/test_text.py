"""text.py: the character tokenizer, line examples and the mode guess."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data.text import CharTokenizer, guess_mode, line_example
from rnnlab.errors import RnnlabError

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
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=1), st.one_of(st.none(), st.characters()))
def test_tokenizer_dict_round_trip_through_json_is_lossless(text, unk_token):
    """to_dict -> JSON -> from_dict gives an equal tokenizer (same chars, ids and unk token) for any text."""
    tok = CharTokenizer.fit(text, unk_token=unk_token)
    restored = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict(), ensure_ascii=False)))
    assert restored == tok
    assert restored.chars == tok.chars
    assert restored.encode(text).tolist() == tok.encode(text).tolist()


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
