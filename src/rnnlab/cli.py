"""The ``rnnlab`` command line: parse, call the library, print. No training logic lives here.

Every user error ends as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .cells import CELLS
from .checkpoint import load_checkpoint
from .engines import ENGINES
from .errors import RnnlabError, TrainingDiverged, require
from .files import atomic_write_bytes
from .initializers import INIT_SCHEMES
from .optim import LR_SCHEDULES, OPTIMIZERS
from .sampling import sample
from .text import DATA_MODES, SHIPPED_DATASETS, load_corpus
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
    add_flag(train, "init", default=d.init, choices=list(INIT_SCHEMES),
             help="initial weights: rnnlab (Glorot, orthogonal recurrent matrix, zero biases), pytorch "
                  "(U(+-1/sqrt(H)) everywhere), keras (rnnlab's + forget bias 1) or blockorth (rnnlab's old "
                  "scheme); see initializers.py")
    add_flag(train, "forget_bias", type=float, default=d.forget_bias,
             help="LSTM: start the forget-gate bias at this value (0 keeps half of the cell state per step, "
                  "1 keeps sigma(1) = 73%%); default: the --init scheme's own")
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
    add_flag(train, "optimizer_options", default=d.optimizer_options,
             help="KEY=VALUE,... hyper-parameters and conventions, e.g. 'mu=0.95,form=ema' (momentum), "
                  "'eps_hat=true' (Adam as Keras), 'eps_inside_sqrt=true' (RMSProp/Adagrad as Keras)")
    add_flag(train, "lr_schedule", default=d.lr_schedule, choices=list(LR_SCHEDULES),
             help="cosine: decay from --learning_rate to --min_learning_rate over the run")
    add_flag(train, "min_learning_rate", type=float, default=d.min_learning_rate,
             help="the cosine schedule's final rate (default: learning rate / 20)")
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
    add_flag(train, "checkpoint_dir", default=d.checkpoint_dir,
             help="save checkpoints here: latest.json (every --save_every steps, at the end, on Ctrl-C) "
                  "and best.json (best validation loss)")
    add_flag(train, "save_every", type=int, default=d.save_every, help="save the latest checkpoint every N steps")
    add_flag(train, "resume", default=None,
             help="continue a run exactly from a checkpoint (directory or .json); --iterations/--epochs "
                  "count the total")
    add_flag(train, "quiet", action="store_true", help="no progress bar; print only the final report")

    smp = sub.add_parser("sample", help="generate text from a checkpoint",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(smp, "checkpoint", required=True, help="a checkpoint directory or its .json file")
    add_flag(smp, "length", type=int, default=200, help="characters per sample (at most, for names)")
    add_flag(smp, "num_samples", type=int, default=None, help="samples to print (default: 10 names, 1 text)")
    add_flag(smp, "temperature", type=float, default=1.0, help="> 0; lower is more conservative")
    add_flag(smp, "top_k", type=int, default=None, help="sample only among the k most likely characters")
    add_flag(smp, "greedy", action="store_true", help="always take the most likely character")
    add_flag(smp, "prime", default="", help="text to start from (returned as the start of each sample)")
    add_flag(smp, "seed", type=int, default=0, help="seeds the sampling Generator")
    add_flag(smp, "novelty", action="store_true",
             help="(one-name-per-line corpora) report the share of samples not in the training text")

    plot = sub.add_parser("plot", help="draw train/validation loss curves from a --metrics_file",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    plot.add_argument("metrics", help="a JSONL file written by rnnlab train --metrics_file")
    add_flag(plot, "out", default="loss.png", help="the image to write (.png, .svg or .pdf)")
    add_flag(plot, "title", default=None, help="plot title (default: the metrics file name)")

    bench = sub.add_parser("bench", help="time one training step: NumPy vs PyTorch vs Keras, side by side",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(bench, "cells", default="rnn,lstm,gru", help="comma-separated cells")
    add_flag(bench, "shapes", default=None,
             help="comma-separated HIDDEN/BATCH/SEQ (default: 50/1/10,128/32/64,256/64/100,512/64/100)")
    add_flag(bench, "engines", default="numpy,torch,keras", help="those not installed are skipped")
    add_flag(bench, "quick", action="store_true", help="small shapes, fewer rounds: under a minute")
    add_flag(bench, "rounds", type=int, default=5, help="interleaved timing rounds per engine")
    add_flag(bench, "json", default=None, help="also write every row (and the GEMM peak) to this JSON file")

    vis = sub.add_parser("visualize", help="an HTML page: the text coloured by a hidden unit, the units that track "
                         "quotes, lines, brackets ..., and the next-character predictions",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(vis, "checkpoint", required=True, help="a checkpoint directory or its .json file")
    add_flag(vis, "text", required=True,
             help="a UTF-8 text file, or the text itself (a missing path ending in .txt or with '/' is an error)")
    add_flag(vis, "out", required=True, help="the HTML file to write (self-contained: works offline)")
    add_flag(vis, "max_chars", type=int, default=3000, help="visualise at most the first N characters")
    add_flag(vis, "layer", type=int, default=None, help="the layer shown first, 0 = bottom (default: the top layer)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})


class MetricsFile:
    """Appends one JSON object per line; each line is written and flushed whole. Its directory is created
    (like --checkpoint_dir), and a path that cannot be written fails before training starts."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
        self.stream.write(f"\r[{bar:<24}] {p.step:,}/{p.total:,}  loss {p.smooth_loss:.3f} (smoothed)  "
                          f"{p.tokens_per_s:,.0f} tok/s  ETA {format_duration(eta)} ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# Flags that fix the model's shape or the meaning of the saved data position: refused on --resume when
# they differ from the checkpoint. Every other flag (learning rate, iterations, reporting) may change.
LOCKED_ON_RESUME = ("dataset", "data_mode", "cell", "hidden_size", "num_layers", "batch_size", "seq_length",
                    "optimizer", "optimizer_options", "engine", "dtype", "val_fraction", "seed", "deterministic")


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str], command: str) -> set[str]:
    """The dests of the flags the user actually typed (so --resume knows what to override)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    typed = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    return {a.dest for a in sub._actions if typed & set(a.option_strings)}


def resume_config(args: argparse.Namespace, explicit: set[str], saved: dict) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's training config with the typed flags applied; shape changes refused."""
    config = TrainConfig(**saved)
    notes = []
    for name in sorted(explicit & TrainConfig.__dataclass_fields__.keys()):
        old, new = getattr(config, name), getattr(args, name)
        if old == new:
            continue
        if name in LOCKED_ON_RESUME:
            raise RnnlabError(f"--{name} {new} differs from the checkpoint's {old}: it cannot change on "
                              f"--resume (start a new run for a different {name})")
        setattr(config, name, new)
        notes.append(f"{name} changed from {'the default' if old is None else old} to {new}")
    return config, notes


