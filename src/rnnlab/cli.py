"""The ``rnnlab`` command line: parse, call the library, print. No training logic lives here.

Every user error ends as one line on stderr and exit status 2. A run stopped by a signal (Ctrl-C = SIGINT,
SIGTERM from ``kill``/``timeout``/Slurm/Docker, SIGHUP) or by its output closing (``| head``) saves its
``latest`` checkpoint, says how to resume, and exits with 128 + the signal's number (130, 143, 129; 141 for a
closed output), so a script can tell an interrupted run from a finished one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import distributed
from .block import BLOCKS
from .cells import CELLS
from .checkpoint import TAGS, clean_directory, export_weights, load_checkpoint
from .config import TrainConfig, config_for_mode
from .corpus import load_corpus
from .engines import DEVICE_PATTERN, ENGINES, PRECISIONS, require_cpu_unless_torch
from .errors import RnnlabError, TrainingDiverged, require
from .files import (
    DirectoryLock,
    atomic_write_bytes,
    check_path_text,
    os_error_message,
    prepare_directory,
    read_bytes,
    refuse_overwriting_inputs,
    regular_file,
    same_file,
)
from .initializers import INIT_SCHEMES
from .model import ModelConfig, training_bytes
from .norms import NORMS
from .optim import LR_SCHEDULES, OPTIMIZERS
from .pairs import SHIPPED_PAIRS
from .sampling import sample
from .seq2seq import ATTENTION_KINDS
from .tasks import pairs_mode
from .text import DATA_MODES, SHIPPED_DATASETS
from .train import DTYPES, Progress, Report, Trainer, available_memory, format_bytes

EXIT_USAGE = 2
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
SIGPIPE_STATUS = 128 + 13


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong + where to look), exit status 2, and no
    abbreviated flags (``--iter`` for ``--iterations`` would be silently taken as typed or not)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        line = f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        self.exit(EXIT_USAGE, line if distributed.may_print_error() else None)   # torchrun: rank 0 says it


def add_flag(parser, name: str, **kwargs) -> None:
    """``--name_with_underscores`` plus its ``--dash-spelling`` alias."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*spellings, dest=name, **kwargs)


