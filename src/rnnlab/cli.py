"""The ``rnnlab`` command line: parse, call the library, print. No training logic lives here.

Every user error ends as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .cells import CELLS
from .engines import ENGINES
from .errors import RnnlabError
from .losses import bits_per_char, perplexity
from .optim import OPTIMIZERS
from .text import DATA_MODES, SHIPPED_DATASETS
from .train import DTYPES, Progress, Report, TrainConfig, Trainer


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong + where to look), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_flag(parser, name: str, **kwargs) -> None:
    """``--name_with_underscores`` plus its ``--dash-spelling`` alias."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*spellings, dest=name, **kwargs)


def optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "0") else float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    train = sub.add_parser("train", help="train a character model and print samples",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    add_flag(train, "dataset", default=d.dataset,
             help=f"a shipped corpus ({', '.join(SHIPPED_DATASETS)}) or the path of a UTF-8 text file")
    add_flag(train, "data_mode", default=d.data_mode, choices=DATA_MODES,
             help="lines: one example per line; stream: continuous text; auto: guess from the text")
    add_flag(train, "cell", default=d.cell, choices=sorted(CELLS), help="recurrent cell type")
    add_flag(train, "hidden_size", type=int, default=d.hidden_size, help="units per recurrent layer")
    add_flag(train, "num_layers", type=int, default=d.num_layers, help="stacked recurrent layers")
    add_flag(train, "dropout", type=float, default=d.dropout, help="between stacked layers, training only")
    add_flag(train, "iterations", type=int, default=d.iterations, help="optimisation steps")
    add_flag(train, "epochs", type=int, default=d.epochs, help="passes over the training data (overrides --iterations)")
    add_flag(train, "batch_size", type=int, default=d.batch_size,
             help="examples per step (lines: padded names; stream: parallel streams of the text)")
    add_flag(train, "seq_length", type=int, default=d.seq_length, help="truncated-BPTT window for stream corpora")
    add_flag(train, "deterministic", action="store_true", help="fixed example order (no reshuffling); fixed --seed")
    add_flag(train, "engine", default=d.engine, choices=list(ENGINES),
             help="numpy (from scratch) or the same model in PyTorch / Keras (needs the [torch] / [tf] extra)")
    add_flag(train, "optimizer", default=d.optimizer, choices=list(OPTIMIZERS), help="update rule (docs in optim.py)")
    add_flag(train, "learning_rate", type=float, default=d.learning_rate,
             help="default: the optimizer's own (sgd 0.1, momentum 0.05, rms 0.005, adam 0.005, adagrad 0.1)")
    add_flag(train, "clip_value", type=optional_float, default=d.clip_value,
             help="clip each gradient entry to [-v, v]; 'none' turns it off")
    add_flag(train, "clip_norm", type=optional_float, default=d.clip_norm, help="clip the global gradient norm")
    add_flag(train, "val_fraction", type=float, default=d.val_fraction,
             help="held-out share (lines: by line; stream: the end of the text); default 0.1 where it fits")
    add_flag(train, "eval_every", type=int, default=d.eval_every,
             help="validation every N steps (default: with every report, --sample_every)")
    add_flag(train, "temperature", type=float, default=d.temperature, help="sampling temperature (> 0)")
    add_flag(train, "sample_every", type=int, default=d.sample_every, help="report and sample every N steps")
    add_flag(train, "num_samples", type=int, default=d.num_samples, help="names per report (lines corpora)")
    add_flag(train, "sample_length", type=int, default=d.sample_length,
             help="characters per sample (stream corpora)")
    add_flag(train, "seed", type=int, default=d.seed, help="seeds initialisation, data order, dropout, sampling")
    add_flag(train, "dtype", default=d.dtype, choices=list(DTYPES), help="float type of parameters and compute")
    add_flag(train, "metrics_file", default=None, help="append one JSON object per report to this file")
    add_flag(train, "quiet", action="store_true", help="no progress bar; print only the final report")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})


class MetricsFile:
    """Appends one JSON object per line; each line is written and flushed whole."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        if self.path is not None and not self.path.parent.is_dir():
            raise RnnlabError(f"--metrics_file {path}: directory {self.path.parent} does not exist; create it first")
        if self.path is not None:
            try:
                self.path.open("a").close()  # fail now, not after an hour of training
            except OSError as err:
                raise RnnlabError(f"--metrics_file {path} cannot be written ({err.strerror}); "
                                  "give the path of a writable file") from None

    def write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def format_report(report: Report) -> str:
    line = (f"step {report.step:>7,}  epoch {report.epoch:>3}  loss {report.train_loss:.4f}  "
            f"smooth {report.smooth_loss:.4f}")
    if report.val_loss is not None:
        line += f"  val {report.val_loss:.4f} nats/char ({report.val_bpc:.3f} bpc, ppl {report.val_ppl:.2f})"
    line += f"  {report.tokens_per_s:,.0f} tok/s  {report.elapsed_s:.1f}s"
    return "\n".join([line, *("    " + s.replace("\n", "\n    ") for s in report.samples)])


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class ProgressBar:
    """A one-line bar on stderr (only on a terminal): step, loss, tokens/s, ETA. Redrawn at most 5x/s."""

    def __init__(self, enabled: bool, stream=sys.stderr):
        self.stream, self.enabled, self.last_draw = stream, enabled and stream.isatty(), 0.0

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last_draw < 0.2 and p.step < p.total):
            return
        self.last_draw = now
        done = p.step / p.total
        eta = p.elapsed_s / done * (1 - done) if done else 0.0
        bar = "#" * int(24 * done)
        self.stream.write(f"\r[{bar:<24}] {p.step:,}/{p.total:,}  loss {p.loss:.3f}  "
                          f"{p.tokens_per_s:,.0f} tok/s  ETA {format_duration(eta)} ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    metrics = MetricsFile(args.metrics_file)
    bar = ProgressBar(enabled=not args.quiet)

    def on_report(report: Report) -> None:
        metrics.write(report.metrics())
        if not args.quiet:
            bar.clear()
            print(format_report(report), flush=True)

    trainer = Trainer(config, on_report, bar.update)
    info = trainer.describe()
    m, o, corpus = info["model"], info["optimizer"], info["corpus"]
    for note in trainer.notes:
        print(f"rnnlab: note: {note}", file=sys.stderr)
    print(f"rnnlab: {m['cell']} {m['num_layers']}x{m['hidden_size']} on {corpus['name']} "
          f"({corpus['mode']}, {corpus['chars']:,} chars, vocabulary {m['vocab_size']}), "
          f"{o['name']} lr={o['lr']}, {info['total_steps']:,} steps of batch {config.batch_size}", flush=True)
    final = trainer.run()
    bar.clear()
    if args.quiet:
        print(format_report(final))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": run_train}[args.command](args)
    except RnnlabError as err:
        print(f"rnnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
