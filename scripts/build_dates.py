"""Build the shipped ``dates`` pairs: human-readable dates -> ISO 8601 (``YYYY-MM-DD``). Standard library only.

    python scripts/build_dates.py            # writes src/rnnlab/corpora/dates.{train,valid,test}.txt
    python scripts/build_dates.py --check    # rebuilds in memory and fails if the shipped files differ

Every line is ``source<TAB>target``, e.g. ``saturday 9 may 2018<TAB>2018-05-09``. The dates run from
1950-01-01 to 2049-12-31, so a two-digit year is unambiguous: 50-99 are 19xx, 00-49 are 20xx. Formats:

* words: the day as a number (``9``, ``09``) or an ordinal (``9th``, ``3rd of``, ``the 3rd of``), the month as
  a name or an abbreviation (``sep``, ``sept``, ``sep.``), day-month-year or month-day-year, an optional
  comma, a four- or two-digit year, an optional weekday in front (full or abbreviated, optional comma), and
  every word in lower case, Title Case or UPPER CASE;
* numbers, one unambiguous convention each: day/month/year with ``/`` or ``.`` (``9/5/18``, ``09.05.2018``)
  and year-month-day with ``-`` and a four-digit year (``2018-05-09``, ``2018-5-9``).

The splits hold different *dates*, not only different strings: every calendar date of the range is assigned
to one split by a seeded shuffle (80 / 10 / 10 %), so no source string -- and no date in any format -- of the
validation or test split occurs in training. A fixed seed (``random.Random(SEED)``) makes the files the
same on every run and every Python 3 version.
"""

from __future__ import annotations

import argparse
import datetime
import random
import sys
from pathlib import Path

SEED = 2018
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
SIZES = {"train": 30_000, "valid": 2_000, "test": 2_000}
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "rnnlab" / "corpora"

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def ordinal(day: int) -> str:
    """1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 22nd 23rd ... 31st."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def month_word(month: int, rng: random.Random) -> str:
    name = MONTHS[month - 1]
    return rng.choice([name, name, name[:3], name[:3] + ".", "sept" if month == 9 else name[:3]])


def year_text(year: int, rng: random.Random) -> str:
    return str(year) if rng.random() < 0.6 else f"{year % 100:02d}"


def title(text: str) -> str:
    """'9th of may' -> '9th Of May' (str.title would write '9Th')."""
    return " ".join(word[:1].upper() + word[1:] for word in text.split(" "))


def in_case(text: str, rng: random.Random) -> str:
    """Every word in lower case, Title Case or UPPER CASE (digits are unaffected)."""
    return rng.choice([str.lower, str.lower, title, str.upper])(text)


def words(date: datetime.date, rng: random.Random) -> str:
    """'saturday 9 may 2018', 'May 9th, 18', 'the 3rd of march 1999', 'SAT, 09 MAY 2018' ..."""
    month, year = month_word(date.month, rng), year_text(date.year, rng)
    day = rng.choice([str(date.day), str(date.day), f"{date.day:02d}", ordinal(date.day)])
    comma = rng.choice(["", ","])
    layout = rng.randrange(4)
    if layout == 0:
        text = f"{day} {month}{comma} {year}"
    elif layout == 1:
        text = f"{month} {day}{comma} {year}"
    else:                                                        # '3rd of march 1999', 'the 3rd of march, 99'
        text = f"{'the ' if layout == 3 else ''}{ordinal(date.day)} of {month}{comma} {year}"
    return text


def numbers(date: datetime.date, rng: random.Random) -> str:
    """'9/5/18', '09.05.2018' (day/month/year) or '2018-05-09', '2018-5-9' (year-month-day)."""
    if rng.random() < 0.3:
        return (f"{date.year}-{date.month:02d}-{date.day:02d}" if rng.random() < 0.6
                else f"{date.year}-{date.month}-{date.day}")
    padded = rng.random() < 0.5
    day, month = (f"{date.day:02d}", f"{date.month:02d}") if padded else (str(date.day), str(date.month))
    return rng.choice("/.").join([day, month, year_text(date.year, rng)])


def human(date: datetime.date, rng: random.Random) -> str:
    """One human-readable form of ``date``: words or numbers, with an optional weekday in front."""
    text = words(date, rng) if rng.random() < 0.7 else numbers(date, rng)
    if rng.random() < 0.3:
        weekday = WEEKDAYS[date.weekday()]
        text = f"{rng.choice([weekday, weekday[:3]])}{rng.choice(['', ','])} {text}"
    return in_case(text, rng)


def split_dates(rng: random.Random) -> dict[str, list[datetime.date]]:
    """Every date of FIRST..LAST in exactly one split."""
    days = [FIRST + datetime.timedelta(n) for n in range((LAST - FIRST).days + 1)]
    rng.shuffle(days)
    n_train, n_valid = int(len(days) * SPLIT_FRACTIONS["train"]), int(len(days) * SPLIT_FRACTIONS["valid"])
    return {"train": days[:n_train], "valid": days[n_train:n_train + n_valid], "test": days[n_train + n_valid:]}


def build() -> dict[str, str]:
    """split name -> file text."""
    rng = random.Random(SEED)
    texts = {}
    for split, dates in split_dates(rng).items():
        seen, lines = set(), []
        while len(lines) < SIZES[split]:
            date = rng.choice(dates)
            source = human(date, rng)
            if source not in seen:                               # each source string once per split
                seen.add(source)
                lines.append(f"{source}\t{date.isoformat()}\n")
        texts[split] = "".join(lines)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    args = parser.parse_args()
    texts = build()
    differ = []
    for split, text in texts.items():
        path = OUT_DIR / f"dates.{split}.txt"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if differ:
        print(f"differ from a rebuild: {', '.join(differ)}", file=sys.stderr)
        return 1
    print("identical to a rebuild" if args.check else f"wrote {', '.join(f'dates.{s}.txt' for s in texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
