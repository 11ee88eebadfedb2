"""One trainer for every cell, optimizer and data shape.

Each step follows the same flow, written out in :func:`rnnlab.engines.train_step`:

    forward -> loss (+ dy) -> project to da -> backward (BPTT) -> output-layer grads -> clip -> update

The trainer never prints: it hands :class:`Report` objects to a callback, and the CLI decides what to show.
Randomness comes from one seed, split into independent Generators for initialisation, data order, dropout
and sampling, so that e.g. sampling more often does not change the trained weights.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import checkpoint as ckpt
from . import model as charmodel
from .batches import Batch, LineBatches, StreamBatches, pad_sequences, set_generator_state
from .config import DTYPES, TrainConfig, resume_config
from .engines import engine_class
from .errors import RnnlabError, TrainingDiverged, require
from .files import DirectoryLock, prepare_directory
from .frameworks import engine_optimizer_options
from .losses import bits_per_char, perplexity
from .optim import make_optimizer, optimizer_config, parse_options, scheduled_learning_rate
from .sampling import sample
from .text import Corpus, CharTokenizer, line_example, load_corpus, split_corpus

__all__ = ["DTYPES", "Progress", "Report", "TrainConfig", "Trainer", "evaluate"]

DEFAULT_VAL_FRACTION = 0.1


def format_bytes(n: float) -> str:
    """1.5 GiB, 830 MiB; absurd sizes in powers of ten (2.4e+29 bytes)."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if size <= n < 1024 * 2 ** 40:
            return f"{n / size:,.1f} {unit}"
    return f"{n:.2g} bytes" if n >= 1024 * 2 ** 40 else f"{n / 2 ** 20:.2f} MiB"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable; else physical memory), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


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