def finite_float(text: str) -> float:
    """A float flag: 'inf' and 'nan' are refused like any other non-number."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


finite_float.__name__ = "finite number"        # argparse names the type in its one-line error


def optional_float(text: str) -> float | None:
    """'none' or 'off' turn an option off; anything else is a finite number (checked > 0 by the config)."""
    return None if text.lower() in ("none", "off") else finite_float(text)


optional_float.__name__ = "number or 'none'"


def count_or_all(text: str) -> int | None:
    """'all' -> None (no limit); else an integer (checked > 0 by the config)."""
    return None if text.lower() == "all" else int(text)


count_or_all.__name__ = "integer or 'all'"


def path_text(text: str) -> str:
    """A path flag: refuse empty, NUL and non-UTF-8 names at once (they cannot be saved or printed)."""
    try:
        return check_path_text(text, "path")
    except RnnlabError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def device_name(text: str) -> str:
    """--device: auto, cpu, cuda, cuda:N or mps (whether it exists is checked when it is used)."""
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"invalid device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    train = sub.add_parser("train", help="train a character model and print samples",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    add_flag(train, "dataset", default=d.dataset, type=path_text,
             help=f"a shipped corpus ({', '.join([*SHIPPED_DATASETS, *SHIPPED_PAIRS])}), or the path of a UTF-8 text "
                  "file, a folder or a glob of them; pairs data (SOURCE<TAB>TARGET lines, e.g. dates) trains a "
                  "translator, with its own defaults")
    add_flag(train, "data_mode", default=d.data_mode, choices=DATA_MODES,
             help="lines: one example per line; stream: continuous text; pairs: SOURCE<TAB>TARGET lines "
                  "(a translator); auto: guess from the text")
    add_flag(train, "cell", default=d.cell, choices=sorted(CELLS), help="recurrent cell type")
    add_flag(train, "hidden_size", type=int, default=d.hidden_size, help="units per recurrent layer")
    add_flag(train, "num_layers", type=int, default=d.num_layers, help="stacked recurrent layers")
    add_flag(train, "dropout", type=finite_float, default=d.dropout,
             help="training only: between stacked layers (plain block), on both branches of every layer (residual)")
    add_flag(train, "block", default=d.block, choices=list(BLOCKS),
             help="plain: recurrent layers stacked directly; residual: each layer pre-normalised, with a residual "
                  "connection and a feed-forward layer (the minGRU/minLSTM paper's stack; any cell)")
    add_flag(train, "norm", default=d.norm, choices=list(NORMS), help="residual block: RMSNorm (rms) or LayerNorm")
    add_flag(train, "ffn_mult", type=int, default=d.ffn_mult,
             help="residual block: the feed-forward layer's width, in units of --hidden_size")
    add_flag(train, "init", default=d.init, choices=list(INIT_SCHEMES),
             help="initial weights: rnnlab (Glorot, orthogonal recurrent matrix, zero biases), pytorch "
                  "(U(+-1/sqrt(H)) everywhere), keras (rnnlab's + forget bias 1) or blockorth (rnnlab's old "
                  "scheme); see initializers.py")
    add_flag(train, "forget_bias", type=finite_float, default=d.forget_bias,
             help="LSTM: start the forget-gate bias at this value (0 keeps half of the cell state per step, "
                  "1 keeps sigma(1) = 73%%); default: the --init scheme's own")
    add_flag(train, "attention", default=d.attention, choices=list(ATTENTION_KINDS),
             help="translator (pairs data): how the decoder scores the encoder's outputs; none: the classic "
                  "encoder-final-state decoder")
    add_flag(train, "encoder_hidden", type=int, default=d.encoder_hidden,
             help="translator: units per encoder direction (default: --hidden_size / 2)")
    add_flag(train, "attention_size", type=int, default=d.attention_size, help="translator: the additive score's width")
    add_flag(train, "max_output_length", type=int, default=d.max_output_length,
             help="translator: decoding stops after this many characters (default: the longest target + 4)")
    add_flag(train, "iterations", type=int, default=d.iterations, help="optimisation steps")
    add_flag(train, "epochs", type=int, default=d.epochs, help="passes over the training data (overrides --iterations)")
    add_flag(train, "batch_size", type=int, default=d.batch_size,
             help="examples per step (lines: padded names; stream: parallel streams of the text)")
    add_flag(train, "seq_length", type=int, default=d.seq_length, help="truncated-BPTT window for stream corpora")
    add_flag(train, "deterministic", action="store_true", help="fixed example order (no reshuffling); fixed --seed")
    add_flag(train, "engine", default=d.engine, choices=list(ENGINES),
             help="numpy (from scratch) or the same model in PyTorch / Keras (needs the [torch] / [tf] extra)")
    add_flag(train, "device", default=d.device, type=device_name,
             help="where the torch engine computes: auto (CUDA if there is a GPU, else the CPU), cpu, cuda, cuda:N, "
                  "mps; under torchrun each process takes cuda:LOCAL_RANK (docs/gpu.md)")
    add_flag(train, "precision", default=d.precision, choices=list(PRECISIONS),
             help="torch engine: bf16 / fp16 run the forward pass under torch.autocast (a GPU speed-up; none on "
                  "the CPU), fp16 with loss scaling")
    add_flag(train, "threads", type=int, default=d.threads,
             help="numpy engine: threads per training step (default: the cores available to this process)")
    add_flag(train, "optimizer", default=d.optimizer, choices=list(OPTIMIZERS), help="update rule (docs in optim.py)")
    add_flag(train, "learning_rate", type=finite_float, default=d.learning_rate,
             help="default: the optimizer's own (sgd 0.1, momentum 0.05, rms 0.005, adam 0.005, adagrad 0.1)")
    add_flag(train, "optimizer_options", default=d.optimizer_options,
             help="KEY=VALUE,... hyper-parameters and conventions, e.g. 'mu=0.95,form=ema' (momentum), "
                  "'eps_hat=true' (Adam as Keras), 'eps_inside_sqrt=true' (RMSProp/Adagrad as Keras)")
    add_flag(train, "lr_schedule", default=d.lr_schedule, choices=list(LR_SCHEDULES),
             help="cosine: decay from --learning_rate to --min_learning_rate over the run")
    add_flag(train, "min_learning_rate", type=finite_float, default=d.min_learning_rate,
             help="the cosine schedule's final rate (default: learning rate / 20)")
    add_flag(train, "clip_value", type=optional_float, default=d.clip_value,
             help="clip each gradient entry to [-v, v] (v > 0); 'none' turns it off")
    add_flag(train, "clip_norm", type=optional_float, default=d.clip_norm,
             help="clip the global gradient norm (> 0); 'none' turns it off")
    add_flag(train, "val_fraction", type=finite_float, default=d.val_fraction,
             help="held-out share (lines: by line; stream: the end of the text); default 0.1 where it fits")
    add_flag(train, "eval_every", type=int, default=d.eval_every,
             help="validation every N steps (default: with every report, --sample_every)")
    add_flag(train, "eval_tokens", type=count_or_all, default=d.eval_tokens,
             help="validate on the first N characters of the held-out part (the same ones every time); 'all' "
                  "for all of it")
    add_flag(train, "cache_dir", default=d.cache_dir, type=path_text,
             help="where large corpora are kept encoded for fast starts (default: $XDG_CACHE_HOME/rnnlab or "
                  "~/.cache/rnnlab)")
    add_flag(train, "temperature", type=finite_float, default=d.temperature, help="sampling temperature (> 0)")
    add_flag(train, "sample_every", type=int, default=d.sample_every, help="report and sample every N steps")
    add_flag(train, "num_samples", type=int, default=d.num_samples, help="names per report (lines corpora)")
    add_flag(train, "sample_length", type=int, default=d.sample_length,
             help="characters per sample (stream corpora)")
    add_flag(train, "seed", type=int, default=d.seed, help="seeds initialisation, data order, dropout, sampling")
    add_flag(train, "dtype", default=d.dtype, choices=list(DTYPES), help="float type of parameters and compute")
    add_flag(train, "metrics_file", default=None, type=path_text,
             help="append one JSON object per report to this file (for a step a resumed or restarted run "
                  "repeats, rnnlab plot shows the latest)")
    add_flag(train, "checkpoint_dir", default=d.checkpoint_dir, type=path_text,
             help="save checkpoints here: latest.json (every --save_every steps, at the end, on Ctrl-C) "
                  "and best.json (best validation loss)")
    add_flag(train, "save_every", type=int, default=d.save_every, help="save the latest checkpoint every N steps")
    add_flag(train, "resume", default=None, type=path_text,
             help="continue a run exactly from a checkpoint (directory or .json); --iterations/--epochs "
                  "count the total")
    add_flag(train, "new_data", action="store_true",
             help="with --resume: continue on a text other than the checkpoint's (same characters), from its start")
    add_flag(train, "overwrite", action="store_true",
             help="start a new run in a --checkpoint_dir that holds another run's checkpoint, deleting it")
    add_flag(train, "quiet", action="store_true", help="no progress bar; print only the final report")

    smp = sub.add_parser("sample", help="generate text from a checkpoint",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(smp, "checkpoint", default=None, type=path_text,
             help="a checkpoint directory or its .json file, or a shipped model's name (see --list)")
    add_flag(smp, "list", action="store_true", help="list the pretrained models shipped with rnnlab and exit")
    add_flag(smp, "length", type=int, default=200, help="characters per sample (at most, for names)")
    add_flag(smp, "num_samples", type=int, default=None, help="samples to print (default: 10 names, 1 text)")
    add_flag(smp, "temperature", type=finite_float, default=1.0, help="> 0; lower is more conservative")
    add_flag(smp, "top_k", type=int, default=None, help="sample only among the k most likely characters")
    add_flag(smp, "greedy", action="store_true", help="always take the most likely character")
    add_flag(smp, "prime", default="", help="text to start from (returned as the start of each sample)")
    add_flag(smp, "seed", type=int, default=0, help="seeds the sampling Generator")
    add_flag(smp, "beam_size", type=int, default=None,
             help="print the K most probable continuations of --prime (beam search) with their log-probabilities, "
                  "instead of sampling")
    add_flag(smp, "engine", default="numpy", choices=["numpy", "torch"],
             help="numpy, or torch to run the model on --device (the draws stay on the host: the same text)")
    add_flag(smp, "device", default="auto", type=device_name, help="with --engine torch: auto, cpu, cuda, cuda:N, mps")
    add_flag(smp, "novelty", action="store_true",
             help="(one-name-per-line corpora) report the share of samples not in the training text")

    exp = sub.add_parser("export", help="write a checkpoint's weights alone (no optimizer state), e.g. as float16: "
                         "a small model to sample from, visualise or ship",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(exp, "checkpoint", required=True, type=path_text, help="a checkpoint directory or its .json file")
    add_flag(exp, "out", required=True, type=path_text, help="the folder to write latest.json and its arrays into")
    add_flag(exp, "dtype", default="float16", choices=["float16", "float32", "float64"], help="the weights' type")
    add_flag(exp, "description", default="", help="one line saying what the model is (shown by sample --list)")
    add_flag(exp, "overwrite", action="store_true", help="replace a checkpoint already in --out")

    tr = sub.add_parser("translate", help="translate text with a translator checkpoint (trained on pairs data): "
                        "one output line per input line", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(tr, "checkpoint", required=True, type=path_text, help="a translator's checkpoint directory or .json")
    tr.add_argument("texts", nargs="*", help="the texts to translate (or use --input)")
    add_flag(tr, "input", default=None, type=path_text, help="a UTF-8 file with one text per line; '-' reads stdin")
    add_flag(tr, "beam_size", type=int, default=1, help="1: greedy decoding; K > 1: beam search with K hypotheses")
    add_flag(tr, "length_penalty", type=finite_float, default=1.0,
             help="beam search ranks log p / length^penalty (0: raw log-probability)")
    add_flag(tr, "show_attention", action="store_true", help="print each attention matrix as text under its line")

    plot = sub.add_parser("plot", help="draw train/validation loss curves from a --metrics_file",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    plot.add_argument("metrics", type=path_text, nargs="+",
                      help="a JSONL file written by rnnlab train --metrics_file; several: their curves overlaid")
    add_flag(plot, "out", default="loss.png", type=path_text, help="the image to write (.png, .svg or .pdf)")
    add_flag(plot, "title", default=None, help="plot title (default: the metrics file name)")
    add_flag(plot, "x", default="step", choices=["step", "minutes"],
             help="the horizontal axis: steps, or minutes of training (to compare runs of different speeds)")
    add_flag(plot, "labels", default=None,
             help="comma-separated names for several metrics files (default: each file's name, or its folder's "
                  "when the file is called metrics.jsonl)")

    bench = sub.add_parser("bench", help="time one training step: NumPy vs PyTorch vs Keras, side by side",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(bench, "cells", default="rnn,lstm,gru,mingru,minlstm", help="comma-separated cells")
    add_flag(bench, "shapes", default=None,
             help="comma-separated HIDDEN/BATCH/SEQ[/LAYERS] (default: 50/1/10,128/32/64,256/64/100,512/64/100,"
                  "256/32/64/2,256/32/256,256/32/1024 -- 256/32/64/2 is the README's 2-layer training shape; the "
                  "long windows are minGRU/minLSTM's)")
    add_flag(bench, "layers", type=int, default=1, help="stacked layers for every --shapes entry without /LAYERS")
    add_flag(bench, "threads", type=int, default=None,
             help="threads per engine (default: the cores available to this process)")
    add_flag(bench, "engines", default="numpy,torch,keras",
             help="numpy, torch, keras, numpy-unsplit (the NumPy engine without batch shards); those not "
                  "installed are skipped")
    add_flag(bench, "device", default="cpu", type=device_name,
             help="where the torch engine is timed (the others always run on the CPU): cpu, auto, cuda, cuda:N, mps")
    add_flag(bench, "quick", action="store_true", help="small shapes, fewer rounds: under a minute")
    add_flag(bench, "rounds", type=int, default=7, help="interleaved timing rounds per engine")
    add_flag(bench, "json", default=None, type=path_text,
             help="also write every row (and the GEMM peak) to this JSON file")

    vis = sub.add_parser("visualize", help="an HTML page: the text coloured by a hidden unit, the units that track "
                         "quotes, lines, brackets ..., and the next-character predictions",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(vis, "checkpoint", required=True, type=path_text, help="a checkpoint directory or its .json file")
    add_flag(vis, "text", required=True,
             help="a UTF-8 text file, or the text itself (a missing path ending in .txt or with '/' is an error); "
                  "for a translator, one source per line, each shown as an attention heatmap")
    add_flag(vis, "out", required=True, type=path_text, help="the HTML file to write (self-contained: works offline)")
    add_flag(vis, "max_chars", type=int, default=3000, help="visualise at most the first N characters")
    add_flag(vis, "layer", type=int, default=None, help="the layer shown first, 0 = bottom (default: the top layer)")
    add_flag(vis, "png", default=None, type=path_text,
             help="translator checkpoints: also write the first input's attention heatmap as a PNG image")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})


class MetricsFile:
    """Appends one JSON object per line; each line is written and flushed whole. Its directory is created
    (like --checkpoint_dir), and a path that cannot be written fails before training starts."""

    def __init__(self, path: str | None, inputs: dict):
        self.path = Path(path) if path else None
        if self.path is None:
            return
        refuse_overwriting_inputs(self.path, "--metrics_file", inputs)
        if self.path.exists() or self.path.is_symlink():
            regular_file(self.path, "--metrics_file")           # a FIFO would block, a device is no log
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.open("a").close()  # fail now, not after an hour of training
        except OSError as err:
            raise RnnlabError(f"--metrics_file {path} cannot be written ({err.strerror}); "
                              "give the path of a writable file") from None

    def write(self, record: dict) -> None:
        if self.path is not None:
            try:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:
                raise RnnlabError(os_error_message(err, "--metrics_file")) from None


def format_report(report: Report) -> str:
    line = (f"step {report.step:>7,}  epoch {report.epoch:>3}  loss {report.train_loss:.4f}  "
            f"smooth {report.smooth_loss:.4f}")
    if report.val_loss is not None:
        line += (f"  val {report.val_loss:.4f} nats/char ({report.val_bpc:.3f} bpc, ppl {report.val_ppl:.2f}, "
                 f"{report.val_tokens:,} chars)")
    if report.val_accuracy is not None:
        line += f"  exact match {report.val_accuracy:.2%}"
    if report.test_accuracy is not None:
        line += f" (test {report.test_accuracy:.2%})"
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

    def loading(self, done: int, total: int) -> None:
        """Progress of reading and encoding a large corpus (two passes over its bytes)."""
        now = time.monotonic()
        if not self.enabled or (now - self.last_draw < 0.2 and done < total):
            return
        self.last_draw = now
        self.stream.write(f"\rencoding the corpus once (later runs start from the cache): {done / total:4.0%} "
                          f"of {total / 2 / 2 ** 20:,.0f} MB ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def typed_flags(argv: list[str], command: str) -> set[str]:
    """The dests of the flags the user actually typed: argv parsed again with every default suppressed, so
    whatever argparse accepts (``--flag=value``, dash spellings) is seen, and nothing it does not."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


