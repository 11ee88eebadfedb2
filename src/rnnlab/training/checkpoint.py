"""Checkpoints: arrays in ``.npz``, everything else in JSON, never pickle; written so a crash loses nothing,
read as untrusted data.

A checkpoint folder holds, per *tag* (``latest``, ``best``):

    latest.json              format version, model + training config, tokenizer, corpus fingerprint,
                             counters, RNG states, optimizer name and hyper-parameters, and the name of
                             its arrays file
    latest-000300.npz        parameters ``param/<name>``, optimizer moments ``opt/<slot>/<name>``, the
                             hidden state carried between windows ``state/<layer>/<k>``, and with weight
                             averaging (``--ema_decay``) the averaged weights ``ema/<name>``
    .rnnlab.lock             held by the run that writes the folder (files.DirectoryLock)

Owning a folder. :class:`CheckpointFolder` is the one owner of a checkpoint folder: training, resuming and
exporting all go through it. It refuses another run's checkpoint unless ``--overwrite`` (and then deletes it
only once it holds the lock), refuses to replace a later point of the run it continues, creates and locks the
folder, and removes what killed saves left behind.

Writing. Every file goes through the output guard (``files.write_file``, kind ``files.CHECKPOINT``). The
arrays go to a new file (written to a temporary name, fsynced, then renamed), and only then is the JSON
atomically replaced to point at it; the previous arrays file is deleted last. A kill at any moment leaves a
JSON that points to a complete arrays file; the leftovers of a killed save (temporary files, an arrays file
no JSON names) are removed by the next run that takes the folder's lock. Non-finite arrays are never
written.

Reading (the trust model). A checkpoint folder may have been edited, damaged or crafted, so nothing in it
is believed before it is checked, and nothing outside the folder is ever read, written or deleted:

1. the JSON (a regular file, not a link, at most 64 MB) must match :data:`DOCUMENT` -- every key, type and
   range (unknown keys are refused) -- and its configs must be valid;
2. its ``arrays`` entry must be a bare file name of the form rnnlab writes (``latest-000300.npz``),
   resolved inside the folder; links are refused; the bytes must match the recorded SHA-256;
3. the archive must hold exactly the arrays the config implies: each member's ``.npy`` header is read
   *before* its data, and its dtype (float32/float64), shape and byte count must be the expected ones --
   so a header claiming a huge shape allocates nothing -- pickled objects are refused;
4. every array must be finite;
5. sizes have a budget: the archive's declared sizes must fit in the memory available before any member is
   decompressed, and a carried hidden state may hold at most the run's batch of rows.

Reading a checkpoint notes its files, its folder and its recorded corpus as inputs of the run
(``files.note_read``): no output of the command that reads it may replace them.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import schema as s
from ..errors import RnnlabError, TrainingDiverged, require
from ..files import (
    CHECKPOINT,
    DirectoryLock,
    check_folder,
    check_output,
    note_checkpoint_read,
    note_read,
    note_read_pattern,
    prepare_folder,
    read_bytes,
    regular_file,
    remove_file,
    remove_stale_temps,
    same_file,
    write_file,
)
from ..memory import require_memory
from ..nn import model as charmodel
from ..nn.cells import CELLS
from ..nn.optim import OPTIMIZERS, make_optimizer
from .config import TrainConfig
from .kinds import KINDS

FORMAT_VERSION = 2
TAGS = ("latest", "best")
ARRAYS_NAME = re.compile(r"(latest|best)-(\d{6,})(b?)\.npz")      # the only arrays names rnnlab writes
# the temporary names of rnnlab versions before the output guard (files.TEMP_NAME is today's)
OLD_TMP_NAME = re.compile(r"\.(latest|best)(\.json|-\d{6,}b?\.npz)\.[0-9a-f]{8}\.tmp")
MAX_JSON_BYTES = 64 * 2 ** 20
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))   # float16: exported weights
U128 = 2 ** 128 - 1

# ---- the JSON document's schema ------------------------------------------------------------------------

@dataclass
class RunState:
    """Everything about a run that changes as it goes, besides the arrays: one dataclass, saved whole into
    the checkpoint JSON (its fields at the top level) and read back whole (:attr:`Checkpoint.run_state`)."""

    step: int = 0                      # optimisation steps done
    loss_average: float = 0.0          # the smoothed training loss's running sum (health.LossTracker)
    first_loss: float | None = None    # the first step's loss: the divergence guard compares against it
    best_val_loss: float | None = None  # the lowest validation loss so far (best.json holds that model)
    elapsed_s: float = 0.0             # seconds spent in training steps, across resumes
    wall_s: float = 0.0                # wall-clock seconds of the run, across resumes
    data_position: dict = field(default_factory=dict)   # batches.state_dict(): epoch, position (+ rng)
    rng: dict = field(default_factory=dict)             # {"dropout": state, "sample": state} Generator states
    best_step: int | None = None       # the step of best_val_loss
    evals_since_best: int = 0          # validations in a row without a new best (--patience)
    ema_steps: int = 0                 # steps in the weight average (averaging.py); > 0: ``ema/`` arrays saved
    # fields older checkpoints lack (their runs had these values): the schema lets them be missing
    ADDED_LATER: ClassVar[tuple] = ("best_step", "evals_since_best", "ema_steps")

    def to_dict(self) -> dict:
        return asdict(self)


RNG_STATE = s.Object({"bit_generator": s.Str(choices=["PCG64"]),
                      "state": s.Object({"state": s.Int(0, U128), "inc": s.Int(0, U128)}),
                      "has_uint32": s.Int(0, 1), "uinteger": s.Int(0, 2 ** 32 - 1)})
COUNT = s.Int(0)
SECONDS = s.Number(0)
RUN_STATE = s.dataclass_schema(RunState, {
    "step": COUNT, "loss_average": s.Number(0), "first_loss": s.Optional(s.Number(0)),
    "best_val_loss": s.Optional(s.Number(0)),
    "elapsed_s": SECONDS, "wall_s": SECONDS,
    "data_position": s.Object({"epoch": COUNT, "position": COUNT, "rng": RNG_STATE}, may_be_missing=["rng"]),
    "rng": s.Object({"dropout": RNG_STATE, "sample": RNG_STATE}),
    "best_step": s.Optional(COUNT), "evals_since_best": COUNT, "ema_steps": COUNT})
DOCUMENT = s.Object({
    "format_version": s.Int(),
    "arrays": s.Str(pattern=ARRAYS_NAME.pattern, max_len=64),
    "arrays_sha256": s.Str(pattern=r"[0-9a-f]{64}"),
    "optimizer_slots": s.ListOf(s.Str(pattern=r"[a-z_]{1,32}"), max_len=8),
    "optimizer_step": COUNT,
    "task": s.Str(choices=list(KINDS)),
    "model": s.Any(),                          # checked by the task's schemas below (TASK_SCHEMAS)
    "tokenizer": s.Any(),
    "train": TrainConfig.schema(),
    "corpus": s.Object({"name": s.Str(), "mode": s.Str(choices=["lines", "stream", "pairs"]), "chars": COUNT,
                        "bytes": COUNT, "sha256": s.Str(pattern=r"[0-9a-f]{64}"), "path": s.Optional(s.Str())}),
    "optimizer": s.Any(),                      # checked by OPTIMIZER_SCHEMAS[its name] below
    # an exported model (rnnlab export): weights only, no optimizer state; it samples but does not resume
    "export": s.Object({"val_loss": s.Optional(s.Number(0)), "val_tokens": COUNT, "dtype": s.Str(
        choices=["float16", "float32", "float64"]), "source": s.Str(max_len=200), "description": s.Str(max_len=400)}),
    **RUN_STATE.fields,
}, may_be_missing=["export", *RunState.ADDED_LATER])
# A model field added after checkpoints were first written (a config's ADDED_LATER, e.g. ``block``) may be
# missing from an older checkpoint, whose model had its default; every other field must be there.
TASK_SCHEMAS = {kind: (s.Object(s.dataclass_schema(task.config_class).fields,
                                getattr(task.config_class, "ADDED_LATER", ())), task.tokenizer_schema)
                for kind, task in KINDS.items()}
OPTIMIZER_SCHEMAS = {name: s.Object({"name": s.Str(choices=[name]), **s.dataclass_schema(cls).fields})
                     for name, cls in OPTIMIZERS.items()}


def validate_document(meta, where: str) -> None:
    """Check a checkpoint's JSON against :data:`DOCUMENT` and its configs' own rules; one error names the
    first problem."""
    require(isinstance(meta, dict) and "format_version" in meta,
            f"{where} is not an rnnlab checkpoint (no format_version)")
    version = meta["format_version"]
    require(version == FORMAT_VERSION,
            f"checkpoint {where} has format version {version}; this rnnlab reads version {FORMAT_VERSION}: "
            "use the rnnlab version that wrote it")
    try:
        DOCUMENT.check(meta, "")
        task = KINDS[meta["task"]]
        model_schema, tokenizer_schema = TASK_SCHEMAS[meta["task"]]
        model_schema.check(meta["model"], "model")
        tokenizer_schema.check(meta["tokenizer"], "tokenizer")
        config = task.config_class(**meta["model"])
        TrainConfig(**meta["train"])
        optimizer = meta["optimizer"]
        name = optimizer.get("name") if isinstance(optimizer, dict) else None
        require(name in OPTIMIZERS, f"field optimizer.name must be one of {', '.join(OPTIMIZERS)}")
        OPTIMIZER_SCHEMAS[name].check(optimizer, "optimizer")
        slots = [] if "export" in meta else sorted(k for k in make_optimizer(**optimizer).init({}) if k != "step")
        require(meta["optimizer_slots"] == slots,
                f"optimizer {optimizer['name']} keeps {slots}, the checkpoint lists {meta['optimizer_slots']}")
        step = meta["step"]                                      # fields that must agree with each other
        require(meta["optimizer_step"] == step, f"optimizer_step {meta['optimizer_step']} differs from step {step}")
        require((step == 0) == (meta["first_loss"] is None),
                f"first_loss {meta['first_loss']} does not fit step {step}")
        require(step > 0 or meta["loss_average"] == 0, f"loss_average {meta['loss_average']} does not fit step 0")
        for counter in ("ema_steps", "best_step"):
            require((meta.get(counter) or 0) <= step, f"{counter} {meta.get(counter)} is past step {step}")
        tokenizer = task.tokenizer_from_dict(meta["tokenizer"])
        require(task.vocabulary_fits(config, tokenizer), "the tokenizer's vocabulary does not fit the model's")
    except (RnnlabError, TypeError, ValueError) as err:
        raise RnnlabError(f"checkpoint {where} is invalid: {err}") from None


# ---- the checkpoint in memory --------------------------------------------------------------------------

@dataclass
class Checkpoint:
    meta: dict                   # the JSON document (validated)
    params: dict                 # {name: array} in rnnlab's layout
    optimizer_state: dict        # {"step": int, slot: {name: array}}
    hidden_state: list | None    # per layer, a tuple of (B, H) arrays; None when nothing is carried
    path: Path                   # the JSON file it was read from
    ema: dict | None = None      # the averaged weights {name: array} (--ema_decay), or None

    @property
    def weights(self) -> dict:
        """The weights to use the model with -- sample, visualise, export, evaluate: the averaged weights of a
        run that kept an average, else the parameters. (Training resumes from ``params``.)"""
        return self.params if self.ema is None else self.ema

    @property
    def task(self):
        """The task class (tasks.LanguageModelTask or tasks.TranslationTask) that wrote it."""
        return KINDS[self.meta["task"]]

    @property
    def model_config(self):
        """``model.ModelConfig`` of a language model, ``seq2seq.Seq2SeqConfig`` of a translator."""
        return self.task.config_class(**self.meta["model"])

    @property
    def tokenizer(self):
        """A ``CharTokenizer`` (language model) or ``pairs.PairTokenizers`` (translator)."""
        return self.task.tokenizer_from_dict(self.meta["tokenizer"])

    def require_task(self, kind: str, command: str) -> None:
        """One clear error when a command meets the other kind of checkpoint (sample a translator, ...)."""
        other = {"lm": "rnnlab sample / visualize", "translate": "rnnlab translate / visualize"}[self.meta["task"]]
        require(self.meta["task"] == kind, f"checkpoint {self.path} holds a "
                f"{'translator' if self.meta['task'] == 'translate' else 'language model'}: {command} does not "
                f"apply to it; use {other}")

    @property
    def directory(self) -> Path:
        return self.path.parent

    def require_training_run(self, action: str) -> None:
        """One refusal for what only a training run's checkpoint can do (resume, export): an exported model
        holds weights alone, no optimizer state."""
        require("export" not in self.meta, f"checkpoint {self.path} is an exported model (weights only, no "
                                           f"optimizer state): it samples and visualises but cannot {action}; give "
                                           "the checkpoint of the training run it came from")

    def check_fits(self, task, model_config, tokenizer, optimizer, batch_size: int, smoothing: float,
                   new_data: bool = False) -> bool:
        """Refuse, naming the difference, a checkpoint that does not fit the run about to continue it: its
        task, model, vocabulary, data (unless ``new_data``), optimizer state, carried state and counters.
        -> whether the data is the same text (its position then resumes too)."""
        meta, where = self.meta, self.path
        self.require_training_run("resume")
        require(meta["task"] == task.kind, f"checkpoint {where} holds a {meta['task']} model, this run trains "
                                           f"a {task.kind} model: resume on the same data")
        saved_model = self.model_config
        training_only = getattr(model_config, "TRAINING_ONLY", ())   # how it trains, not what it computes
        differ = [f"{k} {getattr(saved_model, k)} (this run: {v})" for k, v in model_config.to_dict().items()
                  if getattr(saved_model, k) != v and k not in training_only]
        require(not differ, f"checkpoint {where} holds another model: {', '.join(differ)}; resume with the "
                            "checkpoint's settings")
        charmodel.check_param_shapes(task.param_shapes(model_config), self.params)
        require(tokenizer == self.tokenizer,
                f"the corpus' characters differ from checkpoint {where}'s vocabulary: resume on the same --dataset")
        same_data = all(meta["corpus"][k] == task.fingerprint()[k] for k in ("sha256", "bytes"))
        require(same_data or new_data,
                f"{task.name} is not the text checkpoint {where} was trained on (its size and SHA-256 "
                "differ): resume on the same data, or add --new_data to continue on this text from its start")
        slots = sorted(k for k in optimizer.init({}) if k != "step")
        require(sorted(k for k in self.optimizer_state if k != "step") == slots,
                f"checkpoint {where} has optimizer state {sorted(self.optimizer_state)}, "
                f"{meta['train']['optimizer']} needs {slots}")
        hidden = self.hidden_state
        if hidden is not None and task.mode == "stream" and hidden[0][0].shape[0] != batch_size:
            raise RnnlabError(f"checkpoint {where} carries a state for {hidden[0][0].shape[0]} streams, this run "
                              f"has --batch_size {batch_size}: the checkpoint is damaged")
        run = self.run_state
        if run.step:                                             # a saved run never looks diverged
            smooth = run.loss_average / (1 - smoothing ** run.step)
            require(smooth <= 3 * run.first_loss, f"checkpoint {where}: its smoothed loss {smooth:.4g} is more than "
                    f"3x its first loss {run.first_loss:.4g}, which a saved run never has: the checkpoint is damaged")
        return same_data

    @property
    def run_state(self) -> RunState:
        """The whole RunState; a field an older checkpoint lacks takes its default."""
        defaults = asdict(RunState())
        return RunState(**{f.name: self.meta.get(f.name, defaults[f.name]) for f in fields(RunState)})


def flatten_arrays(params: dict, optimizer_state: dict, hidden_state: list | None, ema: dict | None = None) -> dict:
    arrays = {f"param/{name}": value for name, value in params.items()}
    for slot, values in optimizer_state.items():
        if slot != "step":
            arrays.update({f"opt/{slot}/{name}": value for name, value in values.items()})
    for layer, parts in enumerate(hidden_state or []):
        arrays.update({f"state/{layer}/{k}": value for k, value in enumerate(parts)})
    arrays.update({f"ema/{name}": value for name, value in (ema or {}).items()})
    return arrays


def with_prefix(arrays: dict, prefix: str) -> dict:
    """The entries whose key starts with ``prefix``, with the prefix removed (the inverse of flatten_arrays)."""
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


# ---- writing -------------------------------------------------------------------------------------------

def export_document(checkpoint: Checkpoint, dtype: str, val_loss: float | None, val_tokens: int,
                    description: str) -> dict:
    """The JSON of ``checkpoint``'s weights alone, marked ``export``: what the run was, without where it wrote
    its files (that means nothing to whoever loads the export, and names a folder of this machine)."""
    meta = {k: v for k, v in checkpoint.meta.items() if k not in ("format_version", "arrays", "arrays_sha256",
                                                                  "optimizer_slots", "optimizer_step", "export")}
    meta["train"] = {**meta["train"], **{k: None for k in ("checkpoint_dir", "metrics_file", "cache_dir")
                                         if k in meta["train"]}}
    meta["ema_steps"] = 0                                       # the export's weights ARE the average, if any
    meta["export"] = {"val_loss": val_loss, "val_tokens": val_tokens, "dtype": dtype,
                      "source": f"{checkpoint.path.name} at step {meta['step']}", "description": description}
    return meta


def save_checkpoint(directory, tag: str, meta: dict, params: dict, optimizer_state: dict,
                    hidden_state: list | None = None, flag: str = "--checkpoint_dir", ema: dict | None = None) -> Path:
    """Write ``<directory>/<tag>.json`` and its arrays file atomically, through the output guard; returns the
    JSON path. The folder must exist (see :class:`CheckpointFolder`); non-finite arrays raise
    TrainingDiverged and nothing is written. ``ema``: the averaged weights, with ``meta["ema_steps"]`` > 0."""
    require(tag in TAGS, f"checkpoint tag must be one of {TAGS}")
    require((ema is not None) == (meta.get("ema_steps", 0) > 0), "ema arrays go with ema_steps > 0")
    directory = Path(directory)
    arrays = flatten_arrays(params, optimizer_state, hidden_state, ema)
    bad = sorted(name for name, value in arrays.items() if not np.isfinite(value).all())
    if bad:
        raise TrainingDiverged(f"{', '.join(bad[:3])} {'is' if len(bad) == 1 else 'are'} not finite at step "
                               f"{meta.get('step')}: not saved; lower --learning_rate or clip the gradients")
    json_path = directory / f"{tag}.json"
    previous = arrays_name_in(json_path)
    step = int(meta.get("step", 0))
    arrays_name = f"{tag}-{step:06d}.npz"
    if arrays_name == previous:  # the same step again: never overwrite the file the JSON points to
        arrays_name = f"{tag}-{step:06d}b.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    write_file(directory / arrays_name, data, CHECKPOINT, flag, overwrite=True)
    document = {**meta, "format_version": FORMAT_VERSION, "arrays": arrays_name,
                "arrays_sha256": hashlib.sha256(data).hexdigest(),
                "optimizer_slots": sorted(k for k in optimizer_state if k != "step"),
                "optimizer_step": int(optimizer_state.get("step", 0))}
    write_file(json_path, json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"), CHECKPOINT, flag,
               overwrite=True)
    if previous and previous != arrays_name:
        remove_file(directory / previous, CHECKPOINT, flag)     # a bare rnnlab name: inside the folder
    return json_path


def field_in(json_path: Path, key: str):
    """One field of a checkpoint JSON that the folder's owner reads to manage the folder (not an input of
    the run), or None if the JSON is missing or not readable."""
    try:
        document = json.loads(read_bytes(json_path, "checkpoint", MAX_JSON_BYTES, follow_links=False, note=False))
        return document.get(key)
    except (RnnlabError, ValueError, AttributeError, RecursionError):
        return None


def arrays_name_in(json_path: Path) -> str | None:
    """The arrays file a checkpoint JSON names -- only if it is a bare name of the form rnnlab writes, so
    that what the JSON says can never point outside its folder. None for anything else."""
    name = field_in(json_path, "arrays")
    return name if isinstance(name, str) and ARRAYS_NAME.fullmatch(name) else None


def step_in(json_path: Path) -> int | None:
    """The step a checkpoint JSON records, or None if it is not a readable checkpoint."""
    step = field_in(json_path, "step")
    return step if type(step) is int else None


def clean_directory(directory, flag: str = "--checkpoint_dir") -> list[str]:
    """Remove what killed saves leave in a checkpoint folder: rnnlab's temporary files whose writer is gone,
    and arrays files that no JSON names. Only names of rnnlab's own forms are touched, and no arrays file
    while a JSON of the folder is unreadable (it might name any of them). Returns the names removed."""
    directory = Path(directory)
    removed = remove_stale_temps(directory)
    jsons = [directory / f"{tag}.json" for tag in TAGS]
    named = {arrays_name_in(path) for path in jsons if path.exists()}
    if any(path.exists() for path in jsons) and None in named:
        return removed
    for path in directory.iterdir():
        orphan = ARRAYS_NAME.fullmatch(path.name) and path.name not in named
        if (orphan or OLD_TMP_NAME.fullmatch(path.name)) and remove_file(path, CHECKPOINT, flag):
            removed.append(path.name)
    return removed


class CheckpointFolder:
    """The one owner of a checkpoint folder: training, resuming and exporting all write through it.

    ``check`` (before any work: nothing is touched) refuses a folder that holds another run's checkpoint
    unless ``overwrite``, and refuses to let a run continued from ``best.json`` replace a ``latest.json`` of
    a later step; the output guard's own rules (not an input, not inside the dataset, not the cache) are
    checked then too. ``open`` creates the folder, takes its lock (one writer), deletes the other run's
    checkpoint (``overwrite``: only now that the lock is ours, so never under a live run) and what killed
    saves left. ``save`` writes a tag; ``close`` gives the lock back (a later ``save`` takes it again)."""

    def __init__(self, directory, flag: str = "--checkpoint_dir", overwrite: bool = False,
                 continues: Checkpoint | None = None):
        self.directory, self.flag, self.overwrite = Path(directory), flag, overwrite
        self.continues = continues if continues is not None and same_file(directory, continues.directory) else None
        if self.continues is not None:
            note_checkpoint_read(self.directory, f"the checkpoint {continues.path}", continued=True)
        self.lock = DirectoryLock(self.directory, flag)

    def others(self) -> list[Path]:
        """Another run's checkpoint JSONs in the folder (none when this run continues the folder's own)."""
        if self.continues is not None:
            return []
        return [self.directory / f"{tag}.json" for tag in TAGS
                if (self.directory / f"{tag}.json").exists() or (self.directory / f"{tag}.json").is_symlink()]

    def check(self) -> None:
        check_folder(self.directory, CHECKPOINT, self.flag)
        for tag in TAGS:                                         # the guard's rules, before any work
            check_output(self.directory / f"{tag}.json", CHECKPOINT, self.flag, overwrite=True)
        existing = [path.name for path in self.others()]
        require(not existing or self.overwrite,
                f"{self.flag} {self.directory} already holds a run's checkpoint ({', '.join(existing)}): continue it "
                f"with --resume {self.directory}, or add --overwrite to start over")
        if self.continues is not None and self.continues.path.name == "best.json" and not self.overwrite:
            later = step_in(self.directory / "latest.json")
            step = self.continues.meta["step"]
            require(later is None or later <= step,
                    f"--resume {self.continues.path} (step {step:,}) would replace {self.directory / 'latest.json'} "
                    f"(step {later:,}), a later point of the run: resume from {self.directory} (its latest), "
                    "branch off with --checkpoint_dir NEW_FOLDER, or add --overwrite to replace it")

    def open(self) -> None:
        self.check()
        prepare_folder(self.directory, CHECKPOINT, self.flag)
        self.lock.acquire()
        for path in self.others():                              # --overwrite (check refused it otherwise)
            remove_file(path, CHECKPOINT, self.flag)
        clean_directory(self.directory, self.flag)

    def save(self, tag: str, meta: dict, params: dict, optimizer_state: dict, hidden_state: list | None = None,
             ema: dict | None = None) -> Path:
        held = self.lock.held
        if not held:
            self.lock.acquire()
        try:
            return save_checkpoint(self.directory, tag, meta, params, optimizer_state, hidden_state, self.flag, ema)
        finally:
            if not held:
                self.lock.release()

    def export(self, checkpoint: Checkpoint, dtype: str, val_loss: float | None, val_tokens: int,
               description: str) -> Path:
        """Write ``checkpoint``'s parameters alone (no optimizer moments, no carried state), cast to
        ``dtype``, as ``latest.json`` marked ``export``: a model to sample from and visualise, small enough to
        ship. ``val_loss`` is what those cast weights score on the run's validation split."""
        meta = export_document(checkpoint, dtype, val_loss, val_tokens, description)
        params = {name: value.astype(dtype) for name, value in checkpoint.weights.items()}
        self.open()
        try:
            return self.save("latest", meta, params, {"step": meta["step"]})
        finally:
            self.close()

    def close(self) -> None:
        self.lock.release()


