"""The training configuration: one dataclass, validated once, where it is built.

``TrainConfig`` holds every setting of a run. It checks itself in ``__post_init__`` -- every field, with a
message that names the field the way the command line spells it (``--hidden_size must be > 0``) -- so a
config that exists is a valid one, whether the CLI built it, a script did, or a checkpoint was read back.

Which settings may change when a run is resumed is also decided here (:data:`LOCKED_ON_RESUME` and
:func:`resume_config`), so the library applies the same policy whoever calls it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

from .block import BLOCKS
from .cells import CELLS
from .engines import DEVICE_PATTERN, ENGINES, PRECISIONS, require_cpu_unless_torch
from .errors import RnnlabError, require
from .initializers import INIT_SCHEMES
from .norms import NORMS
from .optim import LR_SCHEDULES, OPTIMIZERS, make_optimizer, parse_options
from .schema import SchemaError, dataclass_schema
from .seq2seq import ATTENTION_KINDS
from .text import DATA_MODES

DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_SEED = 2 ** 63 - 1


@dataclass
class TrainConfig:
    dataset: str = "dinos"
    data_mode: str = "auto"             # auto | lines | stream (see text.py)
    cell: str = "rnn"
    hidden_size: int = 50
    num_layers: int = 1
    dropout: float = 0.0
    block: str = "plain"                # plain: layers stacked directly | residual: pre-norm, residual, FFN (block.py)
    norm: str = "rms"                   # residual block: rms | layer
    ffn_mult: int = 4                   # residual block: feed-forward width in units of hidden_size
    init: str = "rnnlab"                # initialisation scheme: rnnlab | pytorch | keras | blockorth (initializers.py)
    forget_bias: float | None = None    # LSTM forget-gate bias at the start; None: the scheme's (rnnlab: 0)
    attention: str = "additive"         # translator (pairs data): additive | dot | general | scaled_dot | none
    encoder_hidden: int | None = None   # translator: units per encoder direction; None: hidden_size / 2
    attention_size: int = 64            # translator: the additive score's width
    max_output_length: int | None = None  # translator: decoding stops here; None: the longest target + 4
    iterations: int = 22001
    epochs: int | None = None           # when set, train this many passes over the data (overrides iterations)
    batch_size: int = 1
    seq_length: int = 25
    deterministic: bool = False         # fixed example order (no reshuffle); with the fixed --seed
    engine: str = "numpy"               # numpy | torch | keras-fit | keras-tape | keras-class (engines.py)
    device: str = "auto"                # torch engine: auto (CUDA if there is one) | cpu | cuda | cuda:N | mps
    precision: str = "fp32"             # torch engine: fp32 | bf16 | fp16 (torch.autocast; docs/gpu.md)
    threads: int | None = None          # numpy engine: threads per step (parallel.py); None: the cores available
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's default (optim.py)
    optimizer_options: str = ""         # e.g. "form=ema,mu=0.95" or "eps_hat=true" (optim.parse_options)
    lr_schedule: str = "constant"       # constant | cosine (decays to min_learning_rate at the last step)
    min_learning_rate: float | None = None  # cosine's floor; None: 1/20 of the learning rate
    clip_value: float | None = 5.0      # clip every gradient entry to [-c, c]; None: off
    clip_norm: float | None = None      # clip the global gradient norm; None: off
    val_fraction: float | None = None   # None: 0.1 if the corpus is big enough, else no validation
    eval_every: int | None = None       # None: with every report (--sample_every)
    eval_tokens: int | None = 262_144   # validate on the first N held-out characters (splits.py); None: all
    cache_dir: str | None = None        # encoded large corpora (corpus.py); None: the per-user cache folder
    checkpoint_dir: str | None = None   # where latest.json / best.json (+ arrays) are written
    save_every: int | None = None       # save ``latest`` every N steps (it is always saved at the end)
    temperature: float = 1.0
    sample_every: int = 2000
    num_samples: int = 7                # names per report for ``lines`` corpora
    sample_length: int = 200            # characters per sample for ``stream`` corpora
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        for f in fields(self):                                   # types first: the checks below compare numbers
            value = getattr(self, f.name)
            if isinstance(value, float):
                require(math.isfinite(value), f"--{f.name} must be a finite number, got {value}")
        try:
            dataclass_schema(TrainConfig).check(asdict(self), "")
        except SchemaError as err:
            raise RnnlabError(f"--{err.path} {err.problem}") from None
        choices = {"data_mode": DATA_MODES, "cell": tuple(CELLS), "engine": tuple(ENGINES), "init": tuple(INIT_SCHEMES),
                   "attention": ATTENTION_KINDS, "optimizer": tuple(OPTIMIZERS), "lr_schedule": LR_SCHEDULES,
                   "dtype": tuple(DTYPES), "precision": PRECISIONS, "block": BLOCKS, "norm": NORMS}
        for name, allowed in choices.items():
            value = getattr(self, name)
            require(value in allowed, f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name in ("iterations", "sample_every", "seq_length", "batch_size", "num_samples", "sample_length",
                     "hidden_size", "num_layers", "ffn_mult"):
            require(getattr(self, name) > 0, f"--{name} must be > 0, got {getattr(self, name)}")
        require(self.threads is None or self.threads > 0, f"--threads must be > 0, got {self.threads}")
        for name in ("epochs", "eval_every", "eval_tokens", "save_every", "clip_value", "clip_norm",
                     "learning_rate", "min_learning_rate", "encoder_hidden", "attention_size", "max_output_length"):
            value = getattr(self, name)
            hint = "; use 'none' to turn it off" if name.startswith("clip") else ""
            require(value is None or value > 0, f"--{name} must be > 0, got {value}{hint}")
        require(re.fullmatch(DEVICE_PATTERN, self.device) is not None,
                f"--device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        require_cpu_unless_torch(self.engine, self.device, self.precision)
        require(self.precision == "fp32" or self.dtype == "float32",
                f"--precision {self.precision} computes in 16 bits from float32 parameters: use --dtype float32")
        require(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}")
        require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        require(self.val_fraction is None or 0 <= self.val_fraction < 1,
                f"--val_fraction must be in [0, 1), got {self.val_fraction}")
        require(0 <= self.seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        require(self.dataset.strip() != "", "--dataset is empty: give a shipped corpus name or a file path")
        require(self.cache_dir is None or self.cache_dir != "", "--cache_dir is empty: give a folder")
        if self.optimizer_options:
            make_optimizer(self.optimizer, self.learning_rate, **parse_options(self.optimizer, self.optimizer_options))

    def notes(self) -> list[str]:
        """Settings that are valid but do nothing, said once so nobody waits for an effect."""
        notes = []
        if self.dropout > 0 and self.num_layers == 1 and self.block == "plain":
            notes.append(f"--dropout {self.dropout} does nothing with one layer: it applies between stacked "
                         "layers (use --num_layers 2 or more, or --block residual)")
        if self.block == "plain" and (self.norm, self.ffn_mult) != ("rms", 4):
            notes.append("--norm and --ffn_mult shape the residual block: they do nothing without --block residual")
        return notes

    def to_dict(self) -> dict:
        return asdict(self)


# The defaults that differ with the kind of data, for a run that does not set them: the dinosaur quick start
# is TrainConfig's own; a translator (pairs data) learns the shipped dates to >= 99 % exact match in about a
# minute of training with these (docs/attention.md).
MODE_DEFAULTS = {
    "pairs": {"cell": "gru", "hidden_size": 128, "batch_size": 64, "iterations": 1500, "optimizer": "adam",
              "learning_rate": 0.003, "clip_value": None, "clip_norm": 5.0, "sample_every": 500, "eval_every": 250,
              "num_samples": 4},
}


def config_for_mode(mode: str, given: dict) -> TrainConfig:
    """A TrainConfig from the settings ``given``, with ``mode``'s defaults (MODE_DEFAULTS) for the others."""
    return TrainConfig(**{**MODE_DEFAULTS.get(mode, {}), **given})