class StoppedAtOnce(Exception):
    """A second stop signal: the run ends at once, without finishing its step or saving."""

    def __init__(self, name: str, status: int):
        super().__init__(name)
        self.name, self.status = name, status


class StopSignals:
    """The one signal path: SIGINT, SIGTERM and SIGHUP -- and a closed stdout -- ask the trainer to stop
    after its current step (it then saves ``latest``). A second signal abandons at once (KeyboardInterrupt).
    ``status`` is the exit status of the stop: 128 + the signal number. Installed before the trainer is
    built: a signal that arrives while the data loads is remembered and stops the run before its first step."""

    def __init__(self):
        self.request_stop, self.status, self.name, self.previous = None, None, None, {}

    def attach(self, request_stop) -> None:
        self.request_stop = request_stop
        if self.status is not None:
            request_stop()

    def __enter__(self):
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                self.previous[name] = signal.signal(getattr(signal, name), self._on_signal)
        return self

    def __exit__(self, *exc):
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)

    def _on_signal(self, signum, frame):
        if self.status is not None:                              # asked twice: stop now, save nothing more
            raise StoppedAtOnce(signal.Signals(signum).name, 128 + signum)
        self.stop(signal.Signals(signum).name, 128 + signum)

    def stop(self, name: str, status: int) -> None:
        if self.status is None:
            self.name, self.status = name, status
            if self.request_stop is not None:
                self.request_stop()


