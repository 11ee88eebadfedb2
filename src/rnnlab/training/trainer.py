"""One trainer for every cell, optimizer and data shape.

Each step follows the same flow, written out in :func:`rnnlab.nn.model.train_step`:

    forward -> loss (+ dy) -> project to da -> backward (BPTT) -> output-layer grads -> clip -> update

:meth:`Trainer.run` is the whole loop, on one screen: step, report, keep the best, save. The rest of the
work lives elsewhere: what is learnt (a language model or a translator: its data, model, samples) in
``tasks.py``, the data (split, batches, the validation budget) in ``splits.py``, the corpus and its cache
in ``corpus.py``, the settings and their checks in ``config.py``, the run's changing state
(:class:`checkpoint.RunState`) and its persistence in ``checkpoint.py``.

Two trainer-side helpers of generalisation: weight averaging (``--ema_decay``, ``averaging.py``: validation,
the best checkpoint and samples use the average) and early stopping (``--patience``: the run ends after N
validations without a new best, its counter part of the RunState so that it resumes).

The trainer never prints: it hands :class:`Report` objects to a callback, and the CLI decides what to show.
Randomness comes from one seed, split into independent Generators for initialisation, data order, dropout
and sampling, so that e.g. sampling more often does not change the trained weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import files
from ..data.batches import set_generator_state
from ..errors import require
from ..frameworks import engine_optimizer_options
from ..memory import format_bytes, require_memory
from ..nn.losses import bits_per_char, perplexity
from ..nn.optim import make_optimizer, optimizer_config, parse_options, scheduled_learning_rate
from . import checkpoint as ckpt
from . import distributed
from .averaging import WeightAverage
from .checkpoint import RunState
from .config import DTYPES, TrainConfig, resume_config
from .engines import EngineSettings
from .health import LossTracker, health_warnings, state_max
from .tasks import make_task

__all__ = ["DTYPES", "Progress", "Report", "RunState", "TrainConfig", "Trainer", "evaluate", "format_bytes"]


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
    val_tokens: int | None = None   # characters the validation loss was measured on
    val_accuracy: float | None = None   # translator: exact-match accuracy on the validation pairs (greedy)
    test_accuracy: float | None = None  # translator: the same on the test pairs, in the final report
    state_max: list[float] | None = None  # the largest |state| of each layer's carried state (health.py)
    warnings: list[str] = field(default_factory=list)   # the health guard's, once per kind and run
    samples: list[str] = field(default_factory=list)

    def metrics(self) -> dict:
        """The JSON-able numbers (no samples, no empty validation fields): one line of ``--metrics_file``."""
        return {k: v for k, v in asdict(self).items() if k not in ("samples", "warnings") and v is not None}


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
    losses, count, state = [], 0, None
    for batch in batches:
        if should_stop():
            return None
        if state is None or batch.reset_state:
            state = engine.zero_state(batch.ids.shape[1])
        loss, state = engine.evaluate(batch, state)     # a float, or a device scalar: read at the end, not per batch
        losses.append((loss, batch.n_tokens))
        count += batch.n_tokens
    return sum(float(loss) * n for loss, n in losses) / count


class Trainer:
    """Holds everything a run needs -- data, parameters, optimizer state, RNGs, counters -- and steps it.

    ``on_report`` receives :class:`Report` objects, ``on_progress`` a :class:`Progress` after each step,
    ``on_load(done, total)`` the progress of encoding a large corpus; ``notes`` collects remarks about the
    set-up (e.g. why there is no validation) for the caller to show.

    Started by torchrun, it is one of several processes (``distributed.py``): each runs this same loop on
    the same data; rank 0 alone owns the checkpoint folder and samples (``world.writes``).
    """

    def __init__(self, config: TrainConfig, on_report: Callable[[Report], None] | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 on_load: Callable[[int, int], None] | None = None, overwrite: bool = False,
                 continues: ckpt.Checkpoint | None = None):
        self.config = config
        self.world = distributed.join(config.device)            # one process, or one of torchrun's
        require(self.world.size == 1 or config.engine == "torch",
                f"data-parallel training ({self.world.size} processes from torchrun) runs on the torch engine: "
                "add --engine torch")
        self.folder = None                                       # rank 0 owns the checkpoint folder
        if config.checkpoint_dir is not None and self.world.writes:
            self.folder = ckpt.CheckpointFolder(config.checkpoint_dir, overwrite=overwrite, continues=continues)
            self.folder.check()                                  # another run's folder fails before the data loads
        self.on_report = on_report or (lambda report: None)
        self.on_progress = on_progress or (lambda progress: None)
        self.task = make_task(config, on_load, verify=continues is not None)   # a language model or a translator
        self.tokenizer = self.task.tokenizer
        init_seed, data_seed, dropout_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.dropout_rng = np.random.default_rng(dropout_seed)
        self.sample_rng = np.random.default_rng(sample_seed)
        self.model_config = self.task.model_config(config)
        self.dtype = DTYPES[config.dtype]
        # A framework engine runs its framework's optimizer: start from that framework's conventions (e.g.
        # Adam's eps_hat for Keras); --optimizer_options override them.
        options = {**engine_optimizer_options(config.engine, config.optimizer),
                   **parse_options(config.optimizer, config.optimizer_options)}
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate, **options)
        self.data = self.task.data(config, np.random.default_rng(data_seed))
        self.notes: list[str] = config.notes() + self.data.notes
        self._check_memory()
        self.metrics = None                                      # --metrics_file, rank 0's (files.Appender)
        writes_metrics = config.metrics_file is not None and self.world.writes
        if writes_metrics:                                       # checked now that the inputs are known, before
            files.check_output(config.metrics_file, files.METRICS, "--metrics_file", overwrite)   # anything is made
        if self.folder is not None:       # proven writable now, not after the run, and ours alone until it ends
            self.folder.open()
        if writes_metrics:
            self.metrics = files.Appender(config.metrics_file, files.METRICS, "--metrics_file", overwrite)
        params = self.task.init_params(self.model_config, np.random.default_rng(init_seed), self.dtype, config)
        self.engine = self.task.engine_class(config.engine)(self.model_config, params, self.optimizer,
                                                            EngineSettings.of(config), self.dropout_rng)
        self.average = None if config.ema_decay is None else WeightAverage(config.ema_decay)
        require(self.average is None or getattr(self.engine.device, "type", self.engine.device) == "cpu",
                f"--ema_decay averages the weights on the host after every step, which would make the host wait "
                f"for {self.engine.device} at every step: not yet on a GPU (use --device cpu, or no --ema_decay)")
        if config.patience is not None and self.val_batches is None:
            self.notes.append(f"--patience {config.patience} needs validation, and this run has none: it trains "
                              "all its steps")
        self.total_steps = config.iterations if config.epochs is None else config.epochs * self.data.steps_per_epoch
        self.eval_every = config.eval_every or config.sample_every
        self.run_state = RunState()
        self.losses = LossTracker(config.batch_size)   # smoothed loss, divergence guard (of run_state)
        self.state = None                  # the hidden state carried into the next batch
        self.wall_before_run, self.run_started = 0.0, None
        self.stop_requested = False        # asked in this process (a signal)
        self.stop_agreed = False           # asked in any process, as of the last read_losses (several processes)
        self.warned: set[str] = set()      # health warnings already given (one per kind and run)
        self.saved: dict[str, Path] = {}   # tag -> JSON path of the last checkpoint written

    def _check_memory(self) -> None:
        """Refuse a model that cannot fit in memory before allocating any of it (a 10^8-unit layer would
        otherwise fail deep inside NumPy, after minutes)."""
        c = self.config
        batch = self.data.batches.batch_size if self.task.mode != "stream" else c.batch_size
        need = self.task.training_bytes(self.model_config, batch, self.data.longest_example,
                                        np.dtype(self.dtype).itemsize, len(self.optimizer.init({})) - 1)
        require_memory(need, f"training the {c.cell} {c.num_layers}x{c.hidden_size} model with batch {batch}",
                       "use a smaller --hidden_size, --num_layers, --batch_size or --seq_length")

    # ---- the loop --------------------------------------------------------------------------------------
    def run(self) -> Report | None:
        """Train until ``total_steps`` are done (or a stop is requested); returns the last report.

        ``latest`` is saved every ``save_every`` steps and when the run ends; ``best`` on every new best
        validation loss (both only with a ``checkpoint_dir``)."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> Report | None:
        c, report = self.config, None
        tokens, window_start = 0, time.perf_counter()
        self.run_started = step_start = window_start
        while self.step < self.total_steps and not self.stopping and not self.stopped_early:
            _, batch = self.advance()                                          # one training step
            due = self.step == self.total_steps or self.step % c.sample_every == 0 or self.step % self.eval_every == 0
            if due:
                self.read_losses()                                             # (waits for a device's steps)
            now = time.perf_counter()
            self.run_state.elapsed_s += now - step_start
            tokens += batch.n_tokens
            rate = tokens / max(now - window_start, 1e-9)
            self.on_progress(Progress(self.step, self.total_steps, self.losses.last, self.smooth_loss, rate,
                                      self.run_state.elapsed_s))
            if due:
                report = self.report(self.losses.last, batch.epoch, rate)       # validate, sample
                self.keep_if_best(report)
                if self.metrics is not None:
                    self.metrics.write(json.dumps(report.metrics()) + "\n")
                self.on_report(report)
                tokens, window_start = 0, time.perf_counter()
            if c.save_every and self.step % c.save_every == 0 and self.step < self.total_steps:
                self.save("latest")
            step_start = time.perf_counter()
        self.save("latest")
        self.wall_before_run, self.run_started = self.wall_s(), None
        return report

    @property
    def step(self) -> int:
        return self.run_state.step

    @property
    def smooth_loss(self) -> float:
        """The smoothed training loss over the losses read so far (:meth:`health.LossTracker.smooth`)."""
        return self.losses.smooth(self.run_state)

    @property
    def corpus(self):
        """A language model's corpus (corpus.Corpus); a translator's data is ``task.pairs``."""
        return self.task.corpus

    @property
    def batches(self):
        return self.data.batches

    @property
    def val_batches(self):
        return self.data.val_batches

    @property
    def params(self) -> dict:
        """The current parameters in rnnlab's NumPy layout, whatever the engine."""
        return self.engine.numpy_params()

    @property
    def weights(self) -> dict:
        """The weights the model is evaluated, kept and sampled with: the average (``--ema_decay``) once it
        holds a step, else the parameters."""
        return self.params if self.average is None or self.average.weights is None else self.average.weights

    @contextlib.contextmanager
    def evaluating(self):
        """The engine computes with :attr:`weights` inside (the average swapped in), its parameters after."""
        if self.average is None or self.average.weights is None:
            yield
            return
        previous = self.engine.use_params(self.average.weights)
        try:
            yield
        finally:
            self.engine.use_params(previous)

    @property
    def stopped_early(self) -> bool:
        """--patience validations in a row have passed without a new best: the run is over."""
        patience = self.config.patience
        return patience is not None and self.run_state.evals_since_best >= patience

    def learning_rate(self, step: int) -> float:
        """The learning rate used for ``step`` (1-based) under the configured schedule."""
        base = self.optimizer.lr
        floor = base / 20 if self.config.min_learning_rate is None else self.config.min_learning_rate
        return scheduled_learning_rate(self.config.lr_schedule, step, self.total_steps, base, floor)

    def advance(self):
        """Take the next batch and do one training step -> (loss, batch). The loss is a float, or for an
        engine on a GPU a device scalar (``float(loss)`` waits for the device): the Trainer reads those
        every ``engine.loss_read_every`` steps, see :meth:`read_losses`."""
        if self.config.lr_schedule != "constant":
            self.engine.set_learning_rate(self.learning_rate(self.step + 1))
        batch = next(self.batches)
        if self.state is None or batch.reset_state:
            self.state = self.engine.zero_state(batch.ids.shape[1])
        loss, self.state = self.engine.train_step(batch, self.state)
        if self.average is not None:
            self.average.update(self.engine.numpy_params())
        self.run_state.step += 1
        self.losses.add(loss)
        if self.step % self.engine.loss_read_every == 0:
            self.read_losses()
        return loss, batch

    def read_losses(self) -> None:
        """Read the losses of the steps so far (:meth:`health.LossTracker.read`: the smoothed loss and the
        divergence guard).

        The NumPy engine and the torch engine on the CPU hand over floats and this runs after every step, as
        the guard always did. A GPU engine's losses stay on the device and are read here together every
        ``loss_read_every`` steps and before every report and save, so the host never waits for the
        device in between; a divergence is then caught at most that many steps late, and nothing it
        produced is saved (checkpoints refuse non-finite arrays). With several processes this is also where
        they agree on a stop request, so that all stop after the same step."""
        self.losses.read(self.run_state)
        if self.world.size > 1:
            self.stop_agreed = self.world.any(self.stop_requested)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the current step (e.g. from a SIGINT handler)."""
        self.stop_requested = True

    @property
    def stopping(self) -> bool:
        """Whether the loop stops now: a stop request -- with several processes, one that they have all
        agreed on (at the last read_losses), so that no process waits for the others in a collective."""
        return self.stop_requested if self.world.size == 1 else self.stop_agreed

    def wall_s(self) -> float:
        """Wall-clock seconds of the run, across resumes, including validation and checkpoints."""
        now = 0.0 if self.run_started is None else time.perf_counter() - self.run_started
        return self.wall_before_run + now

    # ---- reporting -------------------------------------------------------------------------------------
    def report(self, loss: float, epoch: int, tokens_per_s: float) -> Report:
        """The numbers of this step: training loss, validation (every ``eval_every`` steps and at the end)
        and samples (every ``sample_every`` steps and at the end). Reports only: saves nothing."""
        last = self.step == self.total_steps
        report = Report(self.step, epoch, loss, self.smooth_loss, tokens_per_s, self.run_state.elapsed_s)
        if last or self.step % self.eval_every == 0:
            val = self.validation_loss()
            if val is not None:
                report.val_loss, report.val_bpc, report.val_ppl = val, bits_per_char(val), perplexity(val)
                report.val_tokens = self.data.val_tokens
                for name, value in self.task.accuracy(self.weights, self.model_config, last).items():
                    setattr(report, name, value)            # a translator's exact-match accuracy
        if (last or self.step % self.config.sample_every == 0) and not self.stopping and self.world.writes:
            report.samples = self.samples()
        if self.state is not None:
            report.state_max = state_max(self.engine.state_to_numpy(self.state))
        report.warnings = health_warnings(self.step, self.total_steps, report.val_loss, report.smooth_loss,
                                          self.task.vocab_size(self.model_config), report.state_max or [],
                                          self.warned)
        report.wall_s = self.wall_s()
        return report

    def validation_loss(self) -> float | None:
        """Mean nats/char on the validation batches, of :attr:`weights` (the average, with --ema_decay)."""
        if self.val_batches is None:
            return None
        with self.evaluating():
            return evaluate(self.engine, self.val_batches, lambda: self.stopping)

    def samples(self) -> list[str]:
        """What the model makes now: names or a text (language model), translations (translator)."""
        return self.task.samples(self.weights, self.model_config, self.sample_rng, self.config)

    def keep_if_best(self, report: Report) -> None:
        """A new best validation loss: remember it and save ``best``; else count one more validation without
        one (``--patience``)."""
        run, best = self.run_state, self.run_state.best_val_loss
        if report.val_loss is None:
            return
        if best is None or report.val_loss < best:
            run.best_val_loss, run.best_step, run.evals_since_best = report.val_loss, self.step, 0
            self.save("best")
        else:
            run.evals_since_best += 1

    def describe(self) -> dict:
        """The run's settings, as they were resolved (for logs)."""
        return {"corpus": self.task.fingerprint(), "task": self.task.kind, "model": self.model_config.to_dict(),
                "engine": self.config.engine, "device": str(self.engine.device), "processes": self.world.size,
                "optimizer": optimizer_config(self.optimizer),
                "total_steps": self.total_steps, "validation": self.val_batches is not None,
                "val_tokens": self.data.val_tokens, "train": self.config.to_dict()}

    # ---- checkpoints -----------------------------------------------------------------------------------
    def meta(self) -> dict:
        """The checkpoint document: what the run is (model, tokenizer, settings, corpus, optimizer) and
        where it stands (the whole RunState), everything but the arrays."""
        run = self.run_state
        run.data_position = self.batches.state_dict()
        run.rng = {"dropout": self.dropout_rng.bit_generator.state, "sample": self.sample_rng.bit_generator.state}
        run.wall_s = self.wall_s()
        run.ema_steps = 0 if self.average is None else self.average.steps
        return {"task": self.task.kind, "model": self.model_config.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                "train": self.config.to_dict(), "corpus": self.task.fingerprint(),
                "optimizer": optimizer_config(self.optimizer), **run.to_dict()}

    def save(self, tag: str) -> Path | None:
        """Write checkpoint ``tag`` (with a checkpoint_dir, after step 0). Non-finite parameters are never
        saved: that raises TrainingDiverged and the previous checkpoint stays."""
        if self.config.checkpoint_dir is None or self.step == 0:
            return None
        self.read_losses()                                       # the smoothed loss is part of the checkpoint
        hidden = None if self.state is None else self.engine.state_to_numpy(self.state)  # (gathered: all ranks)
        if self.folder is None:                                  # rank 0 owns the checkpoint folder
            return None
        ema = None if self.average is None or not self.average.steps else self.average.weights
        path = self.folder.save(tag, self.meta(), self.engine.numpy_params(), self.engine.optimizer_state(), hidden,
                                ema)
        self.saved[tag] = path
        return path

    def close(self) -> None:
        """Give up the checkpoint folder's lock (``run`` does this when it ends; a later save takes it again)."""
        if self.folder is not None:
            self.folder.close()
        if self.metrics is not None:
            self.metrics.close()

    @classmethod
    def resume(cls, checkpoint: ckpt.Checkpoint, overrides: dict | None = None, on_report=None, on_progress=None,
               new_data: bool = False, on_load=None, overwrite: bool = False) -> Trainer:
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
        trainer = cls(config, on_report, on_progress, on_load, overwrite=overwrite, continues=checkpoint)
        trainer.restore(checkpoint, new_data)
        trainer.notes.extend(notes)
        return trainer

    def restore(self, checkpoint: ckpt.Checkpoint, new_data: bool = False) -> None:
        """Continue exactly where ``checkpoint`` stopped: weights, optimizer moments, data position, RNG
        streams, carried hidden state and counters -- after checking that the checkpoint fits this run (the
        same model, vocabulary and data; ``new_data`` allows other text, restarting its data position)."""
        same_data = checkpoint.check_fits(self.task, self.model_config, self.tokenizer, self.optimizer,
                                          self.config.batch_size, self.losses.smoothing, new_data)
        run, hidden = checkpoint.run_state, checkpoint.hidden_state
        self.engine.load_state(checkpoint.params, checkpoint.optimizer_state)
        if same_data:
            self.batches.load_state_dict(run.data_position)
        else:
            hidden = None                                        # a new text starts from its beginning
            self.notes.append(f"continuing on new data ({self.task.name}) from its start")
        set_generator_state(self.dropout_rng, run.rng["dropout"])
        set_generator_state(self.sample_rng, run.rng["sample"])
        if self.average is not None:
            self.average.load(checkpoint.ema, run.ema_steps)
            if checkpoint.ema is None:
                self.notes.append(f"weight averaging starts now, at step {run.step:,} (--ema_decay "
                                  f"{self.config.ema_decay}); the best validation so far was the raw weights'")
        elif checkpoint.ema is not None:
            self.notes.append("weight averaging is off from now on: the average of the checkpoint is dropped, and "
                              "validation measures the weights themselves")
        self.run_state = run
        self.wall_before_run = run.wall_s
        self.state = None if hidden is None else self.engine.state_from_numpy(hidden)