# ---- reading -------------------------------------------------------------------------------------------

def shipped_checkpoints() -> dict:
    """{name: folder} of the pretrained models shipped in the package (rnnlab/pretrained/<name>/)."""
    from importlib import resources
    root = Path(str(resources.files("rnnlab") / "pretrained"))
    return {p.name: p for p in sorted(root.iterdir()) if (p / "latest.json").is_file()} if root.is_dir() else {}


def resolve(path) -> Path:
    """A checkpoint directory (-> its latest.json, else best.json), a JSON file, an arrays file (-> the JSON
    beside it that names it), or the name of a shipped pretrained model when no such path exists."""
    path = Path(path)
    shipped = shipped_checkpoints()
    if not path.exists() and not path.is_symlink() and str(path) in shipped:
        path = shipped[str(path)]
    if path.is_dir():
        for tag in TAGS:
            if (path / f"{tag}.json").exists() or (path / f"{tag}.json").is_symlink():
                return regular_file(path / f"{tag}.json", "checkpoint", follow_links=False)
        raise RnnlabError(f"no checkpoint in directory {path} (no latest.json or best.json): "
                          "give the --checkpoint_dir of a training run")
    if not path.exists() and not path.is_symlink():
        names = f", or a shipped model: {', '.join(shipped)}" if shipped else ""
        raise RnnlabError(f"checkpoint {path} not found: give a checkpoint directory or its latest.json / "
                          f"best.json{names}")
    path = regular_file(path, "checkpoint")
    if path.suffix == ".npz":
        for tag in TAGS:
            if arrays_name_in(path.parent / f"{tag}.json") == path.name:
                return path.parent / f"{tag}.json"
        raise RnnlabError(f"{path} is not named by any checkpoint JSON beside it: give the .json file or the directory")
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint (see the trust model above); every problem is one RnnlabError. Its files,
    folder and recorded corpus become inputs of the run (no output may replace them)."""
    json_path = resolve(path)
    meta, arrays_path, data = read_json_and_arrays(json_path)
    note_checkpoint_read(json_path.parent, f"the checkpoint {json_path}")
    note_corpus(meta["corpus"]["path"])
    task = KINDS[meta["task"]]
    config = task.config_class(**meta["model"])
    expected = expected_arrays(task.param_shapes(config), meta["optimizer_slots"], meta.get("ema_steps", 0) > 0)
    state_rows = TrainConfig(**meta["train"]).batch_size if task.kind == "lm" else 0
    arrays = read_npz(arrays_path, data, expected, (state_rows, getattr(config, "hidden_size", 0)))
    params = {name: value.astype(np.float32) if value.dtype == np.float16 else value   # float16 is storage only
              for name, value in with_prefix(arrays, "param/").items()}
    optimizer_state = {"step": meta["optimizer_step"]}
    for slot in meta["optimizer_slots"]:
        optimizer_state[slot] = with_prefix(arrays, f"opt/{slot}/")
    state = with_prefix(arrays, "state/")
    require(task.kind == "lm" or not state, f"{arrays_path} holds a carried hidden state, which a translator "
                                            "never has: the checkpoint is damaged")
    hidden = hidden_state_from(state, config, arrays_path)
    ema = with_prefix(arrays, "ema/") or None
    return Checkpoint(meta, params, optimizer_state, hidden, json_path, ema)


SAVE_RACE_ATTEMPTS = 5         # a run saving every step replaces its JSON and arrays a few times per second


def read_json_and_arrays(json_path: Path) -> tuple[dict, Path, bytes]:
    """The JSON, the path and the bytes of the arrays it names, checksum checked. A run saving into the folder
    may replace both between our two reads (the JSON names arrays it has just deleted, or we read new arrays
    against the old JSON): read both again, a few times, before calling the checkpoint damaged."""
    for attempt in range(SAVE_RACE_ATTEMPTS):
        last = attempt == SAVE_RACE_ATTEMPTS - 1
        meta = read_document(json_path)
        arrays_path = json_path.parent / meta["arrays"]
        try:
            data = read_bytes(arrays_path, "checkpoint arrays", follow_links=False)
        except RnnlabError:
            if last or arrays_path.exists() or arrays_path.is_symlink():
                require(arrays_path.exists() or arrays_path.is_symlink(), f"checkpoint arrays file {arrays_path} is "
                        "missing: the checkpoint is incomplete; use another one")
                raise
            time.sleep(0.02 * (attempt + 1))
            continue
        if hashlib.sha256(data).hexdigest() == meta["arrays_sha256"]:
            return meta, arrays_path, data
        if last:
            raise RnnlabError(f"checkpoint arrays {arrays_path} are truncated or corrupt (checksum mismatch): "
                              "use another checkpoint (e.g. best.json) or retrain")
        time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


def note_corpus(path: str | None) -> None:
    """The corpus a checkpoint records is the run's data: no output may replace it (a file, a folder's
    members or a glob's matches; a shipped corpus is inside the package, which is protected anyway)."""
    if path is None:
        return
    if glob.has_magic(path):
        note_read_pattern(path, f"the training corpus {path}")
    else:
        note_read(path, f"the training corpus {path}")