def silence_stdout() -> None:
    """After the reader of stdout went away: send further output (and the final flush) to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def training_inputs(config: TrainConfig, checkpoint) -> dict:
    """Files a training run reads, which none of its outputs may overwrite."""
    inputs = {"the dataset": None if config.dataset in SHIPPED_DATASETS else config.dataset}
    if checkpoint is not None:
        inputs["the checkpoint"] = checkpoint.path
        inputs["the checkpoint's arrays"] = checkpoint.directory / checkpoint.meta["arrays"]
    return inputs


def other_runs_checkpoints(directory: str | None, overwrite: bool) -> list[Path]:
    """A fresh run must not silently replace another run's checkpoint (that is someone's work): without
    --overwrite that is an error; with it, the JSONs to delete once the folder's lock is ours."""
    if directory is None:
        return []
    existing = [Path(directory) / f"{tag}.json" for tag in TAGS
                if (Path(directory) / f"{tag}.json").exists() or (Path(directory) / f"{tag}.json").is_symlink()]
    if existing and not overwrite:
        raise RnnlabError(f"--checkpoint_dir {directory} already holds a run's checkpoint ({existing[0].name}): "
                          f"continue it with --resume {directory}, or add --overwrite to start over")
    return existing


def run_train(args: argparse.Namespace, typed: set[str]) -> int:
    with distributed.joined(args.device):     # torchrun: meet the other processes first, so errors reach them
        return train_command(args, typed)


