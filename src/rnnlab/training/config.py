"""The settings of a training run: five small dataclasses by concern, each option declared once.

A run's settings are grouped by what they are about -- the model, the data, optimisation, the run's length
and outputs, and where it computes -- and :class:`TrainConfig` holds one of each. Every option is ONE field,
declared with :func:`setting`, whose metadata is all that the rest of rnnlab needs to know about it:

    help       what the option does, for ``rnnlab train --help`` (the default is added by the CLI)
    parse      how a command-line string becomes its value (int, a finite number, 'none', a path ...)
    choices    the values it may take (checked here, offered by the CLI)
    check      a rule on its own value ("> 0", "in [0, 1)") -- checked here, named like the flag
    resume     what ``--resume`` does with it: LOCKED (must equal the checkpoint's), FREE (may change, and
               the change is noted), HERE (never taken from the checkpoint: where things are now), CONTENT
               (the dataset: compared by its fingerprint, not its name)

``cli.py`` builds ``rnnlab train``'s parser from these fields (nothing else declares a training flag), and
:func:`resume_config` reads ``resume`` (nothing else lists which settings are locked). A config that exists
is a valid one: each group checks its own fields in ``__post_init__`` with messages that name the flag
(``--hidden_size must be > 0``), and :class:`TrainConfig` checks the rules that span groups.

``TrainConfig(**settings)`` takes the settings by their flag names (flat), as a checkpoint stores them, and
``config.hidden_size`` reads one the same way; the groups (``config.model``, ``config.data``,
``config.optim``, ``config.run``, ``config.compute``) are what the parts of rnnlab that need only one concern
are given (an engine gets ``config.compute``, not the whole run).
"""

from __future__ import annotations

import math
import re
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from ..data.pairs import SHIPPED_PAIRS, uses_pairs
from ..data.splits import DEFAULT_VAL_FRACTION
from ..data.text import DATA_MODES, SHIPPED_DATASETS
from ..errors import RnnlabError, require
from ..files import check_path_text
from ..nn.block import BLOCKS
from ..nn.cells import CELLS
from ..nn.initializers import INIT_SCHEMES
from ..nn.norms import NORMS
from ..nn.optim import LR_SCHEDULES, OPTIMIZERS, make_optimizer, parse_options
from ..nn.seq2seq import ATTENTION_KINDS
from ..schema import Object, SchemaError, dataclass_schema

DTYPES = {"float32": np.float32, "float64": np.float64}
ENGINES = ("numpy", "torch", "keras-fit", "keras-tape", "keras-class")   # engines.ENGINE_MODULES loads them
DEVICE_PATTERN = r"auto|cpu|cuda(:\d{1,3})?|mps"   # --device; frameworks/torch.py resolves it
PRECISIONS = ("fp32", "bf16", "fp16")              # --precision: torch.autocast (frameworks/torch.py)
OFF_CPU_ENGINES = ("torch",)                       # the engines that can compute elsewhere than the CPU
MAX_SEED = 2 ** 63 - 1

LOCKED, FREE, HERE, CONTENT = "locked", "free", "here", "content"


# ---- parsing a flag's text (the CLI calls these; a ValueError becomes argparse's one-line error) --------