def run_train(args: argparse.Namespace, explicit: set[str]) -> int:
    checkpoint, notes = None, []
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        config, notes = resume_config(args, explicit, checkpoint.meta["train"])
        if config.checkpoint_dir is None:
            config.checkpoint_dir = str(checkpoint.path.parent)
    else:
        config = config_from_args(args)
    metrics = MetricsFile(args.metrics_file)
    bar = ProgressBar(enabled=not args.quiet)

    def on_report(report: Report) -> None:
        metrics.write(report.metrics())
        if not args.quiet:
            bar.clear()
            print(format_report(report), flush=True)

    trainer = Trainer(config, on_report, bar.update)
    if checkpoint is not None:
        trainer.restore(checkpoint)
        notes.insert(0, f"resuming from {checkpoint.path} at step {trainer.step:,}")
    info = trainer.describe()
    m, o, corpus = info["model"], info["optimizer"], info["corpus"]
    for note in trainer.notes + notes:
        print(f"rnnlab: note: {note}", file=sys.stderr)
    print(f"rnnlab: {m['cell']} {m['num_layers']}x{m['hidden_size']} on {corpus['name']} "
          f"({corpus['mode']}, {corpus['chars']:,} chars, vocabulary {m['vocab_size']}), "
          f"{o['name']} lr={o['lr']}, {info['total_steps']:,} steps of batch {config.batch_size}", flush=True)

    def on_sigint(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        trainer.request_stop()

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        final = trainer.run()
    except TrainingDiverged as err:
        bar.clear()
        kept = trainer.saved.get("latest") or trainer.saved.get("best")
        where = f"; the last good checkpoint is {kept}" if kept else ""
        raise RnnlabError(f"{err}{where}") from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    bar.clear()
    if trainer.stop_requested:
        where = trainer.saved.get("latest")
        print(f"rnnlab: interrupted at step {trainer.step:,}; "
              + (f"checkpoint saved to {where} (continue with --resume {where.parent})" if where
                 else "nothing saved (no --checkpoint_dir)"), file=sys.stderr)
        return 0
    if args.quiet and final is not None:
        print(format_report(final))
    if "latest" in trainer.saved:
        print(f"rnnlab: checkpoint {trainer.saved['latest']}" +
              (f", best validation {trainer.saved['best']}" if "best" in trainer.saved else ""))
    return 0


def run_sample(args: argparse.Namespace, explicit: set[str]) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    names = checkpoint.meta["corpus"]["mode"] == "lines"
    n = args.num_samples if args.num_samples is not None else (10 if names else 1)
    require(n > 0, f"--num_samples must be > 0, got {n}")
    rng = np.random.default_rng(args.seed)
    texts = [sample(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, rng, length=args.length,
                    temperature=args.temperature, top_k=args.top_k, greedy=args.greedy, prime=args.prime,
                    stop_at_newline=names) for _ in range(n)]
    print("\n".join(texts) if names else "\n\n".join(texts))
    if args.novelty:
        require(names, "--novelty needs a one-name-per-line corpus (this checkpoint was trained on running text)")
        seen = set(load_corpus(checkpoint.meta["train"]["dataset"], checkpoint.meta["corpus"]["mode"]).examples())
        novel = sum(text not in seen for text in texts)
        print(f"novelty: {novel}/{n} samples ({novel / n:.0%}) are not in the training text")
    return 0


def run_plot(args: argparse.Namespace, explicit: set[str]) -> int:
    from .plot import plot_metrics

    path = plot_metrics(args.metrics, args.out, args.title)
    print(f"rnnlab: wrote {path}")
    return 0


def run_bench_command(args: argparse.Namespace, explicit: set[str]) -> int:
    from . import bench

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for cell in cells:
        require(cell in CELLS, f"unknown cell {cell!r} in --cells: use {', '.join(CELLS)}")
    if args.shapes:
        shapes = [bench.Shape.parse(s.strip()) for s in args.shapes.split(",") if s.strip()]
    else:
        shapes = [bench.Shape(*s) for s in (bench.QUICK_SHAPES if args.quick else bench.SHAPES)]
    require(args.rounds > 0, f"--rounds must be > 0, got {args.rounds}")
    rounds, round_s = (3, 0.2) if args.quick else (args.rounds, 0.5)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)

    def on_row(row):
        print(f"  {row['cell']:>4} {row['hidden']}/{row['batch']}/{row['seq']:<4} {row['engine']:>6}: "
              f"{row['tokens_per_s']:>10,.0f} tok/s  {row['gflops']:6.1f} GFLOP/s  {row['peak_rss_mb']:6.0f} MB",
              file=sys.stderr, flush=True)

    result = bench.run_bench(cells, shapes, engines, rounds, round_s, fresh_workers=not args.quick, on_row=on_row)
    print(bench.format_table(result))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=1).encode("utf-8"), "--json")
    return 0


def run_visualize(args: argparse.Namespace, explicit: set[str]) -> int:
    from .visualize import read_text_argument, render_html, visualization_data, write_html

    checkpoint = load_checkpoint(args.checkpoint)
    text = read_text_argument(args.text)
    vis = visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, text, args.max_chars)
    path = write_html(args.out, render_html(vis, f"rnnlab visualize: {checkpoint.path}", args.layer))
    shown = f"{len(vis.text):,}" + (f" of {vis.total_chars:,}" if vis.total_chars > len(vis.text) else "")
    print(f"rnnlab: wrote {path} ({shown} characters)")
    return 0


COMMANDS = {"train": run_train, "sample": run_sample, "plot": run_plot, "bench": run_bench_command,
            "visualize": run_visualize}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, explicit_flags(parser, argv, args.command))
    except RnnlabError as err:
        print(f"rnnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