# Settings that fix the model's shape, what the saved data position means, or the optimizer's state:
# refused on resume when they differ from the checkpoint. Every other setting (learning rate, iterations,
# reporting, where to save) may change. The dataset is checked by content (its fingerprint), not by name.
LOCKED_ON_RESUME = ("data_mode", "cell", "hidden_size", "num_layers", "block", "norm", "ffn_mult", "init",
                    "forget_bias", "attention",
                    "encoder_hidden", "attention_size", "max_output_length", "batch_size", "seq_length", "optimizer",
                    "optimizer_options", "engine", "dtype", "val_fraction", "seed", "deterministic")
NOT_RESUMED = ("checkpoint_dir", "cache_dir", "device", "threads")   # where things are now, never where they once were
CHECKED_BY_CONTENT = ("dataset",)   # may be another path to the same text (Trainer compares fingerprints)


def resume_config(saved: dict, overrides: dict) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's training settings with ``overrides`` (the settings the user gave) applied.

    -> (config, notes describing each change). A locked setting that differs is an error naming it."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    require(not unknown, f"unknown training setting(s) {unknown}")
    base = {name: value for name, value in saved.items() if name not in NOT_RESUMED}
    config = TrainConfig(**base)
    notes = []
    for name in sorted(overrides):
        old, new = getattr(config, name), overrides[name]
        if name in NOT_RESUMED or name in CHECKED_BY_CONTENT or old == new:
            continue
        if name in LOCKED_ON_RESUME:
            raise RnnlabError(f"--{name} {new} differs from the checkpoint's {old}: it cannot change on "
                              f"--resume (start a new run for a different {name})")
        notes.append(f"{name} changed from {'the default' if old is None else old} to {new}")
    changed = {**base, **{k: v for k, v in overrides.items() if k not in NOT_RESUMED}}
    return TrainConfig(**changed, **{k: v for k, v in overrides.items() if k in NOT_RESUMED}), notes
