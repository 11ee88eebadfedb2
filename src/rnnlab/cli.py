"""The ``rnnlab`` command line: parse, call the library, print. No training logic lives here.

Every user error ends as one line on stderr and exit status 2. A run stopped by a signal (Ctrl-C = SIGINT,
SIGTERM from ``kill``/``timeout``/Slurm/Docker, SIGHUP) or by its output closing (``| head``) saves its
``latest`` checkpoint, says how to resume, and exits with 128 + the signal's number (130, 143, 129; 141 for a
closed output), so a script can tell an interrupted run from a finished one.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import itertools
import os
import re
import signal
import sys
import time
import warnings

import numpy as np

from . import files
from .data.corpus import training_examples
from .errors import RnnlabError, TrainingDiverged, require
from .files import os_error_message
from .generate.sampling import PortableRandom, generate
from .memory import format_bytes, require_memory
from .nn.cells import CELLS
from .tools.export import FORMATS as EXPORT_FORMATS
from .training import checkpoint as ckpt
from .training import config as config_module
from .training import distributed
from .training.checkpoint import load_checkpoint
from .training.config import (
    GROUPS,
    SETTINGS,
    ComputeSettings,
    TrainConfig,
    config_for_data,
    device_name,
    finite_float,
    path_text,
    require_cpu_unless_torch,
)
from .training.trainer import Progress, Report, Trainer

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
        line = f"{one_line(f'{self.prog}: error: {message} (see {self.prog} --help)')}\n"
        self.exit(EXIT_USAGE, line if distributed.may_print_error() else None)   # torchrun: rank 0 says it


def add_flag(parser, name: str, **kwargs) -> None:
    """``--name_with_underscores`` plus its ``--dash-spelling`` alias."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*spellings, dest=name, **kwargs)