def train_command(args: argparse.Namespace, typed: set[str]) -> int:
    checkpoint, fields = None, TrainConfig.__dataclass_fields__
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        overrides = {name: getattr(args, name) for name in typed if name in fields}
        elsewhere = overrides.get("checkpoint_dir")
        if elsewhere is not None and not same_file(elsewhere, checkpoint.directory):
            other_runs_checkpoints(elsewhere, args.overwrite)   # continuing into another run's folder
        trainer_factory = lambda report, progress, load: Trainer.resume(  # noqa: E731
            checkpoint, overrides, report, progress, new_data=args.new_data, on_load=load)
    else:
        require(not args.new_data, "--new_data only applies with --resume")
        given = {name: getattr(args, name) for name in typed if name in fields}
        mode = "pairs" if pairs_mode(args.dataset, args.data_mode) else args.data_mode
        config = config_for_mode(mode, {"dataset": args.dataset, **given})
        other_runs_checkpoints(config.checkpoint_dir, args.overwrite)
        trainer_factory = lambda report, progress, load: Trainer(config, report, progress, load)  # noqa: E731
    with StopSignals() as stops:                                 # from now on a signal stops, not kills
        return train_until_done_or_stopped(args, checkpoint, trainer_factory, stops)


def train_until_done_or_stopped(args, checkpoint, trainer_factory, stops: StopSignals) -> int:
    writes = distributed.current().writes          # torchrun: rank 0 prints and writes, the others compute
    bar, metrics = ProgressBar(enabled=not args.quiet and writes), None

    def show(text: str, file=None) -> None:
        if not writes:
            return
        try:
            print(text, file=file or sys.stdout, flush=True)
        except BrokenPipeError:                                  # e.g. `rnnlab train ... | head -1`
            silence_stdout()
            stops.stop("a closed output", SIGPIPE_STATUS)

    def on_report(report: Report) -> None:
        metrics.write(report.metrics())
        bar.clear()
        for warning in report.warnings:                          # the health guard speaks even with --quiet
            show(f"rnnlab: warning: {warning}", sys.stderr)
        if not args.quiet:
            show(format_report(report))

    trainer = trainer_factory(on_report, bar.update, bar.loading)  # takes the checkpoint folder's lock
    bar.clear()
    stops.attach(trainer.request_stop)
    if writes and (checkpoint is None or not same_file(trainer.config.checkpoint_dir, checkpoint.directory)):
        for path in other_runs_checkpoints(trainer.config.checkpoint_dir, args.overwrite):
            path.unlink()                                        # --overwrite; the lock is ours, so no run's
        if trainer.config.checkpoint_dir is not None:
            clean_directory(trainer.config.checkpoint_dir)      # ... and its arrays go with them
    metrics = MetricsFile(args.metrics_file if writes else None, training_inputs(trainer.config, checkpoint))
    notes = list(trainer.notes)
    if checkpoint is not None:
        notes.insert(0, f"resuming from {checkpoint.path} at step {trainer.step:,}; saving to "
                        f"{trainer.config.checkpoint_dir}")
        if trainer.step >= trainer.total_steps:
            notes.append(f"the run already has its {trainer.total_steps:,} steps: nothing to train (raise "
                         "--iterations or --epochs to continue it)")
    info = trainer.describe()
    o, corpus = info["optimizer"], info["corpus"]
    for note in notes:
        show(f"rnnlab: note: {note}", sys.stderr)
    where = "" if info["device"] == "cpu" and info["processes"] == 1 else f" on {info['device']}"
    where += f" x {info['processes']} processes" if info["processes"] > 1 else ""
    show(f"rnnlab: {trainer.task.describe_model(trainer.model_config)} on {corpus['name']} "
         f"({corpus['mode']}, {corpus['chars']:,} chars), "
         f"{o['name']} lr={o['lr']}, {info['total_steps']:,} steps of batch {trainer.config.batch_size}{where}")
    try:
        final = trainer.run()
    except TrainingDiverged as err:
        bar.clear()
        kept = trainer.saved.get("latest") or trainer.saved.get("best")
        where = f"; the last good checkpoint is {kept}" if kept else ""
        raise RnnlabError(f"{err}{where}") from None
    bar.clear()
    if stops.status is not None:
        where = trainer.saved.get("latest")
        why = "no --checkpoint_dir" if trainer.config.checkpoint_dir is None else "no step had finished"
        show(f"rnnlab: interrupted by {stops.name} at step {trainer.step:,}; "
             + (f"checkpoint saved to {where}; continue with: rnnlab train --resume {where.parent}" if where
                else f"nothing saved ({why})"), sys.stderr)
        return stops.status
    if args.quiet and final is not None:
        show(format_report(final))
    if "latest" in trainer.saved:
        show(f"rnnlab: checkpoint {trainer.saved['latest']}" +
             (f", best validation {trainer.saved['best']}" if "best" in trainer.saved else ""))
    return 0


