"""Train and export the pretrained models shipped in src/rnnlab/pretrained/.

    python scripts/train_pretrained.py                     # all three (15-30 minutes each on a 2-core CPU)
    python scripts/train_pretrained.py --only shakespeare-gru --runs runs/pretrained

Each model is trained by the `rnnlab train` command in :data:`RECIPES` (its best checkpoint by validation
loss is kept), then written by `rnnlab export` as float16 weights without optimizer state (a few MB), with
its validation loss measured on the whole held-out split *with those float16 weights*, into a staging folder
that this script copies into the package (rnnlab's output guard never writes inside its own package). The exact commands
are printed, and recorded in src/rnnlab/corpora/SOURCES.md. Training is deterministic for a given seed, BLAS
build and thread count; a different machine reproduces the losses to about 0.01 nats, not bit for bit.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

COMMON = ["--dataset", "shakespeare", "--num_layers", "2", "--hidden_size", "256", "--batch_size", "32",
          "--seq_length", "64", "--optimizer", "adam", "--lr_schedule", "cosine", "--clip_value", "none",
          "--clip_norm", "5", "--eval_every", "500", "--sample_every", "1000", "--seed", "0"]
RECIPES = {
    # issue 25's best 2 x 256 recipe: weight drop, output dropout and the weights' average on top of dropout 0.25,
    # 10,000 steps (28.6 minutes of training on the 2-core machine); validated every 1,000 steps as it was run
    "shakespeare-lstm": (["--cell", "lstm", "--learning_rate", "0.003", "--dropout", "0.25", "--weight_drop", "0.2",
                          "--dropout_output", "0.1", "--ema_decay", "0.999", "--iterations", "10000", *COMMON,
                          "--eval_every", "1000", "--threads", "1"], "2-layer LSTM-256 on the shipped Shakespeare"),
    "shakespeare-gru": (["--cell", "gru", "--learning_rate", "0.003", "--dropout", "0.25", "--iterations", "9000",
                         *COMMON], "2-layer GRU-256 on the shipped Shakespeare"),
    # a later flag replaces COMMON's (--num_layers, --eval_every); --threads 1 is the thread count it was trained with
    "shakespeare-mingru": (["--cell", "mingru", "--block", "residual", "--ffn_mult", "2", "--learning_rate", "0.003",
                            "--dropout", "0.1", "--iterations", "4000", *COMMON, "--num_layers", "3", "--threads", "1"],
                           "3-layer minGRU-256 in the residual block on the shipped Shakespeare"),
}
PRETRAINED = Path(__file__).resolve().parent.parent / "src" / "rnnlab" / "pretrained"


def run(command: list[str]) -> None:
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES), default=None, help="train just this model")
    parser.add_argument("--runs", default="runs/pretrained", help="where the training runs' checkpoints go")
    args = parser.parse_args()
    for name, (flags, description) in RECIPES.items():
        if args.only not in (None, name):
            continue
        run_dir = Path(args.runs) / name
        run(["rnnlab", "train", *flags, "--checkpoint_dir", str(run_dir), "--metrics_file",
             str(run_dir / "metrics.jsonl"), "--quiet", "--overwrite"])
        staged = Path(args.runs) / f"{name}-export"          # rnnlab never writes into its own package:
        run(["rnnlab", "export", "--checkpoint", str(run_dir / "best.json"), "--out", str(staged),
             "--dtype", "float16", "--description", description, "--overwrite"])
        shutil.rmtree(PRETRAINED / name, ignore_errors=True)   # the maintainer copies the export there
        shutil.copytree(staged, PRETRAINED / name, ignore=shutil.ignore_patterns(".*"))


if __name__ == "__main__":
    sys.exit(main())
