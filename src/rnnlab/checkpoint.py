"""Checkpoints: arrays in ``.npz``, everything else in JSON, never pickle; written so a crash loses nothing.

A checkpoint directory holds, per *tag* (``latest``, ``best``):

    latest.json              format version, model + training config, tokenizer, counters, RNG states,
                             optimizer name and hyper-parameters, and the name of its arrays file
    latest-000300.npz        parameters ``param/<name>``, optimizer moments ``opt/<slot>/<name>``, and the
                             hidden state carried between windows ``state/<layer>/<k>``

Crash safety: the arrays go to a new file (written to a temporary name, flushed, then renamed), and only
then is the JSON atomically replaced to point at it; the previous arrays file is deleted last. A kill at any
moment leaves a JSON that points to a complete arrays file. The JSON also records the SHA-256 of its arrays,
so a truncated or altered file is detected on load with a clear message.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import model as charmodel
from .errors import RnnlabError, require
from .files import atomic_write_bytes
from .text import CharTokenizer

FORMAT_VERSION = 1
TAGS = ("latest", "best")


@dataclass
class Checkpoint:
    meta: dict                   # the JSON document
    params: dict                 # {name: array} in rnnlab's layout
    optimizer_state: dict        # {"step": int, slot: {name: array}}
    hidden_state: list | None    # per layer, a tuple of (B, H) arrays; None when nothing is carried
    path: Path                   # the JSON file it was read from

    @property
    def model_config(self) -> charmodel.ModelConfig:
        return charmodel.ModelConfig(**self.meta["model"])

    @property
    def tokenizer(self) -> CharTokenizer:
        return CharTokenizer.from_dict(self.meta["tokenizer"])


def flatten_arrays(params: dict, optimizer_state: dict, hidden_state: list | None) -> dict:
    arrays = {f"param/{name}": value for name, value in params.items()}
    for slot, values in optimizer_state.items():
        if slot != "step":
            arrays.update({f"opt/{slot}/{name}": value for name, value in values.items()})
    for layer, parts in enumerate(hidden_state or []):
        arrays.update({f"state/{layer}/{k}": value for k, value in enumerate(parts)})
    return arrays


def save_checkpoint(directory, tag: str, meta: dict, params: dict, optimizer_state: dict,
                    hidden_state: list | None = None) -> Path:
    """Write ``<directory>/<tag>.json`` and its arrays file atomically; returns the JSON path."""
    require(tag in TAGS, f"checkpoint tag must be one of {TAGS}")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RnnlabError(f"cannot create checkpoint directory {directory}: {err.strerror}") from None
    json_path = directory / f"{tag}.json"
    previous = _arrays_name(json_path)
    step = int(meta.get("step", 0))
    arrays_name = f"{tag}-{step:06d}.npz"
    if arrays_name == previous:  # the same step again: never overwrite the file the JSON points to
        arrays_name = f"{tag}-{step:06d}b.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **flatten_arrays(params, optimizer_state, hidden_state))
    data = buffer.getvalue()
    atomic_write_bytes(directory / arrays_name, data, "checkpoint")
    document = {**meta, "format_version": FORMAT_VERSION, "arrays": arrays_name,
                "arrays_sha256": hashlib.sha256(data).hexdigest(),
                "optimizer_slots": sorted(k for k in optimizer_state if k != "step"),
                "optimizer_step": int(optimizer_state.get("step", 0))}
    atomic_write_bytes(json_path, json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"), "checkpoint")
    if previous and previous != arrays_name:
        (directory / previous).unlink(missing_ok=True)
    return json_path


def _arrays_name(json_path: Path) -> str | None:
    try:
        return json.loads(json_path.read_text(encoding="utf-8")).get("arrays")
    except (OSError, ValueError):
        return None


def resolve(path) -> Path:
    """A checkpoint directory (-> its latest.json), a JSON file, or an arrays file (-> the JSON naming it)."""
    path = Path(path)
    if path.is_dir():
        for tag in TAGS:
            if (path / f"{tag}.json").exists():
                return path / f"{tag}.json"
        raise RnnlabError(f"no checkpoint in directory {path} (no latest.json or best.json): "
                          "give the --checkpoint_dir of a training run")
    if not path.exists():
        raise RnnlabError(f"checkpoint {path} not found: give a checkpoint directory or its latest.json / best.json")
    if path.suffix == ".npz":
        for json_path in sorted(path.parent.glob("*.json")):
            if _arrays_name(json_path) == path.name:
                return json_path
        raise RnnlabError(f"{path} is not named by any checkpoint JSON beside it: give the .json file or the directory")
    return path


def load_checkpoint(path) -> Checkpoint:
    json_path = resolve(path)
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RnnlabError(f"checkpoint {json_path} is not readable JSON ({err}): it is damaged; use another checkpoint") from None
    require(isinstance(meta, dict) and "format_version" in meta,
            f"{json_path} is not an rnnlab checkpoint (no format_version)")
    version = meta["format_version"]
    require(version == FORMAT_VERSION,
            f"checkpoint {json_path} has format version {version}; this rnnlab reads version {FORMAT_VERSION}: "
            "use the rnnlab version that wrote it")
    arrays_path = json_path.parent / meta.get("arrays", "")
    require(arrays_path.is_file(), f"checkpoint arrays file {arrays_path} is missing: the checkpoint is incomplete")
    data = arrays_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("arrays_sha256"):
        raise RnnlabError(f"checkpoint arrays {arrays_path} are truncated or corrupt (checksum mismatch): "
                          "use another checkpoint (e.g. best.json) or retrain")
    arrays = read_npz(arrays_path, data)
    params = with_prefix(arrays, "param/")
    optimizer_state = {"step": int(meta.get("optimizer_step", 0))}
    for slot in meta.get("optimizer_slots", []):
        optimizer_state[slot] = with_prefix(arrays, f"opt/{slot}/")
    per_layer: dict[int, list] = {}                              # "state/<layer>/<k>" -> layer -> [part k]
    for key, value in sorted(with_prefix(arrays, "state/").items(), key=lambda kv: tuple(map(int, kv[0].split("/")))):
        per_layer.setdefault(int(key.split("/")[0]), []).append(value)
    hidden = [tuple(parts) for _, parts in sorted(per_layer.items())] or None
    checkpoint = Checkpoint(meta, params, optimizer_state, hidden, json_path)
    try:
        config = checkpoint.model_config
    except (TypeError, ValueError) as err:
        raise RnnlabError(f"checkpoint {json_path} has an invalid model config: {err}") from None
    try:
        charmodel.check_params(config, params)
    except RnnlabError as err:
        raise RnnlabError(f"checkpoint {json_path} does not match its own config: {err}") from None
    for slot in meta.get("optimizer_slots", []):
        require(optimizer_state[slot].keys() == params.keys(),
                f"checkpoint {json_path}: optimizer slot {slot!r} does not cover every parameter")
    require(checkpoint.tokenizer.vocab_size == config.vocab_size,
            f"checkpoint {json_path}: tokenizer has {checkpoint.tokenizer.vocab_size} characters, "
            f"the model {config.vocab_size}")
    return checkpoint


def with_prefix(arrays: dict, prefix: str) -> dict:
    """The entries whose key starts with ``prefix``, with the prefix removed (the inverse of flatten_arrays)."""
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def read_npz(path: Path, data: bytes | None = None) -> dict:
    """All arrays of an .npz (from ``data`` when the bytes are already read), refusing pickled objects; any
    damage becomes one clear RnnlabError."""
    try:
        with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise RnnlabError(f"{path} contains pickled Python objects, which rnnlab never loads "
                              "(they can run code): use a checkpoint written by rnnlab") from None
        raise RnnlabError(f"{path} is not a valid .npz file ({err}): use another checkpoint") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise RnnlabError(f"{path} is truncated or corrupt ({type(err).__name__}): use another checkpoint") from None