def training_names(checkpoint) -> set[str]:
    """The names a lines-corpus checkpoint was trained on (for --novelty), from its recorded dataset, which
    must still be the same text (same size and SHA-256)."""
    corpus = checkpoint.meta["corpus"]
    require(corpus["mode"] == "lines",
            "--novelty needs a one-name-per-line corpus (this checkpoint was trained on running text)")
    source = corpus["path"] or corpus["name"]
    require(corpus["path"] is None or os.path.exists(source),
            f"--novelty needs the training text, but {source} no longer exists: run without --novelty")
    loaded = load_corpus(source, corpus["mode"])
    require((loaded.sha256, loaded.n_bytes) == (corpus["sha256"], corpus["bytes"]),
            f"--novelty needs the training text, but {source} has changed since training: run without --novelty")
    return set(loaded.examples())


def run_sample(args: argparse.Namespace, typed: set[str]) -> int:
    require(args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    if args.list:
        return list_shipped()
    require(args.checkpoint is not None, "give --checkpoint (a checkpoint folder or a shipped model: see --list)")
    require_cpu_unless_torch(args.engine, args.device)
    checkpoint = load_checkpoint(args.checkpoint)
    checkpoint.require_task("lm", "rnnlab sample")
    if args.beam_size is not None:
        return print_beam(checkpoint, args)
    names = checkpoint.meta["corpus"]["mode"] == "lines"
    n = args.num_samples if args.num_samples is not None else (10 if names else 1)
    require(n > 0, f"--num_samples must be > 0, got {n}")
    seen = training_names(checkpoint) if args.novelty else None   # checked before any sampling
    forward = None
    if args.engine == "torch":
        from .frameworks import load_framework
        forward = load_framework("torch").device_forward(checkpoint.params, checkpoint.model_config, args.device)
    rng = np.random.default_rng(args.seed)
    texts = [sample(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, rng, length=args.length,
                    temperature=args.temperature, top_k=args.top_k, greedy=args.greedy, prime=args.prime,
                    stop_at_newline=names, forward=forward) for _ in range(n)]
    print("\n".join(texts) if names else "\n\n".join(texts))
    if seen is not None:
        novel = sum(text not in seen for text in texts)
        print(f"novelty: {novel}/{n} samples ({novel / n:.0%}) are not in the training text")
    return 0


def list_shipped() -> int:
    """``sample --list``: the pretrained models in the package, with what they score."""
    for name in ckpt.shipped_checkpoints():
        export = load_checkpoint(name).meta["export"]
        score = f"validation {export['val_loss']:.3f} nats/char" if export["val_loss"] is not None else "not measured"
        print(f"{name:20s} {score} ({export['val_tokens']:,} chars)  {export['description']}")
    return 0


def run_export(args: argparse.Namespace, typed: set[str]) -> int:
    """Measure the cast weights on the run's validation split, then write them alone into --out."""
    checkpoint = load_checkpoint(args.checkpoint)
    require("export" not in checkpoint.meta, f"{checkpoint.path} is already an exported model: give the "
                                             "checkpoint of the training run it came from")
    other_runs_checkpoints(args.out, args.overwrite)
    trainer = Trainer.resume(checkpoint, {"checkpoint_dir": None, "eval_tokens": None})
    cast = {name: value.astype(args.dtype) for name, value in checkpoint.params.items()}
    trainer.engine.load_state(cast, trainer.engine.optimizer_state())
    val_loss = trainer.validation_loss()
    prepare_directory(args.out, "--out")
    lock = DirectoryLock(args.out, "--out")
    lock.acquire()
    try:
        for path in other_runs_checkpoints(args.out, args.overwrite):
            path.unlink()
        clean_directory(args.out)
        path = export_weights(checkpoint, args.out, args.dtype, val_loss, trainer.data.val_tokens, args.description)
    finally:
        lock.release()
    shown = "no validation" if val_loss is None else f"validation {val_loss:.4f} nats/char"
    print(f"rnnlab: wrote {path} ({args.dtype}, {shown} on {trainer.data.val_tokens:,} chars)")
    return 0


def print_beam(checkpoint, args) -> int:
    """``sample --beam_size K``: the K most probable continuations of --prime, most probable first."""
    from .beam import beam_search

    require(args.beam_size > 0, f"--beam_size must be > 0, got {args.beam_size}")
    found = beam_search(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, args.prime,
                        args.beam_size, args.length)
    for text, logprob in found:
        print(f"{logprob:10.4f}  {text!r}")
    return 0


def read_translate_inputs(args) -> list[str]:
    """The texts of `rnnlab translate`: the arguments, or the lines of --input (a file, or '-' for stdin)."""
    require(bool(args.texts) != bool(args.input), "give the texts to translate as arguments or with --input "
                                                  "(one of the two)")
    if args.texts:
        return list(args.texts)
    if args.input == "-":
        data = sys.stdin.buffer.read()
    else:
        data = read_bytes(args.input, "--input")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RnnlabError(f"--input is not valid UTF-8 (bad byte at offset {err.start}): convert it, e.g. with "
                          "`iconv -t utf-8`") from None
    return text.replace("\r\n", "\n").split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def run_translate(args: argparse.Namespace, typed: set[str]) -> int:
    from .attention_map import attention_text
    from .translate import translate

    checkpoint = load_checkpoint(args.checkpoint)
    checkpoint.require_task("translate", "rnnlab translate")
    texts = read_translate_inputs(args)
    results = translate(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, texts,
                        beam_size=args.beam_size, length_penalty=args.length_penalty)
    lines = []
    for result in results:
        lines.append(result.output)
        if args.show_attention:
            lines.append(attention_text(result))
    print("\n".join(lines))
    return 0


def run_plot(args: argparse.Namespace, typed: set[str]) -> int:
    from .plot import plot_metrics

    labels = None if args.labels is None else [label.strip() for label in args.labels.split(",")]
    require(labels is None or len(labels) == len(args.metrics),
            f"--labels names {len(labels or [])} runs but {len(args.metrics)} metrics files are given: give one "
            "label per file")
    path = plot_metrics(args.metrics, args.out, args.title, labels, args.x)
    print(f"rnnlab: wrote {path}")
    return 0


def run_bench_command(args: argparse.Namespace, typed: set[str]) -> int:
    from . import bench

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for cell in cells:
        require(cell in CELLS, f"unknown cell {cell!r} in --cells: use {', '.join(CELLS)}")
    require(args.layers > 0, f"--layers must be > 0, got {args.layers}")
    require(args.threads is None or args.threads > 0, f"--threads must be > 0, got {args.threads}")
    if args.shapes:
        shapes = [bench.Shape.parse(s.strip(), args.layers) for s in args.shapes.split(",") if s.strip()]
    else:
        shapes = [bench.Shape(*s) for s in (bench.QUICK_SHAPES if args.quick else bench.SHAPES)]
    require(args.rounds > 0, f"--rounds must be > 0, got {args.rounds}")
    have = available_memory()
    for cell in cells:
        for shape in shapes:
            config = ModelConfig(bench.VOCAB, cell, shape.hidden, shape.layers)
            need = training_bytes(config, shape.batch, shape.seq, 4, 2)
            require(have is None or need <= have / 2,     # /2: a framework engine holds more than NumPy's
                    f"shape {shape} needs about {format_bytes(need)} per engine for {cell}, more than half the "
                    f"{format_bytes(have)} of memory available: give smaller --shapes")
    rounds, round_s = (3, 0.2) if args.quick else (args.rounds, 0.5)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for engine in engines:
        require_cpu_unless_torch(bench.BENCH_ENGINES.get(engine, engine), args.device, fix="give --engines torch")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)

    def on_row(row):
        shape = bench.Shape(row["hidden"], row["batch"], row["seq"], row["layers"])
        print(f"  {row['cell']:>4} {str(shape):<12} {row['engine']:>13}: {row['tokens_per_s']:>10,.0f} tok/s  "
              f"{row['gflops']:6.1f} GFLOP/s  {row['peak_rss_mb']:6.0f} MB  spread {100 * row['spread']:3.0f} %"
              f"{' (noisy)' if row['noisy'] else ''}", file=sys.stderr, flush=True)

    result = bench.run_bench(cells, shapes, engines, rounds, round_s, fresh_workers=not args.quick, on_row=on_row,
                             device=args.device, threads=args.threads)
    print(bench.format_table(result))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=1).encode("utf-8"), "--json")
    return 0