OWN_DEFAULT = re.compile(r"\bdefault\b")   # a help that says in its own words what happens without the flag


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help -- unless the help states it already (in its own words) or there
    is none to state (no default value, a switch that is off): never "(default: None)", never twice. The
    example under the options stays on one line, to copy and paste."""

    def _get_help_string(self, action):
        text = action.help or ""
        if OWN_DEFAULT.search(text) or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text, width, indent):
        if text.startswith("example:"):                      # a command to copy and paste: never wrapped
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_command(sub, name: str, summary: str, example: str, description: str | None = None):
    """One command: its line in ``rnnlab --help``; in its own ``--help`` what it does and an example."""
    return sub.add_parser(name, help=summary, description=description or f"{summary[0].upper()}{summary[1:]}.",
                          epilog=f"example:\n  {example}", formatter_class=HelpFormatter)


def default_note(f) -> str:
    """How a setting's --help states its default: its value; "off" for a setting that is unset by default
    (no checkpoints, no clipping, no early stop); nothing where the help says in its own words what happens
    without the flag (``default: the optimizer's own``)."""
    default = config_module.default_of(f)
    if OWN_DEFAULT.search(f.metadata["help"]):
        return ""
    return " (default: off)" if default is None else f" (default: {default})"


def add_setting_flag(parser, f) -> None:
    """The flag of one training setting (config.py), from its field: help, parse, choices and default. The
    parser's default is SUPPRESS, so the namespace holds exactly the settings the user gave (resume changes
    only those); the help states the setting's own default."""
    meta = f.metadata
    help_text = f"{meta['help']}{default_note(f)}"
    if f.type in (bool, "bool"):                             # one that may change on resume can be turned off
        action = "store_true" if meta["resume"] == config_module.LOCKED else argparse.BooleanOptionalAction
        add_flag(parser, f.name, action=action, default=argparse.SUPPRESS, help=help_text)
    else:
        add_flag(parser, f.name, default=argparse.SUPPRESS, type=meta["parse"], choices=meta["choices"],
                 help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnlab", formatter_class=HelpFormatter,
                           description="Character-level recurrent language models (RNN, LSTM, GRU, minGRU, "
                                       "minLSTM) from scratch in NumPy: train on any UTF-8 text, sample, translate, "
                                       "export, benchmark. `rnnlab COMMAND --help` tells more of each command.",
                           epilog="example:\n  rnnlab train --dataset dinos --checkpoint_dir runs/dinos"
                                  "\n  rnnlab sample --checkpoint runs/dinos --num_samples 10 --novelty")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    train = add_command(sub, "train", "train a character model and print samples",
                        "rnnlab train --dataset shakespeare --cell lstm --num_layers 2 --hidden_size 256 "
                        "--batch_size 32 --seq_length 64 --checkpoint_dir runs/s",
                        description="Train a character-level model on a text (a file, a folder, a glob or a shipped "
                                    "corpus) and print samples as it learns; pairs data (SOURCE<TAB>TARGET lines) "
                                    "trains a translator.")
    for group, cls in GROUPS.items():                        # every training setting: one field, one flag
        flags = train.add_argument_group(f"{group} settings")
        for f in dataclasses.fields(cls):
            add_setting_flag(flags, f)
    add_flag(train, "resume", default=None, type=path_text,
             help="continue a run exactly from a checkpoint (directory or .json); --iterations/--epochs count the "
                  "total; only the settings given here change (those that fix the model's shape may not)")
    add_flag(train, "new_data", action="store_true",
             help="with --resume: continue on a text other than the checkpoint's (same characters), from its start")
    add_flag(train, "overwrite", action="store_true",
             help="start a new run in a --checkpoint_dir that holds another run's checkpoint, deleting it (or "
                  "continue from best.json over a later latest.json); replace a --metrics_file rnnlab did not "
                  "write")
    add_flag(train, "quiet", action="store_true", help="no progress bar; print only the final report")

    smp = add_command(sub, "sample", "generate text from a checkpoint or a shipped model",
                      'rnnlab sample --checkpoint shakespeare-lstm --prime "ROMEO:" --length 400 --temperature 0.7')
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
    add_flag(smp, "rng", default="numpy", choices=["numpy", "portable"],
             help="the random numbers of the draw: numpy (NumPy's Generator) or portable (xoshiro128**, the one "
                  "exported web pages use: the same --seed gives the page's text; docs/export.md)")
    add_flag(smp, "beam_size", type=int, default=None,
             help="print the K most probable continuations of --prime (beam search) with their log-probabilities, "
                  "instead of sampling")
    add_flag(smp, "engine", default="numpy", choices=["numpy", "torch"],
             help="numpy, or torch to run the model on --device (the draws stay on the host: the same text)")
    add_flag(smp, "device", default="auto", type=device_name, help="with --engine torch: auto, cpu, cuda, cuda:N, mps")
    add_flag(smp, "novelty", action="store_true",
             help="(one-name-per-line corpora) report the share of samples not in the training text")

    exp = add_command(sub, "export", "share a trained model: a web page that samples in the browser, ONNX, "
                      "safetensors for PyTorch, or rnnlab's own weights-only checkpoint (docs/export.md)",
                      "rnnlab export --checkpoint shakespeare-lstm --out shakespeare.html")
    add_flag(exp, "checkpoint", required=True, type=path_text,
             help="a checkpoint directory or its .json file, or a shipped model's name (see sample --list)")
    add_flag(exp, "out", required=True, type=path_text,
             help="the file to write (html, onnx, safetensors), or the folder of an rnnlab checkpoint")
    add_flag(exp, "format", default="auto", choices=["auto", *EXPORT_FORMATS],
             help="html: one self-contained page (samples as you watch; a translator's page translates and draws "
                  "its attention); onnx: the graph with the state as inputs and outputs; safetensors: the weights "
                  "under PyTorch's names (nn.RNN/LSTM/GRU, or rnnlab's torch twin for minGRU, minLSTM and the "
                  "residual block); rnnlab: a weights-only checkpoint folder; auto: from --out's suffix "
                  "(.html, .onnx, .safetensors; anything else is a folder)")
    add_flag(exp, "dtype", default=None, choices=["float16", "float32", "float64"],
             help="the stored weights' type (default: float16 for html and rnnlab, float32 for onnx and "
                  "safetensors); onnx always computes in float32, float16 rounds the weights first")
    add_flag(exp, "description", default="", help="one line saying what the model is (shown by sample --list and "
                                                   "on the page)")
    add_flag(exp, "overwrite", action="store_true",
             help="replace an existing --out file, or the checkpoint already in an --out folder")

    tr = add_command(sub, "translate", "translate text with a translator checkpoint (trained on pairs data): "
                     "one output line per input line",
                     'rnnlab translate --checkpoint runs/dates "9th of may 18" --beam_size 4 --show_attention')
    add_flag(tr, "checkpoint", required=True, type=path_text, help="a translator's checkpoint directory or .json")
    tr.add_argument("texts", nargs="*", help="the texts to translate (or use --input)")
    add_flag(tr, "input", default=None, type=path_text, help="a UTF-8 file with one text per line; '-' reads stdin")
    add_flag(tr, "beam_size", type=int, default=1, help="1: greedy decoding; K > 1: beam search with K hypotheses")
    add_flag(tr, "length_penalty", type=finite_float, default=1.0,
             help="beam search ranks log p / length^penalty (0: raw log-probability)")
    add_flag(tr, "show_attention", action="store_true", help="print each attention matrix as text under its line")

    plot = add_command(sub, "plot", "draw train/validation loss curves from a --metrics_file",
                       "rnnlab plot runs/a/metrics.jsonl runs/b/metrics.jsonl --labels a,b --x minutes --out loss.png")
    plot.add_argument("metrics", type=path_text, nargs="+",
                      help="a JSONL file written by rnnlab train --metrics_file; several: their curves overlaid")
    add_flag(plot, "out", default="loss.png", type=path_text, help="the image to write (.png, .svg or .pdf)")
    add_flag(plot, "title", default=None, help="plot title (default: the metrics file name)")
    add_flag(plot, "overwrite", action="store_true", help="replace an existing --out that rnnlab did not write")
    add_flag(plot, "x", default="step", choices=["step", "minutes"],
             help="the horizontal axis: steps, or minutes of training (to compare runs of different speeds)")
    add_flag(plot, "labels", default=None,
             help="comma-separated names for several metrics files (default: each file's name, or its folder's "
                  "when the file is called metrics.jsonl)")

    bench = add_command(sub, "bench", "time one training step: NumPy vs PyTorch vs Keras, side by side",
                        "rnnlab bench --cells lstm,gru --shapes 256/32/64/2 --threads 1")
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
    add_flag(bench, "overwrite", action="store_true", help="replace an existing --json that rnnlab did not write")

    vis = add_command(sub, "visualize", "an HTML page: the text coloured by a hidden unit, the units that track "
                      "quotes, lines, brackets ..., and the next-character predictions",
                      'rnnlab visualize --checkpoint shakespeare-gru --text "To be, or not to be" --out gru.html',
                      description="Write an HTML page: the text coloured by a hidden unit, the units that track "
                                  "quotes, lines, brackets ..., and the next-character predictions; for a "
                                  "translator, its attention heatmaps.")
    add_flag(vis, "checkpoint", required=True, type=path_text, help="a checkpoint directory or its .json file")
    add_flag(vis, "text", required=True,
             help="a UTF-8 text file, or the text itself (a missing path ending in .txt or with '/' is an error); "
                  "for a translator, one source per line, each shown as an attention heatmap")
    add_flag(vis, "out", required=True, type=path_text, help="the HTML file to write (self-contained: works offline)")
    add_flag(vis, "max_chars", type=int, default=3000, help="visualise at most the first N characters")
    add_flag(vis, "layer", type=int, default=None, help="the layer shown first, 0 = bottom (default: the top layer)")
    add_flag(vis, "png", default=None, type=path_text,
             help="translator checkpoints: also write the first input's attention heatmap as a PNG image")
    add_flag(vis, "overwrite", action="store_true",
             help="replace an existing --out (or --png) that rnnlab did not write")
    return parser


def given_settings(args: argparse.Namespace) -> dict:
    """The training settings the user gave (the parser sets no other): {flag name: value}."""
    return {name: value for name, value in vars(args).items() if name in SETTINGS}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A new run's TrainConfig: the given settings, the data's own defaults for the others (pairs data)."""
    return config_for_data(given_settings(args))


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


class StoppedAtOnce(Exception):
    """A second stop signal: the run ends at once, without finishing its step or saving."""

    def __init__(self, name: str, status: int):
        super().__init__(name)
        self.name, self.status = name, status


class StopSignals:
    """The one signal path: SIGINT, SIGTERM and SIGHUP -- and a closed stdout -- ask the trainer to stop
    after its current step (it then saves ``latest``). A second signal abandons at once (KeyboardInterrupt).
    ``status`` is the exit status of the stop: 128 + the signal number. Installed before the trainer is
    built: a signal that arrives while the data loads is remembered and stops the run before its first step.

    With ``at_once`` (commands that have nothing to save: ``sample``, ``translate``) the first signal raises
    StoppedAtOnce where the command is -- also while it waits for input -- and the command says how far it got."""

    def __init__(self, at_once: bool = False):
        self.request_stop, self.status, self.name, self.previous, self.at_once = None, None, None, {}, at_once

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
        if self.status is not None or self.at_once:              # asked twice: stop now, save nothing more
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


def run_train(args: argparse.Namespace) -> int:
    distributed.environment_world(fresh=True)                    # torchrun's variables, validated once
    given = given_settings(args)
    compute = ComputeSettings(**{k: v for k, v in given.items() if SETTINGS[k][0] == "compute"})
    with distributed.joined(compute.device, compute.dist_timeout):   # torchrun: meet the others first, so that
        return train_command(args, given)                           # any later error reaches them


def train_command(args: argparse.Namespace, given: dict) -> int:
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        trainer_factory = lambda report, progress, load: Trainer.resume(  # noqa: E731
            checkpoint, given, report, progress, new_data=args.new_data, on_load=load, overwrite=args.overwrite)
    else:
        require(not args.new_data, "--new_data only applies with --resume")
        config = config_for_data(given)
        trainer_factory = lambda report, progress, load: Trainer(  # noqa: E731
            config, report, progress, load, overwrite=args.overwrite)
    with StopSignals() as stops:                                 # from now on a signal stops, not kills
        return train_until_done_or_stopped(args, checkpoint, trainer_factory, stops)


def train_until_done_or_stopped(args, checkpoint, trainer_factory, stops: StopSignals) -> int:
    writes = distributed.current().writes          # torchrun: rank 0 prints and writes, the others compute
    bar = ProgressBar(enabled=not args.quiet and writes)

    def show(text: str, file=None) -> None:
        if not writes:
            return
        try:
            print(text, file=file or sys.stdout, flush=True)
        except BrokenPipeError:                                  # e.g. `rnnlab train ... | head -1`
            silence_stdout()
            stops.stop("a closed output", SIGPIPE_STATUS)

    def on_report(report: Report) -> None:
        bar.clear()
        for warning in report.warnings:                          # the health guard speaks even with --quiet
            show(f"rnnlab: warning: {warning}", sys.stderr)
        if not args.quiet:
            show(format_report(report))

    trainer = trainer_factory(on_report, bar.update, bar.loading)  # takes the checkpoint folder's lock
    bar.clear()
    stops.attach(trainer.request_stop)
    notes = list(trainer.notes)
    if checkpoint is not None:
        notes.insert(0, f"resuming from {checkpoint.path} at step {trainer.step:,}; saving to "
                        f"{trainer.config.checkpoint_dir}")
        if trainer.step >= trainer.total_steps:
            notes.append(f"the run already has its {trainer.total_steps:,} steps: nothing to train (raise "
                         "--iterations or --epochs to continue it)")
        elif trainer.stopped_early:
            notes.append(f"the run stopped early: {trainer.run_state.evals_since_best} validations without a new "
                         "best; nothing to train (raise --patience to continue it)")
    info = trainer.describe()
    o, corpus = info["optimizer"], info["corpus"]
    for note in notes:
        show(f"rnnlab: note: {note}", sys.stderr)
    where = "" if info["device"] == "cpu" and info["processes"] == 1 else f" on {info['device']}"
    where += f" x {info['processes']} processes" if info["processes"] > 1 else ""
    show(f"rnnlab: {trainer.task.describe_model(trainer.model_config)} on {corpus['name']} "
         f"({corpus['mode']}, {corpus['chars']:,} chars), "
         f"{o['name']} lr={o['lr']}, {info['total_steps']:,} steps of batch {trainer.config.batch_size}{where}")
    started_at = trainer.step
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
    if trainer.stopped_early and trainer.step > started_at:
        run = trainer.run_state
        kept = f"; the best model is {trainer.folder.directory / 'best.json'}" if trainer.folder is not None else ""
        at = "" if run.best_step is None else f" at step {run.best_step:,}"
        show(f"rnnlab: early stop at step {trainer.step:,} of {trainer.total_steps:,}: {run.evals_since_best} "
             f"validations without a new best (--patience {trainer.config.patience}); best validation "
             f"{run.best_val_loss:.4f} nats/char{at}{kept}")
    if "latest" in trainer.saved:
        show(f"rnnlab: checkpoint {trainer.saved['latest']}" +
             (f", best validation {trainer.saved['best']}" if "best" in trainer.saved else ""))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    require(args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    if args.list:
        return list_shipped()
    require(args.checkpoint is not None, "give --checkpoint (a checkpoint folder or a shipped model: see --list)")
    require_cpu_unless_torch(args.engine, args.device)
    checkpoint = load_checkpoint(args.checkpoint)
    checkpoint.require_task("lm", "rnnlab sample")
    require(args.length > 0, f"--length must be > 0, got {args.length}")
    if args.beam_size is not None:
        return print_beam(checkpoint, args)
    names = checkpoint.meta["corpus"]["mode"] == "lines"
    n = args.num_samples if args.num_samples is not None else (10 if names else 1)
    require(n > 0, f"--num_samples must be > 0, got {n}")
    seen = None
    if args.novelty:                                             # the samples are kept, to compare: a budget
        require_memory(n * (args.length + len(args.prime)) * 8, f"--novelty over {n:,} samples of up to "
                       f"{args.length:,} characters", "give fewer --num_samples or a smaller --length")
        seen = training_examples(checkpoint.meta["corpus"])      # checked before any sampling
    forward = None
    if args.engine == "torch":
        from .frameworks import load_framework
        forward = load_framework("torch").device_forward(checkpoint.weights, checkpoint.model_config, args.device)
    rng = PortableRandom(args.seed) if args.rng == "portable" else np.random.default_rng(args.seed)
    kept, number = [], 0
    with StopSignals(at_once=True):                              # a signal stops where the sample is
        try:
            for number in range(n):
                text = stream_sample(generate(checkpoint.weights, checkpoint.model_config, checkpoint.tokenizer, rng,
                                              length=args.length, temperature=args.temperature, top_k=args.top_k,
                                              greedy=args.greedy, prime=args.prime, stop_at_newline=names,
                                              forward=forward),
                                     ("" if number == 0 else "\n" if names else "\n\n") + args.prime,
                                     keep=seen is not None)
                if seen is not None:
                    kept.append(args.prime + text)
        except StoppedAtOnce as stop:
            sys.stdout.flush()
            return say_error(f"rnnlab: interrupted by {stop.name} after {number:,} of {n:,} samples", stop.status)
    sys.stdout.write("\n")
    if seen is not None:
        novel = sum(text not in seen for text in kept)
        print(f"novelty: {novel}/{n} samples ({novel / n:.0%}) are not in the training text")
    return 0


def stream_sample(chars, lead: str, keep: bool, flush_every: int = 64) -> str:
    """Print ``lead`` and then each character as it comes (flushed every ``flush_every`` and at the end).
    -> the characters, if ``keep`` (else "")."""
    out, kept, pending = sys.stdout, [], 0
    out.write(lead)
    for char in chars:
        out.write(char)
        if keep:
            kept.append(char)
        pending += 1
        if pending >= flush_every:
            out.flush()
            pending = 0
    out.flush()
    return "".join(kept)


def list_shipped() -> int:
    """``sample --list``: the pretrained models in the package, with what they score."""
    for name in ckpt.shipped_checkpoints():
        export = load_checkpoint(name).meta["export"]
        score = f"validation {export['val_loss']:.3f} nats/char" if export["val_loss"] is not None else "not measured"
        print(f"{name:20s} {score} ({export['val_tokens']:,} chars)  {export['description']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Measure the cast weights on the run's validation split, then write them in the chosen format."""
    from .tools.export import export

    done = export(load_checkpoint(args.checkpoint), args.format, args.out, args.dtype, args.overwrite,
                  args.description)
    shown = (f"{done.format.summary}, {done.dtype} weights, {format_bytes(done.path.stat().st_size)}"
             if done.format.render is not None else done.dtype)
    print(f"rnnlab: wrote {done.path} ({shown}, {validation_summary(done.val_loss, done.val_tokens)})")
    return 0


def validation_summary(val_loss: float | None, val_tokens: int) -> str:
    return "no validation" if val_loss is None else f"validation {val_loss:.4f} nats/char on {val_tokens:,} chars"


def print_beam(checkpoint, args) -> int:
    """``sample --beam_size K``: the K most probable continuations of --prime, most probable first."""
    from .generate.beam import beam_search

    require(args.beam_size > 0, f"--beam_size must be > 0, got {args.beam_size}")
    found = beam_search(checkpoint.weights, checkpoint.model_config, checkpoint.tokenizer, args.prime,
                        args.beam_size, args.length)
    for text, logprob in found:
        print(f"{logprob:10.4f}  {text!r}")
    return 0


TRANSLATE_WINDOW = 256          # input lines translated (and printed) together
MAX_INPUT_LINE = 1 << 20        # characters: a translator's input is a short text, not a book


def translate_inputs(args):
    """The texts of `rnnlab translate` in windows of TRANSLATE_WINDOW: the arguments, or the lines of --input
    (a file, or '-' for stdin) read as they come, so that output starts before the input ends and a huge
    input is never held whole."""
    require(bool(args.texts) != bool(args.input), "give the texts to translate as arguments or with --input "
                                                  "(one of the two)")
    if args.texts:
        yield list(args.texts)
        return
    if args.input == "-":
        yield from windows_of_lines(sys.stdin.buffer)
        return
    path = files.regular_file(args.input, "--input")
    files.note_read(path, "the --input file")
    with open(path, "rb") as stream:
        yield from windows_of_lines(stream)


def windows_of_lines(stream):
    """UTF-8 lines of a byte stream (a byte-order mark dropped, \\r\\n -> \\n), TRANSLATE_WINDOW at a time."""
    decoder, offset, pending, window, any_line = codecs.getincrementaldecoder("utf-8-sig")(), 0, "", [], False
    read = getattr(stream, "read1", stream.read)                 # what has arrived, not a full 64 KiB: a pipe
    for chunk in itertools.chain(iter(lambda: read(1 << 16), b""), [None]):   # is answered as it is written
        try:
            pending += decoder.decode(b"" if chunk is None else chunk, final=chunk is None)
        except UnicodeDecodeError as err:
            raise RnnlabError(f"--input is not valid UTF-8 (bad byte at offset {offset + max(err.start, 0)}): "
                              "convert it, e.g. with `iconv -t utf-8`") from None
        offset += 0 if chunk is None else len(chunk)
        *lines, pending = pending.split("\n")
        if chunk is None and (pending or not any_line):
            lines.append(pending)                                # the last line, without its newline
        require(len(pending) <= MAX_INPUT_LINE, f"--input has a line longer than {MAX_INPUT_LINE:,} characters: "
                                               "a translator reads short texts, one per line")
        for line in lines:
            window.append(line.removesuffix("\r"))
            any_line = True
            if len(window) == TRANSLATE_WINDOW:
                yield window
                window = []
    if window:
        yield window


def run_translate(args: argparse.Namespace) -> int:
    from .generate.translate import translate
    from .tools.attention_map import attention_text

    checkpoint = load_checkpoint(args.checkpoint)
    checkpoint.require_task("translate", "rnnlab translate")
    done = 0
    with StopSignals(at_once=True):                              # also while it waits for more input
        try:
            for texts in translate_inputs(args):
                results = translate(checkpoint.weights, checkpoint.model_config, checkpoint.tokenizer, texts,
                                    beam_size=args.beam_size, length_penalty=args.length_penalty, first=done + 1)
                lines = []
                for result in results:
                    lines.append(result.output)
                    if args.show_attention:
                        lines.append(attention_text(result))
                done += len(texts)                               # counted before they are shown
                print("\n".join(lines), flush=True)
        except StoppedAtOnce as stop:
            return say_error(f"rnnlab: interrupted by {stop.name} after {done:,} inputs", stop.status)
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from .tools.plot import plot_metrics

    labels = None if args.labels is None else [label.strip() for label in args.labels.split(",")]
    require(labels is None or len(labels) == len(args.metrics),
            f"--labels names {len(labels or [])} runs but {len(args.metrics)} metrics files are given: give one "
            "label per file")
    path = plot_metrics(args.metrics, args.out, args.title, labels, args.overwrite, args.x)
    print(f"rnnlab: wrote {path}")
    return 0


def run_bench_command(args: argparse.Namespace) -> int:
    from .tools import bench

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    require(cells, f"--cells {args.cells!r} names no cell: give e.g. rnn,lstm,gru")
    for cell in cells:
        require(cell in CELLS, f"unknown cell {cell!r} in --cells: use {', '.join(CELLS)}")
    require(args.layers > 0, f"--layers must be > 0, got {args.layers}")
    require(args.threads is None or args.threads > 0, f"--threads must be > 0, got {args.threads}")
    if args.shapes:
        shapes = [bench.Shape.parse(s.strip(), args.layers) for s in args.shapes.split(",") if s.strip()]
    else:
        shapes = [bench.Shape(*s) for s in (bench.QUICK_SHAPES if args.quick else bench.SHAPES)]
    require(args.rounds > 0, f"--rounds must be > 0, got {args.rounds}")
    bench.require_shapes_fit(cells, shapes)
    rounds, round_s = (3, 0.2) if args.quick else (args.rounds, 0.5)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    require(engines, f"--engines {args.engines!r} names no engine: give e.g. numpy,torch")
    for engine in engines:
        require_cpu_unless_torch(bench.BENCH_ENGINES.get(engine, engine), args.device, fix="give --engines torch")
    if args.json:
        files.check_output(args.json, files.BENCH, "--json", args.overwrite)   # now, not after the timing

    def on_row(row):
        shape = bench.Shape(row["hidden"], row["batch"], row["seq"], row["layers"])
        print(f"  {row['cell']:>4} {str(shape):<12} {row['engine']:>13}: {row['tokens_per_s']:>10,.0f} tok/s  "
              f"{row['gflops']:6.1f} GFLOP/s  {row['peak_rss_mb']:6.0f} MB  spread {100 * row['spread']:3.0f} %"
              f"{' (noisy)' if row['noisy'] else ''}", file=sys.stderr, flush=True)

    result = bench.run_bench(cells, shapes, engines, rounds, round_s, fresh_workers=not args.quick, on_row=on_row,
                             device=args.device, threads=args.threads)
    print(bench.format_table(result))
    if args.json:
        bench.write_json(args.json, result, args.overwrite)
    return 0


def run_visualize(args: argparse.Namespace) -> int:
    from .tools.visualize import read_text_argument, render_html, visualization_data, write_html

    checkpoint = load_checkpoint(args.checkpoint)
    text = read_text_argument(args.text, path_like_is_path=checkpoint.meta["task"] == "lm")
    files.check_output(args.out, files.PAGE, "--out", args.overwrite)      # before any work
    if checkpoint.meta["task"] == "translate":
        return visualize_attention(checkpoint, text, args)
    require(args.png is None, "--png draws a translator's attention; for a language model open the HTML page")
    vis = visualization_data(checkpoint.weights, checkpoint.model_config, checkpoint.tokenizer, text, args.max_chars)
    path = write_html(args.out, render_html(vis, f"rnnlab visualize: {checkpoint.path}", args.layer), args.overwrite)
    shown = f"{len(vis.text):,}" + (f" of {vis.total_chars:,}" if vis.total_chars > len(vis.text) else "")
    print(f"rnnlab: wrote {path} ({shown} characters)")
    return 0


def visualize_attention(checkpoint, text: str, args) -> int:
    """``visualize`` on a translator: an HTML page of attention heatmaps (one per source line), and a PNG."""
    from .generate.translate import translate
    from .tools.attention_map import write_attention_html, write_attention_png
    from .tools.plot import check_plot_path

    sources = [line for line in text.split("\n") if line.strip()][:args.max_chars]
    require(sources, "--text has no line to translate")
    if args.png is not None:
        require(files.resolved(args.png) != files.resolved(args.out), "--png and --out name the same file: give "
                                                                      "two names")
        check_plot_path(args.png, "--png", args.overwrite)
    results = translate(checkpoint.weights, checkpoint.model_config, checkpoint.tokenizer, sources)
    path = write_attention_html(args.out, results, f"rnnlab attention: {checkpoint.path}", args.overwrite)
    print(f"rnnlab: wrote {path} ({len(results)} attention map(s))")
    if args.png is not None:
        print(f"rnnlab: wrote {write_attention_png(args.png, results[0], overwrite=args.overwrite)}")
    return 0


COMMANDS = {"train": run_train, "sample": run_sample, "translate": run_translate, "export": run_export,
            "plot": run_plot, "bench": run_bench_command, "visualize": run_visualize}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr: 2 for what the user can fix (RnnlabError, an
    OS error on a file, not enough memory), 128 + N after signal N, 1 for a bug in rnnlab (set
    RNNLAB_DEBUG=1 to see its traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    files.new_session()                                          # this command's inputs, for the output guard
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
            return COMMANDS[args.command](args)
    except RnnlabError as err:
        return say_error(f"rnnlab: error: {err}", EXIT_USAGE, err)
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


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every line break and control character shown as an escape (``\\n``, ``\\x1b``): a file
    name with a newline in it cannot split the error line in two, nor an escape sequence recolour a terminal."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def say_error(line: str, status: int, err: BaseException | None = None) -> int:
    """Print the one error line (under torchrun: only the process that failed first, or the one whose own
    problem it is, see distributed.py) and return the exit status."""
    if distributed.may_print_error(err):
        print(one_line(line), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
