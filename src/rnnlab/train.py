"""One trainer for every cell, optimizer and data shape.

Each step follows the same flow, written out in :func:`rnnlab.engines.train_step`:

    forward -> loss (+ dy) -> project to da -> backward (BPTT) -> output-layer grads -> clip -> update

The trainer never prints: it hands :class:`Report` objects to a callback, and the CLI decides what to show.
Randomness comes from one seed, split into independent Generators for initialisation, data order, dropout
and sampling, so that e.g. sampling more often does not change the trained weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import model as charmodel
from .batches import Batch, LineBatches, StreamBatches, pad_sequences
from .errors import RnnlabError, TrainingDiverged, require
from . import checkpoint as ckpt
from .engines import engine_class
from .frameworks import engine_optimizer_options
from .optim import LR_SCHEDULES, make_optimizer, optimizer_config, parse_options, scheduled_learning_rate
from .sampling import sample
from .losses import bits_per_char, perplexity
from .text import Corpus, CharTokenizer, line_example, load_corpus, split_corpus

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class TrainConfig:
    dataset: str = "dinos"
    data_mode: str = "auto"             # auto | lines | stream (see text.py)
    cell: str = "rnn"
    hidden_size: int = 50
    num_layers: int = 1
    dropout: float = 0.0
    init: str = "rnnlab"                # initialisation scheme: rnnlab | pytorch | keras | blockorth (initializers.py)
    forget_bias: float | None = None    # LSTM forget-gate bias at the start; None: the scheme's (rnnlab: 0)
    iterations: int = 22001
    epochs: int | None = None           # when set, train this many passes over the data (overrides iterations)
    batch_size: int = 1
    seq_length: int = 25
    deterministic: bool = False         # fixed example order (no reshuffle); with the fixed --seed
    engine: str = "numpy"               # numpy | torch | keras-fit | keras-tape | keras-class (engines.py)
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's default (optim.py)
    optimizer_options: str = ""         # e.g. "form=ema,mu=0.95" or "eps_hat=true" (optim.parse_options)
    lr_schedule: str = "constant"       # constant | cosine (decays to min_learning_rate at the last step)
    min_learning_rate: float | None = None  # cosine's floor; None: 1/20 of the learning rate
    clip_value: float | None = 5.0      # clip every gradient entry to [-c, c]; None: off
    clip_norm: float | None = None      # clip the global gradient norm; None: off
    val_fraction: float | None = None   # None: 0.1 if the corpus is big enough, else no validation
    eval_every: int | None = None       # None: with every report (--sample_every)
    checkpoint_dir: str | None = None   # where latest.json / best.json (+ arrays) are written
    save_every: int | None = None       # save ``latest`` every N steps (it is always saved at the end)
    temperature: float = 1.0
    sample_every: int = 2000
    num_samples: int = 7                # names per report for ``lines`` corpora
    sample_length: int = 200            # characters per sample for ``stream`` corpora
    seed: int = 0
    dtype: str = "float32"

    def validate(self) -> None:
        for name in ("iterations", "sample_every", "seq_length", "batch_size", "num_samples", "sample_length"):
            require(getattr(self, name) > 0, f"--{name} must be > 0, got {getattr(self, name)}")
        require(self.lr_schedule in LR_SCHEDULES,
                f"unknown --lr_schedule {self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        require(self.min_learning_rate is None or self.min_learning_rate > 0,
                f"--min_learning_rate must be > 0, got {self.min_learning_rate}")
        if self.optimizer_options:
            make_optimizer(self.optimizer, self.learning_rate, **parse_options(self.optimizer, self.optimizer_options))
        for name in ("epochs", "eval_every", "save_every", "clip_value", "clip_norm", "learning_rate"):
            value = getattr(self, name)
            require(value is None or value > 0, f"--{name} must be > 0, got {value}")
        require(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}")
        require(self.val_fraction is None or 0 <= self.val_fraction < 1,
                f"--val_fraction must be in [0, 1), got {self.val_fraction}")
        require(self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


DEFAULT_VAL_FRACTION = 0.1


@dataclass
class Report:
    """What the trainer tells its caller every ``sample_every`` / ``eval_every`` steps and at the end."""

    step: int
    epoch: int
    train_loss: float          # nats/char of the last batch
    smooth_loss: float         # bias-corrected moving average of train_loss over ~1000 examples
    tokens_per_s: float        # training tokens per second since the previous report
    elapsed_s: float           # seconds spent in training steps (excludes validation, sampling, saving)
    wall_s: float = 0.0        # wall-clock seconds of the whole run so far, everything included
    val_loss: float | None = None   # nats/char on the validation text
    val_bpc: float | None = None
    val_ppl: float | None = None
    samples: list[str] = field(default_factory=list)

    def metrics(self) -> dict:
        """The JSON-able numbers (no samples, no empty validation fields): one line of ``--metrics_file``."""
        return {k: v for k, v in asdict(self).items() if k != "samples" and v is not None}


@dataclass
class Progress:
    """Sent after every step, for progress bars."""

    step: int
    total: int
    loss: float
    smooth_loss: float
    tokens_per_s: float
    elapsed_s: float


def evaluate(engine, batches) -> float:
    """Mean loss in nats/char over one pass of ``batches`` (no dropout), weighting batches by characters."""
    total, count, state = 0.0, 0, None
    for batch in batches:
        if state is None or batch.reset_state:
            state = engine.zero_state(batch.ids.shape[1])
        loss, state = engine.evaluate(batch, state)
        total, count = total + loss * batch.n_tokens, count + batch.n_tokens
    return total / count


class LineEvalBatches:
    """One pass over line examples in fixed order, padded in chunks (validation of ``lines`` corpora)."""

    def __init__(self, examples, batch_size: int = 256):
        self.chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]

    def __iter__(self):
        for chunk in self.chunks:
            ids, mask = pad_sequences([x for x, _ in chunk])
            targets, _ = pad_sequences([y for _, y in chunk])
            yield Batch(ids, targets, mask, True, 0)


class StreamEvalBatches:
    """One pass over a text as parallel streams with the state carried (validation of ``stream`` corpora)."""

    def __init__(self, ids: np.ndarray, seq_length: int, max_streams: int = 32):
        streams = max(1, min(max_streams, (len(ids) - 1) // seq_length))
        self.windows = StreamBatches(ids, streams, seq_length)
        self.n_windows = len(self.windows.inputs) // seq_length

    def __iter__(self):
        self.windows.load_state_dict({"epoch": 0, "position": 0})
        for _ in range(self.n_windows):
            yield next(self.windows)


class Trainer:
    """Holds everything a run needs -- data, parameters, optimizer state, RNGs, counters -- and steps it.

    ``on_report`` receives :class:`Report` objects, ``on_progress`` a :class:`Progress` after each step;
    ``notes`` collects remarks about the set-up (e.g. why there is no validation) for the caller to show.
    """

    def __init__(self, config: TrainConfig, on_report: Callable[[Report], None] | None = None,
                 on_progress: Callable[[Progress], None] | None = None):
        config.validate()
        self.config = config
        self.on_report = on_report or (lambda report: None)
        self.on_progress = on_progress or (lambda progress: None)
        self.notes: list[str] = []
        self.corpus = load_corpus(config.dataset, config.data_mode)
        self.tokenizer = CharTokenizer.fit(self.corpus.text)
        init_seed, data_seed, dropout_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.dropout_rng = np.random.default_rng(dropout_seed)
        self.sample_rng = np.random.default_rng(sample_seed)
        self.model_config = charmodel.ModelConfig(
            vocab_size=self.tokenizer.vocab_size, cell=config.cell, hidden_size=config.hidden_size,
            num_layers=config.num_layers, dropout=config.dropout)
        self.dtype = DTYPES[config.dtype]
        params = charmodel.init_params(self.model_config, np.random.default_rng(init_seed), self.dtype,
                                       config.init, config.forget_bias)
        # A framework engine runs its framework's optimizer: start from that framework's conventions (e.g.
        # Adam's eps_hat for Keras); --optimizer_options override them.
        options = {**engine_optimizer_options(config.engine, config.optimizer),
                   **parse_options(config.optimizer, config.optimizer_options)}
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate, **options)
        self.engine = engine_class(config.engine)(self.model_config, params, self.optimizer, config,
                                                  self.dropout_rng)
        train_text, val_text = self._split()
        self.batches = self._train_batches(train_text, np.random.default_rng(data_seed))
        self.val_batches = self._val_batches(val_text) if val_text else None
        self.total_steps = config.iterations if config.epochs is None else config.epochs * self.steps_per_epoch
        self.eval_every = config.eval_every or config.sample_every
        self.state = None
        self.step = 0
        # Smoothed loss: min-char-rnn's moving average (0.999 per example, so it spans ~1000 examples
        # whatever the batch size), bias-corrected as in Adam so that it starts at the first loss.
        self.smoothing = max(0.999 ** config.batch_size, 0.9)
        self.loss_average = 0.0
        self.elapsed_s = 0.0
        self.wall_before_run = 0.0          # wall seconds of earlier sessions of this run (resume)
        self.run_started = None
        self.first_loss = None
        self.best_val_loss = math.inf
        self.stop_requested = False
        self.saved: dict[str, Path] = {}   # tag -> JSON path of the last checkpoint written

    # ---- data ------------------------------------------------------------------------------------------
    def _split(self) -> tuple[str, str]:
        """Train and validation text. An explicit --val_fraction that cannot be honoured is an error; the
        default one is dropped with a note."""
        c = self.config
        fraction = DEFAULT_VAL_FRACTION if c.val_fraction is None else c.val_fraction
        if fraction == 0:
            return self.corpus.text, ""
        train_text, val_text = split_corpus(self.corpus, fraction)
        if self.corpus.mode == "lines":
            problem = None if val_text and train_text else "it has too few lines to hold out any"
        else:
            need = c.seq_length + 1
            problem = (None if len(val_text) >= need else
                       f"its validation part ({len(val_text)} characters) is shorter than one window "
                       f"(--seq_length {c.seq_length} + 1)")
        if problem is None:
            return train_text, val_text
        message = f"cannot split {self.corpus.name!r} into training and validation: {problem}"
        if c.val_fraction is not None:
            raise RnnlabError(f"{message}; use a larger --val_fraction, a smaller --seq_length, or --val_fraction 0")
        self.notes.append(f"{message}; training on all of it without validation")
        return self.corpus.text, ""

    def _examples(self, text: str):
        return [line_example(self.tokenizer, line) for line in Corpus("", text, "lines").examples()]

    def _train_batches(self, text: str, rng: np.random.Generator):
        c = self.config
        if self.corpus.mode == "lines":
            batches = LineBatches(self._examples(text), c.batch_size, rng, shuffle=not c.deterministic)
            self.steps_per_epoch = math.ceil(len(batches.examples) / batches.batch_size)
            return batches
        batches = StreamBatches(self.tokenizer.encode(text), c.batch_size, c.seq_length)
        self.steps_per_epoch = len(batches.inputs) // c.seq_length
        return batches

    def _val_batches(self, text: str):
        if self.corpus.mode == "lines":
            return LineEvalBatches(self._examples(text))
        return StreamEvalBatches(self.tokenizer.encode(text), self.config.seq_length)

    # ---- training --------------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """The current parameters in rnnlab's NumPy layout, whatever the engine."""
        return self.engine.numpy_params()

    def samples(self) -> list[str]:
        """``num_samples`` names (at most 100 characters each) for a lines corpus, else one text."""
        c = self.config
        names = self.corpus.mode == "lines"
        count, length = (c.num_samples, 100) if names else (1, c.sample_length)
        return [sample(self.params, self.model_config, self.tokenizer, self.sample_rng, length=length,
                       temperature=c.temperature, stop_at_newline=names) for _ in range(count)]

    def validation_loss(self) -> float | None:
        if self.val_batches is None:
            return None
        return evaluate(self.engine, self.val_batches)

    def learning_rate(self, step: int) -> float:
        """The learning rate used for ``step`` (1-based) under the configured schedule."""
        base = self.optimizer.lr
        floor = base / 20 if self.config.min_learning_rate is None else self.config.min_learning_rate
        return scheduled_learning_rate(self.config.lr_schedule, step, self.total_steps, base, floor)

    def advance(self):
        """Take the next batch and do one training step -> (loss, batch)."""
        if self.config.lr_schedule != "constant":
            self.engine.set_learning_rate(self.learning_rate(self.step + 1))
        batch = next(self.batches)
        if self.state is None or batch.reset_state:
            self.state = self.engine.zero_state(batch.ids.shape[1])
        loss, self.state = self.engine.train_step(batch, self.state)
        self.step += 1
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.loss_average = self.smoothing * self.loss_average + (1 - self.smoothing) * loss
        # char-rnn's guard, on the smoothed loss: one short window can be far above average by chance.
        if not math.isfinite(loss) or self.smooth_loss > 3 * self.first_loss:
            raise TrainingDiverged(
                f"training diverged at step {self.step}: loss {loss:.4g}, smoothed {self.smooth_loss:.4g} "
                f"(first loss {self.first_loss:.4g}); lower --learning_rate, or clip with --clip_value / --clip_norm")
        return loss, batch

    @property
    def smooth_loss(self) -> float:
        return self.loss_average / (1 - self.smoothing ** self.step) if self.step else math.nan

    def report(self, loss: float, epoch: int, tokens_per_s: float) -> Report:
        last = self.step == self.total_steps
        report = Report(self.step, epoch, loss, self.smooth_loss, tokens_per_s, self.elapsed_s)
        if last or self.step % self.eval_every == 0:
            val = self.validation_loss()
            if val is not None:
                report.val_loss, report.val_bpc, report.val_ppl = val, bits_per_char(val), perplexity(val)
                if val < self.best_val_loss:
                    self.best_val_loss = val
                    self.save("best")
        if last or self.step % self.config.sample_every == 0:
            report.samples = self.samples()
        report.wall_s = self.wall_s()
        return report

    def wall_s(self) -> float:
        """Wall-clock seconds of the run, across resumes, including validation and checkpoints."""
        now = 0.0 if self.run_started is None else time.perf_counter() - self.run_started
        return self.wall_before_run + now

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the current step (e.g. from a SIGINT handler)."""
        self.stop_requested = True

    def run(self) -> Report | None:
        """Train until ``total_steps`` are done (or a stop is requested); returns the last report.

        ``latest`` is saved every ``save_every`` steps and when the run ends; ``best`` on every new best
        validation loss (both only with a ``checkpoint_dir``)."""
        tokens, window_start = 0, time.perf_counter()
        step_start, report = window_start, None
        self.run_started = window_start
        save_every = self.config.save_every
        while self.step < self.total_steps and not self.stop_requested:
            loss, batch = self.advance()
            now = time.perf_counter()
            self.elapsed_s += now - step_start
            tokens += batch.n_tokens
            rate = tokens / max(now - window_start, 1e-9)
            self.on_progress(Progress(self.step, self.total_steps, loss, self.smooth_loss, rate, self.elapsed_s))
            if (self.step == self.total_steps or self.step % self.config.sample_every == 0
                    or self.step % self.eval_every == 0):
                report = self.report(loss, batch.epoch, rate)
                self.on_report(report)
                tokens, window_start = 0, time.perf_counter()
            if save_every and self.step % save_every == 0 and self.step < self.total_steps:
                self.save("latest")
            step_start = time.perf_counter()
        self.save("latest")
        self.wall_before_run, self.run_started = self.wall_s(), None
        return report

    # ---- checkpoints -----------------------------------------------------------------------------------
    def meta(self) -> dict:
        """Everything but the arrays that exact resume needs, as JSON-able data."""
        return {
            "step": self.step,
            "model": self.model_config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "train": asdict(self.config),
            "corpus": {"name": self.corpus.name, "mode": self.corpus.mode, "chars": len(self.corpus.text)},
            "optimizer": optimizer_config(self.optimizer),
            "data_position": self.batches.state_dict(),
            "rng": {"dropout": self.dropout_rng.bit_generator.state, "sample": self.sample_rng.bit_generator.state},
            "loss_average": self.loss_average,
            "first_loss": self.first_loss,
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "elapsed_s": self.elapsed_s,
            "wall_s": self.wall_s(),
        }

    def save(self, tag: str) -> Path | None:
        if self.config.checkpoint_dir is None or self.step == 0:
            return None
        hidden = None if self.state is None else self.engine.state_to_numpy(self.state)
        path = ckpt.save_checkpoint(self.config.checkpoint_dir, tag, self.meta(), self.engine.numpy_params(),
                                    self.engine.optimizer_state(), hidden)
        self.saved[tag] = path
        return path

    def restore(self, checkpoint: ckpt.Checkpoint) -> None:
        """Continue exactly where ``checkpoint`` stopped: weights, optimizer moments, data position, RNG
        streams, carried hidden state and counters."""
        meta = checkpoint.meta
        require(self.tokenizer == checkpoint.tokenizer,
                "the corpus' characters differ from the checkpoint's vocabulary: resume on the same --dataset")
        self.engine.load_state(checkpoint.params, checkpoint.optimizer_state)
        self.batches.load_state_dict(meta["data_position"])
        self.dropout_rng.bit_generator.state = meta["rng"]["dropout"]
        self.sample_rng.bit_generator.state = meta["rng"]["sample"]
        self.step = int(meta["step"])
        self.loss_average, self.first_loss = float(meta["loss_average"]), meta["first_loss"]
        self.best_val_loss = math.inf if meta["best_val_loss"] is None else float(meta["best_val_loss"])
        self.elapsed_s = float(meta["elapsed_s"])
        self.wall_before_run = float(meta.get("wall_s", 0.0))
        hidden = checkpoint.hidden_state
        self.state = None if hidden is None else self.engine.state_from_numpy(hidden)

    def describe(self) -> dict:
        """The run's settings, as they were resolved (for logs and checkpoints)."""
        return {"corpus": {"name": self.corpus.name, "mode": self.corpus.mode, "chars": len(self.corpus.text)},
                "model": self.model_config.to_dict(), "engine": self.config.engine, "optimizer": optimizer_config(self.optimizer),
                "total_steps": self.total_steps, "validation": self.val_batches is not None,
                "train": asdict(self.config)}
