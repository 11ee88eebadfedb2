"""The pairs data mode (rnnlab.data.pairs) and the shipped dates: reading, one-line errors naming the line, splits,
tokenizers, padded batches; every shipped date pair checked by an independent parser."""

import datetime
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnlab.data.pairs import (
    PairBatches,
    PairTokenizers,
    collate_pairs,
    load_pairs,
    pair_eval_batches,
    parse_pairs,
    read_pairs,
    split_pairs,
)
from rnnlab.errors import RnnlabError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,message", [
    ("a\t1\nno tab here\n", "line 2: expected SOURCE<TAB>TARGET, found no tab"),
    ("a\t1\tx\n", "line 1: expected SOURCE<TAB>TARGET, found 2 tabs"),
    ("\n\n\t1\n", "line 3: the source and the target must both be non-empty"),
    ("a\t\n", "line 1: the source and the target"),
    ("\n \n", "has no SOURCE<TAB>TARGET lines"),
])
def test_malformed_pairs_are_one_line_errors_naming_the_line(text, message):
    with pytest.raises(RnnlabError, match=re.escape(message)) as err:
        parse_pairs(text, "my.txt")
    assert "\n" not in str(err.value) and str(err.value).startswith("my.txt")


def test_reading_a_file_bom_crlf_blank_lines_and_bad_utf8(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffé a\t1\r\n\r\nb\t2\n".encode("utf-8"))
    assert read_pairs(path) == [("é a", "1"), ("b", "2")]
    path.write_bytes(b"a\t1\nb\t2\nc\xff\t3\n")
    with pytest.raises(RnnlabError, match="line 3 is not valid UTF-8"):
        read_pairs(path)
    with pytest.raises(RnnlabError, match="not found"):
        read_pairs(tmp_path / "missing.txt")


def test_a_single_file_is_split_deterministically_by_source(tmp_path):
    pairs = [(f"s{i % 40}", str(i)) for i in range(100)]           # every source occurs 2-3 times
    train, valid, test = split_pairs(pairs, 0.2, 0.1)
    assert (train, valid, test) == split_pairs(pairs, 0.2, 0.1)
    sources = [{s for s, _ in part} for part in (train, valid, test)]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert (len(sources[1]), len(sources[2])) == (8, 4) and len(train) + len(valid) + len(test) == 100
    path = tmp_path / "p.txt"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    data = load_pairs(str(path), val_fraction=0.2)
    assert data.name == "p.txt" and len(data.train) + len(data.valid) == 100 and data.test == []


def test_a_directory_of_split_files(tmp_path):
    (tmp_path / "train.txt").write_text("a\t1\nb\t2\n")
    (tmp_path / "valid.txt").write_text("c\t3\n")
    data = load_pairs(str(tmp_path))
    assert (data.train, data.valid, data.test) == ([("a", "1"), ("b", "2")], [("c", "3")], [])
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(RnnlabError, match="needs train.txt and valid.txt"):
        load_pairs(str(tmp_path))
    with pytest.raises(RnnlabError, match="not found: give one of dates"):
        load_pairs(str(tmp_path / "nothing.txt"))


def test_tokenizers_start_and_end_with_the_newline_and_round_trip():
    tok = PairTokenizers.fit([("9 may 18", "2018-05-09"), ("1/2/03", "2003-02-01")])
    dec_in, targets = tok.encode_target("2018")
    assert tok.target.decode(dec_in) == "\n2018" and tok.target.decode(targets) == "2018\n"
    assert tok.target.chars[tok.end_id] == "\n" and "\n" not in tok.source.chars
    assert PairTokenizers.from_dict(tok.to_dict()) == tok


def test_batches_are_time_first_padded_and_masked_and_resume():
    tok = PairTokenizers.fit([("abc", "12"), ("a", "1"), ("bb", "221")])
    examples = [tok.encode_pair(p) for p in [("abc", "12"), ("a", "1"), ("bb", "221")]]
    batch = collate_pairs(examples)
    assert batch.source.shape == batch.source_mask.shape == (3, 3)
    assert batch.dec_in.shape == batch.targets.shape == batch.target_mask.shape == (4, 3)
    np.testing.assert_array_equal(batch.source_mask.sum(axis=0), [3, 1, 2])
    np.testing.assert_array_equal(batch.target_mask.sum(axis=0), [3, 2, 4])
    assert batch.n_tokens == 9 and batch.ids is batch.source and batch.reset_state
    np.testing.assert_array_equal(batch.dec_in[1:, 2], batch.targets[:-1, 2])  # the targets, shifted

    batches = PairBatches(examples, 2, np.random.default_rng(0))
    next(batches)
    saved = batches.state_dict()
    expected = [next(batches).source.tolist() for _ in range(3)]
    again = PairBatches(examples, 2, np.random.default_rng(5))
    again.load_state_dict(saved)
    assert [next(again).source.tolist() for _ in range(3)] == expected
    assert [b.n_tokens for b in pair_eval_batches(examples, 2)] == [5, 4]


# ---- the shipped dates ---------------------------------------------------------------------------------

FULL_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
               "november", "december"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
ORDINAL = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")


def suffix_of(day):
    return "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def parse_date(source):
    """An independent reading of a shipped source (not the generator's code) -> datetime.date."""
    text, weekday = source.lower(), None
    first = text.split(" ")[0].rstrip(",")
    if any(first == w or first == w[:3] for w in WEEKDAYS):
        weekday = next(i for i, w in enumerate(WEEKDAYS) if first in (w, w[:3]))
        text = text.split(" ", 1)[1]
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        year, month, day = map(int, m.groups())
    elif m := re.fullmatch(r"(\d{1,2})([/.])(\d{1,2})\2(\d{2}|\d{4})", text):
        day, month, year = int(m[1]), int(m[3]), int(m[4])
    else:
        tokens = [t.rstrip(",.") for t in text.replace(" of ", " ").removeprefix("the ").split(" ")]
        assert len(tokens) == 3, source
        month_at = next(i for i, t in enumerate(tokens) if t[:3] in MONTHS)
        word = tokens[month_at]
        assert month_at in (0, 1) and (word in FULL_MONTHS or word in MONTHS or word == "sept"), source
        month = MONTHS.index(word[:3]) + 1
        day_text, year = tokens[1 - month_at], int(tokens[2])
        if m := ORDINAL.fullmatch(day_text):
            day = int(m[1])
            assert m[2] == suffix_of(day), source
        else:
            day = int(day_text)
    if year < 100:                                               # 50-99 -> 19xx, 00-49 -> 20xx
        year = 1900 + year if year >= 50 else 2000 + year
    date = datetime.date(year, month, day)
    assert weekday is None or weekday == date.weekday(), f"wrong weekday in {source!r}"
    return date


@pytest.fixture(scope="module")
def dates():
    return load_pairs("dates")


def test_every_shipped_date_pair_is_right(dates):
    for split in (dates.train, dates.valid, dates.test):
        for source, target in split:
            assert parse_date(source).isoformat() == target, source


def test_dates_splits_share_no_source_and_no_date(dates):
    assert (len(dates.train), len(dates.valid), len(dates.test)) == (30_000, 2_000, 2_000)
    parts = (dates.train, dates.valid, dates.test)
    for part in parts:
        assert len({s for s, _ in part}) == len(part)           # each source string once per split
    targets = [{t for _, t in part} for part in parts]
    assert not (targets[0] & targets[1] or targets[0] & targets[2] or targets[1] & targets[2])


def test_dates_cover_the_promised_formats(dates):
    sources = [s for s, _ in dates.train]
    patterns = {"weekday": r"^(mon|tue|wed|thu|fri|sat|sun)", "ordinal of": r"\d(st|nd|rd|th) of ",
                "slash": r"^\d{1,2}/\d{1,2}/\d+$", "dot": r"\d{1,2}\.\d{1,2}\.\d+$", "iso": r"\d{4}-\d{1,2}-\d{1,2}$",
                "two-digit year": r"[ ./]\d{2}$", "upper": r"[A-Z]{3}", "title": r"\b[A-Z][a-z]+",
                "abbreviation.": r"\b[a-z]{3}\. ", "sept": r"\bsept\b", "the": r"^the "}
    for name, pattern in patterns.items():
        assert sum(bool(re.search(pattern, s, re.I if name not in ("upper", "title") else 0))
                   for s in sources) > 100, name


def test_the_shipped_dates_are_what_the_script_builds():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dates.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
