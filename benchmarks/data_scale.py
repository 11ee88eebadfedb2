"""Corpora of 10 MB, 100 MB and 1 GB: encode speed, memory, start-up time and training speed.

    python benchmarks/data_scale.py                      # 10 MB, 100 MB, 1 GB (needs ~3 GB of free disk)
    python benchmarks/data_scale.py --sizes 10,100       # sizes in MB
    python benchmarks/data_scale.py --json out.json

Each corpus is the shipped Shakespeare text repeated (each copy numbered, so no two are identical) in a
temporary folder. Every measurement runs in a fresh Python process, so its peak memory (VmHWM, the
high-water mark of resident memory, which includes the pages of the memory-mapped ids it touched) is its
own (and its anonymous part, RssAnon sampled every 5 ms: memory the process itself allocated, without the
pages of mapped files, which the OS can drop and re-read at any time):

* encode    -- ``load_corpus`` on a cold cache: MB/s of the text, peak RSS.
* start     -- process start to the end of the first training step, with a cold cache (encode included)
               and with a warm one (the cache entry found by the file's stat: no text is read).
* train     -- a 2 x 256 LSTM, batch 64 x 128, 20 steps plus one validation of the default
               --eval_tokens budget: steps/s (without the validation) and peak RSS.

Targets (on the project's 2-core machine): encode >= 50 MB/s; warm start to the first step <= 2 s at 1 GB;
peak RSS while training <= 400 MB at 1 GB, independent of the corpus size beyond the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

WORKER = r"""
import json, sys, threading, time
start = float(sys.argv[1]); job = sys.argv[2]; path = sys.argv[3]; cache = sys.argv[4]
anon = [0]
def sample_anon():                          # RssAnon: the process's own memory, without mapped file pages
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                anon[0] = max(anon[0], int(line.split()[1]) / 1024)
        time.sleep(0.005)
threading.Thread(target=sample_anon, daemon=True).start()
from rnnlab.data.corpus import load_corpus
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
out = {}
if job == "encode":
    t = time.perf_counter(); corpus = load_corpus(path, cache_dir=cache); out["encode_s"] = time.perf_counter() - t
    out["chars"] = len(corpus)
else:
    config = TrainConfig(dataset=path, cache_dir=cache, cell="lstm", num_layers=2, hidden_size=256,
                         batch_size=64, seq_length=128, iterations=21, sample_every=10**9, eval_every=10**9,
                         clip_value=None, clip_norm=5.0)
    trainer = Trainer(config)
    trainer.advance()
    out["first_step_s"] = time.time() - start
    if job == "train":
        t = time.perf_counter()
        for _ in range(20):
            trainer.advance()
        out["steps_per_s"] = 20 / (time.perf_counter() - t)
        t = time.perf_counter(); trainer.validation_loss(); out["validation_s"] = time.perf_counter() - t
        out["val_tokens"] = trainer.data.val_tokens
out["peak_rss_mb"] = peak_rss_mb()
out["peak_anon_mb"] = anon[0]
print(json.dumps(out))
"""


def run_worker(job: str, path: Path, cache: Path) -> dict:
    start = time.time()
    result = subprocess.run([sys.executable, "-c", WORKER, str(start), job, str(path), str(cache)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"data_scale: the {job} worker failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def build_corpus(path: Path, megabytes: int) -> int:
    """The shipped Shakespeare, copies numbered, until ``megabytes`` MB; returns the size in bytes."""
    text = resources.files("rnnlab.corpora").joinpath("shakespeare.txt").read_text(encoding="utf-8")
    target, written, copy = megabytes * 2 ** 20, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            piece = f"\n\nCOPY {copy}\n\n{text}"[:target - written]
            f.write(piece)
            written += len(piece.encode("utf-8"))
            copy += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1024", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-data-scale-") as tmp:
        for megabytes in (int(x) for x in args.sizes.split(",")):
            path = Path(tmp) / f"corpus-{megabytes}mb.txt"
            size = build_corpus(path, megabytes)
            os.sync()
            cache = Path(tmp) / f"cache-{megabytes}"
            encode = run_worker("encode", path, cache)                      # cold: encodes and caches
            cold = run_worker("start", path, Path(tmp) / f"cold-{megabytes}")  # another cold cache
            warm = run_worker("start", path, cache)                         # warm: the first worker's cache
            train = run_worker("train", path, cache)
            row = {"mb": size / 2 ** 20, "encode_mb_per_s": size / 2 ** 20 / encode["encode_s"],
                   "encode_peak_rss_mb": encode["peak_rss_mb"], "cold_start_s": cold["first_step_s"],
                   "warm_start_s": warm["first_step_s"], "train_steps_per_s": train["steps_per_s"],
                   "train_peak_rss_mb": train["peak_rss_mb"], "train_peak_anon_mb": train["peak_anon_mb"],
                   "encode_peak_anon_mb": encode["peak_anon_mb"], "validation_s": train["validation_s"],
                   "val_tokens": train["val_tokens"]}
            rows.append(row)
            print(f"{row['mb']:7.0f} MB: encode {row['encode_mb_per_s']:6.1f} MB/s "
                  f"(peak {row['encode_peak_rss_mb']:.0f} MB), "
                  f"start cold {row['cold_start_s']:.2f} s / warm {row['warm_start_s']:.2f} s, "
                  f"train {row['train_steps_per_s']:.2f} steps/s (peak {row['train_peak_rss_mb']:.0f} MB), "
                  f"validation {row['validation_s']:.1f} s on {row['val_tokens']:,} chars", file=sys.stderr, flush=True)
            for p in (path, *Path(tmp).glob(f"cold-{megabytes}/*")):
                p.unlink(missing_ok=True)
    print("| corpus | encode MB/s | encode peak RSS (anonymous) | cold start → 1st step | warm start → 1st step | "
          "train steps/s | train peak RSS (anonymous) | validation (chars) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mb']:,.0f} MB | {r['encode_mb_per_s']:.0f} | {r['encode_peak_rss_mb']:.0f} MB "
              f"({r['encode_peak_anon_mb']:.0f}) | {r['cold_start_s']:.1f} s | {r['warm_start_s']:.2f} s | "
              f"{r['train_steps_per_s']:.2f} | {r['train_peak_rss_mb']:.0f} MB ({r['train_peak_anon_mb']:.0f}) | "
              f"{r['validation_s']:.1f} s ({r['val_tokens']:,}) |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
