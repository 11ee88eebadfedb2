"""One trainer for every cell, optimizer and data shape.

Each step follows the same flow, written out in :func:`train_step`:

    forward -> loss (+ dy) -> project to da -> backward (BPTT) -> output-layer grads -> clip -> update

The trainer never prints: it hands :class:`Report` objects to a callback, and the CLI decides what to show.
Randomness comes from one seed, split into independent Generators for initialisation, data order, dropout
and sampling, so that e.g. sampling more often does not change the trained weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from . import model as charmodel
from .batches import LineBatches, StreamBatches
from .errors import RnnlabError, require
from .optim import clip_by_global_norm, clip_by_value, make_optimizer, optimizer_config
from .sampling import sample
from .text import CharTokenizer, line_example, load_corpus

DTYPES = {"float32": np.float32, "float64": np.float64}


class TrainingDiverged(RnnlabError):
    """The loss became nan/inf or grew past 3x its first value (char-rnn's rule)."""


@dataclass
class TrainConfig:
    dataset: str = "dinos"
    data_mode: str = "auto"             # auto | lines | stream (see text.py)
    cell: str = "rnn"
    hidden_size: int = 50
    num_layers: int = 1
    dropout: float = 0.0
    iterations: int = 22001
    batch_size: int = 1
    seq_length: int = 25
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's default (optim.py)
    clip_value: float | None = 5.0      # clip every gradient entry to [-c, c]; None: off
    clip_norm: float | None = None      # clip the global gradient norm; None: off
    temperature: float = 1.0
    sample_every: int = 2000
    num_samples: int = 7                # names per report for ``lines`` corpora
    sample_length: int = 200            # characters per sample for ``stream`` corpora
    seed: int = 0
    dtype: str = "float32"

    def validate(self) -> None:
        require(self.iterations > 0, f"--iterations must be > 0, got {self.iterations}")
        require(self.learning_rate is None or self.learning_rate > 0,
                f"--learning_rate must be > 0, got {self.learning_rate}")
        require(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}")
        require(self.sample_every > 0, f"--sample_every must be > 0, got {self.sample_every}")
        require(self.seq_length > 0, f"--seq_length must be > 0, got {self.seq_length}")
        require(self.clip_value is None or self.clip_value > 0, f"--clip_value must be > 0, got {self.clip_value}")
        require(self.clip_norm is None or self.clip_norm > 0, f"--clip_norm must be > 0, got {self.clip_norm}")
        require(self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass
class Report:
    """What the trainer tells its caller every ``sample_every`` steps (and at the end)."""

    step: int
    epoch: int
    train_loss: float          # nats/char of the last batch
    smooth_loss: float         # exponential moving average of train_loss (min-char-rnn's 0.999 / 0.001)
    tokens_per_s: float        # since the previous report
    elapsed_s: float
    samples: list[str] = field(default_factory=list)

    def metrics(self) -> dict:
        """The JSON-able numbers (no samples): one line of ``--metrics_file``."""
        return {k: v for k, v in asdict(self).items() if k != "samples"}


def train_step(params, model_config, optimizer, opt_state, batch, state, clip_value=None, clip_norm=None,
               dropout_rng=None):
    """One optimisation step on one batch -> (loss, final state). The whole flow, in order."""
    loss, grads, state = charmodel.loss_and_grads(                 # forward, loss (+dy), da, BPTT,
        params, model_config, batch.ids, batch.targets, state,     # output-layer grads
        mask=batch.mask, dropout_rng=dropout_rng)
    if clip_value is not None:                                     # clip
        clip_by_value(grads, clip_value)
    if clip_norm is not None:
        clip_by_global_norm(grads, clip_norm)
    optimizer.update(params, grads, opt_state)                     # update
    return loss, state


class Trainer:
    def __init__(self, config: TrainConfig, callback: Callable[[Report], None] | None = None):
        config.validate()
        self.config, self.callback = config, callback or (lambda report: None)
        self.corpus = load_corpus(config.dataset, config.data_mode)
        self.tokenizer = CharTokenizer.fit(self.corpus.text)
        init_seed, data_seed, dropout_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.dropout_rng = np.random.default_rng(dropout_seed)
        self.sample_rng = np.random.default_rng(sample_seed)
        self.model_config = charmodel.ModelConfig(
            vocab_size=self.tokenizer.vocab_size, cell=config.cell, hidden_size=config.hidden_size,
            num_layers=config.num_layers, dropout=config.dropout)
        self.dtype = DTYPES[config.dtype]
        self.params = charmodel.init_params(self.model_config, np.random.default_rng(init_seed), self.dtype)
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate)
        self.opt_state = self.optimizer.init(self.params)
        self.batches = self._make_batches(np.random.default_rng(data_seed))
        self.state = None
        self.step = 0
        self.smooth_loss = math.log(self.tokenizer.vocab_size)  # the loss of a uniform guess
        self.elapsed_s = 0.0
        self.first_loss = None

    def _make_batches(self, rng: np.random.Generator):
        if self.corpus.mode == "lines":
            examples = [line_example(self.tokenizer, line) for line in self.corpus.examples()]
            return LineBatches(examples, self.config.batch_size, rng)
        return StreamBatches(self.tokenizer.encode(self.corpus.text), self.config.batch_size,
                             self.config.seq_length)

    def samples(self) -> list[str]:
        c = self.config
        if self.corpus.mode == "lines":
            return [sample(self.params, self.model_config, self.tokenizer, self.sample_rng, length=100,
                           temperature=c.temperature, stop_at_newline=True) for _ in range(c.num_samples)]
        return [sample(self.params, self.model_config, self.tokenizer, self.sample_rng,
                       length=c.sample_length, temperature=c.temperature)]

    def advance(self):
        """Take the next batch and do one training step -> (loss, batch)."""
        c = self.config
        batch = next(self.batches)
        if self.state is None or batch.reset_state:
            self.state = charmodel.zero_state(self.model_config, batch.ids.shape[1], self.dtype)
        loss, self.state = train_step(self.params, self.model_config, self.optimizer, self.opt_state, batch,
                                      self.state, c.clip_value, c.clip_norm, self.dropout_rng)
        self.step += 1
        self.first_loss = loss if self.first_loss is None else self.first_loss
        if not math.isfinite(loss) or loss > 3 * self.first_loss:
            raise TrainingDiverged(
                f"training diverged at step {self.step}: loss {loss:.4g} (first loss {self.first_loss:.4g}); "
                "lower --learning_rate, or clip with --clip_value / --clip_norm")
        self.smooth_loss = 0.999 * self.smooth_loss + 0.001 * loss
        return loss, batch

    def run(self) -> Report:
        """Train until ``iterations`` steps are done; returns the last report."""
        c = self.config
        tokens, started = 0, time.perf_counter()
        report = None
        while self.step < c.iterations:
            loss, batch = self.advance()
            tokens += batch.n_tokens
            if self.step % c.sample_every == 0 or self.step == c.iterations:
                now = time.perf_counter()
                self.elapsed_s += now - started
                report = Report(self.step, batch.epoch, loss, self.smooth_loss, tokens / max(now - started, 1e-9),
                                self.elapsed_s, self.samples())
                self.callback(report)
                tokens, started = 0, time.perf_counter()
        return report

    def describe(self) -> dict:
        """The run's settings, as they were resolved (for logs and checkpoints)."""
        return {"corpus": {"name": self.corpus.name, "mode": self.corpus.mode, "chars": len(self.corpus.text)},
                "model": self.model_config.to_dict(), "optimizer": optimizer_config(self.optimizer),
                "train": asdict(self.config)}
