"""What the cache's checks cost (issue 21, docs/reliability.md section 7): a warm start that trusts nothing it
cannot prove, and a resume that hashes the whole text again.

    python benchmarks/cache_checks.py                  # 1 GB (needs ~2 GB of free disk)
    python benchmarks/cache_checks.py --mb 100 --json out.json

The corpus is the shipped Shakespeare text repeated (each copy numbered) in a temporary folder. Each
measurement runs in a fresh Python process (nothing of the previous one in memory; the file and the cache
stay in the OS's page cache, as on a real machine's second run):

* cold     -- load_corpus with an empty cache: two passes over the text, the ids written
* warm     -- load_corpus again: the stat entry matches, then the entry is checked against itself (sorted
              characters, counts, one chunked pass over the ids) and against the files (the 8 KiB sample)
* resume   -- load_corpus(verify=True), as --resume does: the warm path plus one SHA-256 pass over the text
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

WORKER = r"""
import sys, time
from rnnlab.data.corpus import load_corpus
start = time.perf_counter()
corpus = load_corpus(sys.argv[1], cache_dir=sys.argv[2], verify=sys.argv[3] == "verify")
print(time.perf_counter() - start, len(corpus))
"""


def make_corpus(path: Path, megabytes: int) -> None:
    text = resources.files("rnnlab.corpora").joinpath("shakespeare.txt").read_text(encoding="utf-8")
    with open(path, "w", encoding="utf-8") as f:
        copy = 0
        while f.tell() < megabytes * 2 ** 20:
            f.write(f"COPY {copy}\n{text}\n")
            copy += 1


def timed(path: Path, cache: Path, mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", WORKER, str(path), str(cache), mode], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="corpus size in MB")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, cache = Path(folder) / "corpus.txt", Path(folder) / "cache"
        make_corpus(path, args.mb)
        size = os.path.getsize(path)
        row = {"mb": round(size / 2 ** 20), "load": os.getloadavg()[0]}
        row["cold_s"] = timed(path, cache, "cold")
        row["warm_s"] = min(timed(path, cache, "warm") for _ in range(3))
        row["resume_s"] = min(timed(path, cache, "verify") for _ in range(3))
        row["load_after"] = os.getloadavg()[0]
    print(f"{row['mb']:,} MB (load {row['load']:.1f} -> {row['load_after']:.1f}): cold {row['cold_s']:.1f} s, "
          f"warm {row['warm_s']:.2f} s, resume (warm + SHA-256 of the text) {row['resume_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