def run_visualize(args: argparse.Namespace, typed: set[str]) -> int:
    from .visualize import read_text_argument, render_html, visualization_data, write_html

    checkpoint = load_checkpoint(args.checkpoint)
    text = read_text_argument(args.text, path_like_is_path=checkpoint.meta["task"] == "lm")
    inputs = {"the --text file": args.text if os.path.exists(args.text) else None, "the checkpoint": checkpoint.path}
    refuse_overwriting_inputs(args.out, "--out", inputs)
    if checkpoint.meta["task"] == "translate":
        return visualize_attention(checkpoint, text, args, inputs)
    require(args.png is None, "--png draws a translator's attention; for a language model open the HTML page")
    vis = visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, text, args.max_chars)
    path = write_html(args.out, render_html(vis, f"rnnlab visualize: {checkpoint.path}", args.layer))
    shown = f"{len(vis.text):,}" + (f" of {vis.total_chars:,}" if vis.total_chars > len(vis.text) else "")
    print(f"rnnlab: wrote {path} ({shown} characters)")
    return 0


def visualize_attention(checkpoint, text: str, args, inputs: dict) -> int:
    """``visualize`` on a translator: an HTML page of attention heatmaps (one per source line), and a PNG."""
    from .attention_map import write_attention_html, write_attention_png
    from .plot import check_plot_path
    from .translate import translate

    sources = [line for line in text.split("\n") if line.strip()][:args.max_chars]
    require(sources, "--text has no line to translate")
    if args.png is not None:
        check_plot_path(args.png)
        refuse_overwriting_inputs(args.png, "--png", {**inputs, "--out": args.out})
    results = translate(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, sources)
    path = write_attention_html(args.out, results, f"rnnlab attention: {checkpoint.path}")
    print(f"rnnlab: wrote {path} ({len(results)} attention map(s))")
    if args.png is not None:
        print(f"rnnlab: wrote {write_attention_png(args.png, results[0])}")
    return 0