def evaluate(engine, batches, should_stop: Callable[[], bool] = lambda: False) -> float | None:
    """Mean loss in nats/char over one pass of ``batches`` (no dropout), weighting batches by characters.
    None when ``should_stop()`` turns true part-way (a stop request abandons a long validation)."""
    total, count, state = 0.0, 0, None
    for batch in batches:
        if should_stop():
            return None
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
        self.config = config
        self.on_report = on_report or (lambda report: None)
        self.on_progress = on_progress or (lambda progress: None)
        self.notes: list[str] = config.notes()
        self.corpus = load_corpus(config.dataset, config.data_mode)
        self.tokenizer = CharTokenizer.fit(self.corpus.text)
        init_seed, data_seed, dropout_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.dropout_rng = np.random.default_rng(dropout_seed)
        self.sample_rng = np.random.default_rng(sample_seed)
        self.model_config = charmodel.ModelConfig(
            vocab_size=self.tokenizer.vocab_size, cell=config.cell, hidden_size=config.hidden_size,
            num_layers=config.num_layers, dropout=config.dropout)
        self.dtype = DTYPES[config.dtype]
        # A framework engine runs its framework's optimizer: start from that framework's conventions (e.g.
        # Adam's eps_hat for Keras); --optimizer_options override them.
        options = {**engine_optimizer_options(config.engine, config.optimizer),
                   **parse_options(config.optimizer, config.optimizer_options)}
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate, **options)
        self._check_memory()
        self.checkpoint_lock = None
        if config.checkpoint_dir is not None:                   # proven writable now, not after the run,
            prepare_directory(config.checkpoint_dir, "--checkpoint_dir")
            self.checkpoint_lock = DirectoryLock(config.checkpoint_dir)
            self.checkpoint_lock.acquire()                       # and ours alone until the run ends
            ckpt.clean_directory(config.checkpoint_dir)         # what a killed save left behind
        params = charmodel.init_params(self.model_config, np.random.default_rng(init_seed), self.dtype)
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
        lines = self.corpus.mode == "lines"
        unit = "lines" if lines else "characters"
        count = (lambda text: text.count("\n")) if lines else len
        need_train, need_val = (1, 1) if lines else (c.seq_length * c.batch_size + 1, c.seq_length + 1)
        if count(train_text) < need_train:
            problem, fix = (f"it leaves {count(train_text)} {unit} for training, fewer than {need_train}",
                            "a smaller --val_fraction")
        elif count(val_text) < need_val:
            problem = (f"its validation part ({count(val_text)} {unit}) is shorter than "
                       + ("one line" if lines else f"one window (--seq_length {c.seq_length} + 1)"))
            fix = "a larger --val_fraction" + ("" if lines else ", a smaller --seq_length")
        else:
            return train_text, val_text
        message = f"cannot split {self.corpus.name!r} into training and validation: {problem}"
        if c.val_fraction is not None:
            raise RnnlabError(f"{message}; use {fix}, or --val_fraction 0")
        self.notes.append(f"{message}; training on all of it without validation")
        return self.corpus.text, ""

    def _check_memory(self) -> None:
        """Refuse a model that cannot fit in memory before allocating any of it (a 10^8-unit layer would
        otherwise fail deep inside NumPy, after minutes)."""
        c = self.config
        steps = max(map(len, self.corpus.text.split("\n"))) + 1 if self.corpus.mode == "lines" else c.seq_length
        need = charmodel.training_bytes(self.model_config, c.batch_size, steps, np.dtype(self.dtype).itemsize,
                                        len(self.optimizer.init({})) - 1)
        have = available_memory()
        if have is not None and need > have:
            raise RnnlabError(
                f"training the {c.cell} {c.num_layers}x{c.hidden_size} model with batch {c.batch_size} needs about "
                f"{format_bytes(need)}, more than the {format_bytes(have)} of memory available: "
                "use a smaller --hidden_size, --num_layers, --batch_size or --seq_length")

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
        return evaluate(self.engine, self.val_batches, lambda: self.stop_requested)

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
        try:
            return self._run()
        finally:
            self.close()

    def close(self) -> None:
        """Give up the checkpoint folder's lock (``run`` does this when it ends; a later save takes it again)."""
        if self.checkpoint_lock is not None:
            self.checkpoint_lock.release()

    def _run(self) -> Report | None:
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
            "corpus": self.corpus.fingerprint(),
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
        """Write checkpoint ``tag`` (with a checkpoint_dir, after step 0). Non-finite parameters are never
        saved: that raises TrainingDiverged and the previous checkpoint stays."""
        if self.config.checkpoint_dir is None or self.step == 0:
            return None
        hidden = None if self.state is None else self.engine.state_to_numpy(self.state)
        held = self.checkpoint_lock is None or self.checkpoint_lock.held
        if not held:
            self.checkpoint_lock.acquire()
        try:
            path = ckpt.save_checkpoint(self.config.checkpoint_dir, tag, self.meta(), self.engine.numpy_params(),
                                        self.engine.optimizer_state(), hidden)
        finally:
            if not held:
                self.checkpoint_lock.release()
        self.saved[tag] = path
        return path

    @classmethod
    def resume(cls, checkpoint: ckpt.Checkpoint, overrides: dict | None = None, on_report=None, on_progress=None,
               new_data: bool = False) -> "Trainer":
        """A Trainer that continues ``checkpoint``'s run with the settings in ``overrides`` changed (those
        the user gave; :data:`config.LOCKED_ON_RESUME` ones may not change).

        It saves into ``overrides["checkpoint_dir"]`` if given, else into the checkpoint's own folder --
        never into a folder recorded inside the checkpoint. The data is the checkpoint's (its recorded
        absolute path, or a shipped corpus) unless ``overrides["dataset"]`` names another copy of it; with
        ``new_data`` a different text is allowed and its data position starts at 0."""
        overrides = dict(overrides or {})
        overrides.setdefault("checkpoint_dir", str(checkpoint.directory))
        recorded = checkpoint.meta["corpus"]["path"]
        if "dataset" not in overrides and recorded is not None:
            require(os.path.exists(recorded), f"the checkpoint's dataset {recorded} no longer exists: give "
                                              "--dataset with the same text")
            overrides["dataset"] = recorded
        config, notes = resume_config(checkpoint.meta["train"], overrides)
        trainer = cls(config, on_report, on_progress)
        trainer.restore(checkpoint, new_data)
        trainer.notes.extend(notes)
        return trainer

    def restore(self, checkpoint: ckpt.Checkpoint, new_data: bool = False) -> None:
        """Continue exactly where ``checkpoint`` stopped: weights, optimizer moments, data position, RNG
        streams, carried hidden state and counters -- after checking that the checkpoint fits this run (the
        same model, vocabulary and data; ``new_data`` allows other text, restarting its data position)."""
        meta, where = checkpoint.meta, checkpoint.path
        saved_model = checkpoint.model_config
        differ = [f"{k} {getattr(saved_model, k)} (this run: {v})" for k, v in self.model_config.to_dict().items()
                  if getattr(saved_model, k) != v]
        require(not differ, f"checkpoint {where} holds another model: {', '.join(differ)}; resume with the "
                            "checkpoint's settings")
        charmodel.check_params(self.model_config, checkpoint.params)
        require(self.tokenizer == checkpoint.tokenizer,
                f"the corpus' characters differ from checkpoint {where}'s vocabulary: resume on the same --dataset")
        same_data = (meta["corpus"]["sha256"], meta["corpus"]["bytes"]) == (self.corpus.sha256, self.corpus.n_bytes)
        require(same_data or new_data,
                f"{self.corpus.name} is not the text checkpoint {where} was trained on (its size and SHA-256 "
                "differ): resume on the same data, or add --new_data to continue on this text from its start")
        slots = sorted(k for k in self.optimizer.init({}) if k != "step")
        require(sorted(k for k in checkpoint.optimizer_state if k != "step") == slots,
                f"checkpoint {where} has optimizer state {sorted(checkpoint.optimizer_state)}, "
                f"{self.config.optimizer} needs {slots}")
        hidden = checkpoint.hidden_state
        if hidden is not None and self.corpus.mode == "stream" and hidden[0][0].shape[0] != self.config.batch_size:
            raise RnnlabError(f"checkpoint {where} carries a state for {hidden[0][0].shape[0]} streams, this run "
                              f"has --batch_size {self.config.batch_size}: the checkpoint is damaged")
        self.engine.load_state(checkpoint.params, checkpoint.optimizer_state)
        if same_data:
            self.batches.load_state_dict(meta["data_position"])
        else:
            hidden = None                                        # a new text starts from its beginning
            self.notes.append(f"continuing on new data ({self.corpus.name}) from its start")
        set_generator_state(self.dropout_rng, meta["rng"]["dropout"])
        set_generator_state(self.sample_rng, meta["rng"]["sample"])
        self.step = int(meta["step"])
        self.loss_average, self.first_loss = float(meta["loss_average"]), meta["first_loss"]
        self.best_val_loss = math.inf if meta["best_val_loss"] is None else float(meta["best_val_loss"])
        self.elapsed_s = float(meta["elapsed_s"])
        self.wall_before_run = float(meta["wall_s"])
        self.state = None if hidden is None else self.engine.state_from_numpy(hidden)

    def describe(self) -> dict:
        """The run's settings, as they were resolved (for logs and checkpoints)."""
        return {"corpus": self.corpus.fingerprint(),
                "model": self.model_config.to_dict(), "engine": self.config.engine, "optimizer": optimizer_config(self.optimizer),
                "total_steps": self.total_steps, "validation": self.val_batches is not None,
                "train": asdict(self.config)}