def finite_float(text: str) -> float:
    """A float flag: 'inf' and 'nan' are refused like any other non-number."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


finite_float.__name__ = "finite number"        # argparse names the type in its one-line error


def optional_float(text: str) -> float | None:
    """'none' or 'off' turn an option off; anything else is a finite number."""
    return None if text.lower() in ("none", "off") else finite_float(text)


optional_float.__name__ = "number or 'none'"


def count_or_all(text: str) -> int | None:
    """'all' -> None (no limit); else an integer."""
    return None if text.lower() == "all" else int(text)


count_or_all.__name__ = "integer or 'all'"


def path_text(text: str) -> str:
    """A path flag: empty, NUL and non-UTF-8 names are refused at once (they cannot be saved or printed)."""
    try:
        return check_path_text(text, "path")
    except RnnlabError as err:
        raise ArgumentTypeError(str(err)) from None


def device_name(text: str) -> str:
    """--device: auto, cpu, cuda, cuda:N or mps (whether it exists is checked when it is used)."""
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise ArgumentTypeError(f"invalid device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return text


# ---- rules on one value ---------------------------------------------------------------------------------

def positive(value) -> str | None:
    return None if value is None or value > 0 else f"must be > 0, got {value}"


def positive_or_none(hint: str = "") -> Callable:
    def check(value):
        return None if value is None or value > 0 else f"must be > 0, got {value}{hint}"
    return check


def in_range(low: float, high: float, high_open: bool = True) -> Callable:
    def check(value):
        inside = value is None or (low <= value < high if high_open else low <= value <= high)
        return None if inside else f"must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {value}"
    return check


def non_negative(value) -> str | None:
    return None if value is None or value >= 0 else f"must be >= 0, got {value}"


def not_empty(what: str) -> Callable:
    def check(value):
        return None if value is None or str(value).strip() != "" else f"is empty: give {what}"
    return check


def setting(default, help: str, *, parse: Callable | None = None, choices=None, check: Callable | None = None,
            resume: str = FREE):
    """One option: a dataclass field whose metadata says how to parse, check, show and resume it."""
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices, "check": check,
                                             "resume": resume})


class Settings:
    """What the five groups share: every field is checked once, where the group is built (types first, so
    that the rules below compare numbers), with messages naming the flag."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                require(math.isfinite(value), f"--{f.name} must be a finite number, got {value}")
        try:
            dataclass_schema(type(self)).check(asdict(self), "")
        except SchemaError as err:
            raise RnnlabError(f"--{err.path} {err.problem}") from None
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            choices = meta.get("choices")
            if choices is not None:
                require(value in choices, f"--{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
            problem = meta["check"](value) if meta.get("check") else None
            require(problem is None, f"--{f.name} {problem}")


@dataclass
class ModelSettings(Settings):
    cell: str = setting("rnn", "recurrent cell type", choices=tuple(sorted(CELLS)), resume=LOCKED)
    hidden_size: int = setting(50, "units per recurrent layer", parse=int, check=positive, resume=LOCKED)
    num_layers: int = setting(1, "stacked recurrent layers", parse=int, check=positive, resume=LOCKED)
    dropout: float = setting(0.0, "between stacked layers (and inside the residual block), training only",
                             parse=finite_float, check=in_range(0.0, 1.0))
    block: str = setting("plain", "plain: layers stacked directly; residual: pre-norm, the recurrent layer, a "
                         "residual connection, a GELU feed-forward layer with its own (nn/block.py)", choices=BLOCKS,
                         resume=LOCKED)
    norm: str = setting("rms", "residual block: the pre-normalisation, rms (RMSNorm) or layer (LayerNorm)",
                        choices=NORMS, resume=LOCKED)
    ffn_mult: int = setting(4, "residual block: the feed-forward layer's width in units of --hidden_size", parse=int,
                            check=positive, resume=LOCKED)
    init: str = setting("rnnlab", "initial weights: rnnlab (Glorot, orthogonal recurrent matrix, zero biases), "
                        "pytorch (U(+-1/sqrt(H)) everywhere), keras (rnnlab's + forget bias 1) or blockorth "
                        "(rnnlab's old scheme); see nn/initializers.py", choices=tuple(INIT_SCHEMES), resume=LOCKED)
    forget_bias: float | None = setting(None, "LSTM: start the forget-gate bias at this value (0 keeps half of the "
                                        "cell state per step, 1 keeps sigma(1) = 73%%); default: the --init "
                                        "scheme's own", parse=finite_float, resume=LOCKED)
    attention: str = setting("additive", "translator (pairs data): how the decoder scores the encoder's outputs; "
                             "none: the classic encoder-final-state decoder", choices=ATTENTION_KINDS, resume=LOCKED)
    encoder_hidden: int | None = setting(None, "translator: units per encoder direction (default: --hidden_size / "
                                         "2)", parse=int, check=positive, resume=LOCKED)
    attention_size: int = setting(64, "translator: the additive score's width", parse=int, check=positive,
                                  resume=LOCKED)
    max_output_length: int | None = setting(None, "translator: decoding stops after this many characters "
                                            "(default: the longest target + 4)", parse=int, check=positive,
                                            resume=LOCKED)
    # the regularisers of nn/regularizers.py (docs/regularization.md): off by default, training only but zoneout
    locked_dropout: bool = setting(False, "--dropout draws one mask per sequence, reused at every step (variational "
                                   "/ locked dropout) instead of a new one for every character")
    dropout_input: float = setting(0.0, "locked dropout on the characters: each sequence drops whole character "
                                   "types (dimensions of the one-hot input) at every step (AWD-LSTM's embedding "
                                   "dropout), training only", parse=finite_float, check=in_range(0.0, 1.0))
    dropout_output: float = setting(0.0, "locked dropout on the top layer's output, before the softmax layer: one "
                                    "mask per sequence, training only", parse=finite_float, check=in_range(0.0, 1.0))
    weight_drop: float = setting(0.0, "DropConnect on every layer's recurrent matrix W_h: one mask per training "
                                 "step (AWD-LSTM's weight drop; rnn, lstm, gru)", parse=finite_float,
                                 check=in_range(0.0, 1.0))
    zoneout: float = setting(0.0, "zoneout: each unit of the state keeps its previous value with this probability "
                             "at every training step, the expectation at evaluation (rnn, lstm's h, gru); part of "
                             "the model", parse=finite_float, check=in_range(0.0, 1.0), resume=LOCKED)
    zoneout_cell: float | None = setting(None, "LSTM: the cell state's zoneout rate (default: --zoneout)",
                                         parse=finite_float, check=in_range(0.0, 1.0), resume=LOCKED)
    ar: float = setting(0.0, "activation regularisation: add alpha * mean ||h_t||^2 of the top layer's output to "
                        "the loss (AWD-LSTM: 2)", parse=finite_float, check=non_negative)
    tar: float = setting(0.0, "temporal activation regularisation: add beta * mean ||h_t - h_{t-1}||^2 of the top "
                         "layer's output to the loss (AWD-LSTM: 1)", parse=finite_float, check=non_negative)

    REGULARIZERS = ("locked_dropout", "dropout_input", "dropout_output", "weight_drop", "zoneout", "zoneout_cell",
                    "ar", "tar")

    def regularizers_on(self) -> list[str]:
        """The flags of the regularisers this run turns on (beyond --dropout)."""
        return [name for name in self.REGULARIZERS if getattr(self, name) not in (0, 0.0, None, False)]


@dataclass
class DataSettings(Settings):
    dataset: str = setting("dinos", f"a shipped corpus ({', '.join([*SHIPPED_DATASETS, *SHIPPED_PAIRS])}), or the "
                           "path of a UTF-8 text file, a folder or a glob of them; pairs data (SOURCE<TAB>TARGET "
                           "lines, e.g. dates) trains a translator, with its own defaults", parse=path_text,
                           check=not_empty("a shipped corpus name or a file path"), resume=CONTENT)
    data_mode: str = setting("auto", "lines: one example per line; stream: continuous text; pairs: "
                             "SOURCE<TAB>TARGET lines (a translator); auto: guess from the text", choices=DATA_MODES,
                             resume=LOCKED)
    batch_size: int = setting(1, "examples per step (lines: padded names; stream: parallel streams of the text)",
                              parse=int, check=positive, resume=LOCKED)
    seq_length: int = setting(25, "truncated-BPTT window for stream corpora", parse=int, check=positive,
                              resume=LOCKED)
    deterministic: bool = setting(False, "fixed example order (no reshuffling); fixed --seed", resume=LOCKED)
    val_fraction: float | None = setting(None, f"held-out share (lines: by line; stream: the end of the text); "
                                         f"default {DEFAULT_VAL_FRACTION} where it fits", parse=finite_float,
                                         check=in_range(0.0, 1.0), resume=LOCKED)
    eval_tokens: int | None = setting(262_144, "validate on the first N characters of the held-out part (the same "
                                      "ones every time); 'all' for all of it", parse=count_or_all, check=positive)
    cache_dir: str | None = setting(None, "where large corpora are kept encoded for fast starts (default: "
                                    "$XDG_CACHE_HOME/rnnlab or ~/.cache/rnnlab)", parse=path_text,
                                    check=not_empty("a folder"), resume=HERE)


@dataclass
class OptimSettings(Settings):
    optimizer: str = setting("adam", "update rule (docs in nn/optim.py)", choices=tuple(OPTIMIZERS), resume=LOCKED)
    learning_rate: float | None = setting(None, "default: the optimizer's own (sgd 0.1, momentum 0.05, rms 0.005, "
                                          "adam 0.005, adagrad 0.1)", parse=finite_float, check=positive)
    optimizer_options: str = setting("", "KEY=VALUE,... hyper-parameters and conventions, e.g. 'mu=0.95,form=ema' "
                                     "(momentum), 'eps_hat=true' (Adam as Keras), 'eps_inside_sqrt=true' "
                                     "(RMSProp/Adagrad as Keras)", resume=LOCKED)
    lr_schedule: str = setting("constant", "cosine: decay from --learning_rate to --min_learning_rate over the run",
                               choices=LR_SCHEDULES)
    min_learning_rate: float | None = setting(None, "the cosine schedule's final rate (default: learning rate / 20)",
                                              parse=finite_float, check=positive)
    clip_value: float | None = setting(5.0, "clip each gradient entry to [-v, v] (v > 0); 'none' turns it off",
                                       parse=optional_float, check=positive_or_none("; use 'none' to turn it off"))
    clip_norm: float | None = setting(None, "clip the global gradient norm (> 0); 'none' turns it off",
                                      parse=optional_float, check=positive_or_none("; use 'none' to turn it off"))
    ema_decay: float | None = setting(None, "weight averaging: keep an exponential moving average of the weights "
                                      "with this decay (e.g. 0.999: about the last 1,000 steps; bias-corrected); "
                                      "validation, the best checkpoint and samples use it; 'none' turns it off",
                                      parse=optional_float, check=lambda v: None if v is None or 0 < v < 1
                                      else f"must be in (0, 1), got {v}")

    def __post_init__(self):
        super().__post_init__()
        if self.optimizer_options:
            make_optimizer(self.optimizer, self.learning_rate, **parse_options(self.optimizer, self.optimizer_options))


@dataclass
class RunSettings(Settings):
    iterations: int = setting(22001, "optimisation steps", parse=int, check=positive)
    epochs: int | None = setting(None, "passes over the training data, instead of --iterations (default: "
                                       "--iterations counts the steps)", parse=int, check=positive)
    eval_every: int | None = setting(None, "validation every N steps (default: with every report, --sample_every)",
                                     parse=int, check=positive)
    sample_every: int = setting(2000, "report and sample every N steps", parse=int, check=positive)
    num_samples: int = setting(7, "names per report (lines corpora)", parse=int, check=positive)
    sample_length: int = setting(200, "characters per sample (stream corpora)", parse=int, check=positive)
    temperature: float = setting(1.0, "sampling temperature (> 0)", parse=finite_float, check=positive)
    seed: int = setting(0, "seeds initialisation, data order, dropout, sampling", parse=int,
                        check=in_range(0, MAX_SEED, high_open=False), resume=LOCKED)
    checkpoint_dir: str | None = setting(None, "save checkpoints here: latest.json (every --save_every steps, at the "
                                         "end, on Ctrl-C) and best.json (best validation loss)", parse=path_text,
                                         resume=HERE)
    save_every: int | None = setting(None, "save the latest checkpoint every N steps", parse=int, check=positive)
    metrics_file: str | None = setting(None, "append one JSON object per report to this file (for a step a resumed "
                                       "or restarted run repeats, rnnlab plot shows the latest)", parse=path_text,
                                       check=not_empty("a file name"), resume=HERE)
    patience: int | None = setting(None, "early stopping: end the run after N validations in a row without a new "
                                   "best validation loss (the best checkpoint is kept)", parse=int, check=positive)


@dataclass
class ComputeSettings(Settings):
    engine: str = setting("numpy", "numpy (from scratch) or the same model in PyTorch / Keras (needs the [torch] / "
                          "[tf] extra)", choices=ENGINES, resume=LOCKED)
    device: str = setting("auto", "where the torch engine computes: auto (CUDA if there is a GPU, else the CPU), "
                          "cpu, cuda, cuda:N, mps; under torchrun each process takes cuda:LOCAL_RANK (docs/gpu.md)",
                          parse=device_name, resume=HERE)
    precision: str = setting("fp32", "torch engine: bf16 / fp16 run the forward pass under torch.autocast (a GPU "
                             "speed-up; none on the CPU), fp16 with loss scaling", choices=PRECISIONS)
    threads: int | None = setting(None, "numpy engine: threads per training step (default: the cores available "
                                  "to this process)", parse=int, check=positive, resume=HERE)
    dtype: str = setting("float32", "float type of parameters and compute", choices=tuple(DTYPES), resume=LOCKED)
    dist_timeout: float = setting(60.0, "torchrun: seconds the processes wait for each other to meet before one "
                                  "names who is missing", parse=finite_float, check=lambda v: None if 0 < v <= 86400
                                  else f"must be between 0 and 86400 seconds, got {v}", resume=HERE)

    def __post_init__(self):
        super().__post_init__()
        require(re.fullmatch(DEVICE_PATTERN, self.device) is not None,
                f"--device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        require_cpu_unless_torch(self.engine, self.device, self.precision)
        require(self.precision == "fp32" or self.dtype == "float32",
                f"--precision {self.precision} computes in 16 bits from float32 parameters: use --dtype float32")


def require_cpu_unless_torch(engine: str, device: str, precision: str = "fp32",
                             fix: str = "add --engine torch") -> None:
    """The one-line refusal of a GPU or mixed precision for an engine that computes on the CPU in full
    precision (numpy, keras-*): it names the engine that can."""
    if engine in OFF_CPU_ENGINES:
        return
    if device not in ("auto", "cpu"):
        raise RnnlabError(f"--device {device} needs the torch engine: {fix} (the {engine} engine computes on the CPU)")
    if precision != "fp32":
        raise RnnlabError(f"--precision {precision} needs the torch engine: {fix} (the {engine} engine computes "
                          "in the --dtype it is given)")


GROUPS = {"data": DataSettings, "model": ModelSettings, "optim": OptimSettings, "run": RunSettings,
          "compute": ComputeSettings}


def setting_fields() -> dict:
    """{flag name: (group name, dataclass Field)} of every training setting, in declaration order."""
    return {f.name: (group, f) for group, cls in GROUPS.items() for f in fields(cls)}


SETTINGS = setting_fields()


def default_of(f) -> object:
    return f.default if f.default is not MISSING else f.default_factory()


class TrainConfig:
    """A run's settings: one group per concern (module docstring). Built from flat settings by flag name;
    unknown names are refused; a valid config is the only kind that exists."""

    __slots__ = tuple(GROUPS)

    def __init__(self, **settings):
        unknown = sorted(set(settings) - set(SETTINGS))
        require(not unknown, f"unknown training setting(s) {unknown}")
        for group, cls in GROUPS.items():
            object.__setattr__(self, group, cls(**{name: value for name, value in settings.items()
                                                   if SETTINGS[name][0] == group}))

    def __getattr__(self, name: str):
        """``config.hidden_size``: a setting read by its flag name, from the group that holds it."""
        if name in SETTINGS:
            return getattr(object.__getattribute__(self, SETTINGS[name][0]), name)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        raise AttributeError("a TrainConfig does not change: build another with replace()")

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def to_dict(self) -> dict:
        """Every setting by its flag name (flat, as a checkpoint stores them)."""
        return {name: getattr(getattr(self, group), name) for name, (group, _) in SETTINGS.items()}

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig(**{**self.to_dict(), **changes})

    def notes(self) -> list[str]:
        """Settings that are valid but do nothing, said once so nobody waits for an effect."""
        notes = []
        if self.dropout > 0 and self.num_layers == 1 and self.block == "plain":
            notes.append(f"--dropout {self.dropout} does nothing with one layer: it applies between stacked "
                         "layers (use --num_layers 2 or more, or --block residual)")
        if self.block == "plain" and (self.norm, self.ffn_mult) != ("rms", 4):
            notes.append("--norm and --ffn_mult shape the residual block: they do nothing without --block residual")
        dropout_acts = self.dropout > 0 and (self.num_layers > 1 or self.block != "plain")
        if self.locked_dropout and not dropout_acts:
            notes.append("--locked_dropout shapes --dropout's masks: it does nothing without --dropout between "
                         "layers (the inputs' and the output's dropout are locked anyway)")
        if self.weight_drop > 0 and not CELLS[self.cell].recurrent_weights:
            notes.append(f"--weight_drop does nothing with --cell {self.cell}: it has no recurrent matrix W_h")
        if self.zoneout_cell is not None and self.cell != "lstm":
            notes.append(f"--zoneout_cell does nothing with --cell {self.cell}: only the LSTM has a cell state "
                         "(--zoneout sets the rate of its hidden state)")
        if self.patience is not None and self.checkpoint_dir is None:
            notes.append(f"--patience {self.patience} stops the run at its best, but without --checkpoint_dir "
                         "that best model is not kept")
        return notes

    @staticmethod
    def schema(defaults_may_be_missing: bool = True) -> Object:
        """The flat schema of a checkpoint's "train" object, from the groups' field types."""
        parts = [dataclass_schema(cls, defaults_may_be_missing=defaults_may_be_missing) for cls in GROUPS.values()]
        return Object({k: v for part in parts for k, v in part.fields.items()},
                      [k for part in parts for k in part.may_be_missing])


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


def config_for_data(given: dict) -> TrainConfig:
    """A new run's TrainConfig from the settings ``given``: on pairs data (given, or found in the text) the
    translator's defaults fill the others, else TrainConfig's own."""
    dataset = given.get("dataset", SETTINGS["dataset"][1].default)
    data_mode = given.get("data_mode", SETTINGS["data_mode"][1].default)
    return config_for_mode("pairs" if uses_pairs(dataset, data_mode) else data_mode, given)


def resume_config(saved: dict, overrides: dict) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's training settings with ``overrides`` (the settings the user gave) applied, by each
    setting's ``resume`` metadata: LOCKED ones may not differ (an error naming the flag), HERE ones are never
    taken from the checkpoint, CONTENT ones are compared by the Trainer (the dataset's fingerprint), FREE ones
    change and each change is noted. -> (config, notes)."""
    unknown = sorted(set(overrides) - set(SETTINGS))
    require(not unknown, f"unknown training setting(s) {unknown}")
    policy = {name: f.metadata["resume"] for name, (_, f) in SETTINGS.items()}
    base = {name: value for name, value in saved.items() if name in SETTINGS and policy[name] != HERE}
    config = TrainConfig(**base)
    notes = []
    for name in sorted(overrides):
        old, new = getattr(config, name), overrides[name]
        if policy[name] in (HERE, CONTENT) or old == new:
            continue
        if policy[name] == LOCKED:
            raise RnnlabError(f"--{name} {new} differs from the checkpoint's {old}: it cannot change on "
                              f"--resume (start a new run for a different {name})")
        notes.append(f"{name} changed from {'the default' if old is None else old} to {new}")
    return TrainConfig(**{**base, **overrides}), notes