def read_document(json_path: Path) -> dict:
    data = read_bytes(json_path, "checkpoint", MAX_JSON_BYTES, follow_links=False)
    try:
        meta = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RnnlabError(f"checkpoint {json_path} is not readable JSON ({err}): it is damaged; "
                          "use another checkpoint") from None
    validate_document(meta, str(json_path))
    return meta


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a checkpoint can hold")


def expected_arrays(shapes: dict, slots: list, ema: bool = False) -> dict:
    """{member name: shape} of everything but the hidden state (whose batch size is not in the config), from
    the model's {parameter: shape}; ``ema``: the averaged weights too."""
    expected = {f"param/{name}": shape for name, shape in shapes.items()}
    for slot in slots:
        expected.update({f"opt/{slot}/{name}": shape for name, shape in shapes.items()})
    if ema:
        expected.update({f"ema/{name}": shape for name, shape in shapes.items()})
    return expected


STATE_MEMBER = re.compile(r"state/(\d{1,4})/(\d)")


def read_npz(path: Path, data: bytes, expected: dict, state_shape: tuple = (0, 0)) -> dict:
    """The arrays of an .npz archive, each checked against ``expected`` {name: shape} *before* its data is
    read; ``state/<l>/<k>`` members may be present too, each at most ``state_shape`` (rows, hidden): the
    run's batch of carried states. The members' declared sizes must fit in memory before any is
    decompressed (a few KB of deflated zeros can claim gigabytes); pickled objects are refused. Any damage
    becomes one clear RnnlabError."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {info.filename: info for info in archive.infolist()}
        declared = sum(info.file_size for info in members.values())
        require_memory(declared, f"checkpoint arrays {path}",
                       "the checkpoint is damaged or crafted, or too large for this machine")
        arrays = {}
        for member, info in members.items():
            require(member.endswith(".npy"), f"{path} holds {member!r}, which is not an array")
            name = member[:-4]
            require(name in expected or STATE_MEMBER.fullmatch(name),
                    f"{path} holds an unexpected array {name!r}: it was not written for this model")
            with archive.open(info) as f:
                shape = expected.get(name)
                arrays[name] = read_npy(f, info.file_size, shape, f"{path}: array {name}",
                                        None if shape is not None else state_shape)
    except RnnlabError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, RuntimeError, NotImplementedError) as err:
        raise RnnlabError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}): "
                          "use another checkpoint") from None
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise RnnlabError(f"{path} lacks {len(missing)} array(s) the model needs, e.g. {missing[0]!r}: "
                          "the checkpoint is incomplete; use another one")
    return arrays


def read_npy(f, size: int, shape: tuple | None, what: str, at_most: tuple | None = None) -> np.ndarray:
    """One .npy member: header first (dtype, shape -- exactly ``shape``, or a (rows, hidden) array of at most
    ``at_most`` -- and byte count checked), then exactly that many bytes."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        header_shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        header_shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise RnnlabError(f"{what}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise RnnlabError(f"{what} contains pickled Python objects, which rnnlab never loads (they can run "
                          "code): use a checkpoint written by rnnlab")
    require(dtype in FLOAT_DTYPES, f"{what} has dtype {dtype}; checkpoints hold float16, float32 or float64 arrays")
    require(shape is None or tuple(header_shape) == tuple(shape),
            f"{what} has shape {tuple(header_shape)}, the model needs {tuple(shape or ())}: the checkpoint "
            "does not match its own config")
    if shape is None:
        rows, hidden = at_most or (0, 0)
        require(len(header_shape) == 2 and header_shape[0] <= rows and header_shape[1] == hidden,
                f"{what} has shape {tuple(header_shape)}: a carried state holds at most the run's {rows} rows of "
                f"{hidden} units; the checkpoint is damaged")
    count = math.prod(header_shape)
    header_bytes = f.tell()
    require(count * dtype.itemsize == size - header_bytes,
            f"{what}: its header claims {count:,} values but the file holds {size - header_bytes:,} bytes")
    values = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=count)
    values = values.reshape(header_shape, order="F" if fortran else "C").copy(order="K")  # layout kept
    require(np.isfinite(values).all(), f"{what} holds inf or NaN values: the run had diverged; use another "
                                       "checkpoint")
    return values


def hidden_state_from(parts: dict, config: charmodel.ModelConfig, path: Path) -> list | None:
    """{"<layer>/<k>": (B, H)} -> per layer a tuple of its state parts, checked against the model."""
    if not parts:
        return None
    n_states = CELLS[config.cell].n_states
    want = {f"{layer}/{k}" for layer in range(config.num_layers) for k in range(n_states)}
    require(set(parts) == want, f"{path}: the carried hidden state does not match a {config.num_layers}-layer "
                                f"{config.cell}: the checkpoint is damaged")
    shapes = {value.shape for value in parts.values()}
    require(len(shapes) == 1 and next(iter(shapes))[1] == config.hidden_size,
            f"{path}: the carried hidden state has shapes {sorted(shapes)}, expected (batch, {config.hidden_size})")
    return [tuple(parts[f"{layer}/{k}"] for k in range(n_states)) for layer in range(config.num_layers)]