COMMANDS = {"train": run_train, "sample": run_sample, "translate": run_translate, "export": run_export,
            "plot": run_plot, "bench": run_bench_command, "visualize": run_visualize}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr: 2 for what the user can fix (RnnlabError, an
    OS error on a file, not enough memory), 128 + N after signal N, 1 for a bug in rnnlab (set
    RNNLAB_DEBUG=1 to see its traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    for name, value in vars(args).items():                       # one check for every text flag: argv bytes
        if isinstance(value, str):                               # that are not UTF-8 cannot be printed or saved
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return say_error(f"rnnlab: error: --{name} is not valid UTF-8 text: use UTF-8 characters only",
                                 EXIT_USAGE)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # divergence is detected and explained
            return COMMANDS[args.command](args, typed_flags(argv, args.command))
    except RnnlabError as err:
        return say_error(f"rnnlab: error: {err}", EXIT_USAGE)
    except StoppedAtOnce as stop:
        return say_error(f"rnnlab: stopped at once by a second {stop.name}; the last saved checkpoint is kept",
                         stop.status)
    except KeyboardInterrupt:
        return say_error("rnnlab: interrupted", 128 + signal.SIGINT)
    except BrokenPipeError:                                      # the reader of stdout went away: stop quietly
        silence_stdout()
        return SIGPIPE_STATUS
    except OSError as err:
        return say_error(f"rnnlab: error: {os_error_message(err)}", EXIT_USAGE)
    except MemoryError:
        return say_error("rnnlab: error: out of memory: use a smaller model, batch or text", EXIT_USAGE)
    except Exception as err:                                     # a bug: still one line, but say so
        if os.environ.get("RNNLAB_DEBUG"):
            raise
        if distributed.lost_peer(err):
            return say_error(f"rnnlab: error: {distributed.lost_peer(err)}", EXIT_USAGE)
        return say_error(f"rnnlab: internal error: {type(err).__name__}: {err} (a bug in rnnlab; rerun with "
                         "RNNLAB_DEBUG=1 for the traceback and report it)", 1)


def say_error(line: str, status: int) -> int:
    """Print the one error line (under torchrun: only the process that failed first, see distributed.py)
    and return the exit status."""
    if distributed.may_print_error():
        print(line, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
