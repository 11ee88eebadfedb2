"""``rnnlab export``: a trained model in the form another tool uses -- and proof that it computes what was trained.

=============  ==============================================  ==================  ====================
format         what is written                                 --dtype (default)   needs
=============  ==============================================  ==================  ====================
rnnlab         a folder: a weights-only checkpoint              float16, float32,   --
               (latest.json + arrays) that samples, visualises  float64
               and ships in the package (checkpoint.py)
html           ONE self-contained web page (no network, no      float16, float32    --
               external script): the weights as base64, a
               JavaScript forward pass, sampling as you watch;
               a translator's page translates and draws the
               attention map (templates/sample.html,
               templates/translate.html, templates/rnnlab.js)
onnx           an ONNX graph (opset 17), the state as explicit  float32 (float16    onnx (the [export]
               inputs and outputs (frameworks/onnx.py)          values widened)     extra)
safetensors    the weights under PyTorch's names for            float32, float16,   safetensors (the
               nn.RNN/LSTM/GRU(num_layers=L) + nn.Linear (min   float64             [export] extra)
               cells, residual block: rnnlab's torch twin
               TorchLayeredRNN), vocabulary and model in the
               metadata
=============  ==============================================  ==================  ====================

The format follows from ``--out``'s suffix (``.html``/``.htm``, ``.onnx``, ``.safetensors``; anything else is
a folder in rnnlab's format) unless ``--format`` names it. ``--dtype`` is the precision of the stored
weights; every format computes with exactly those values. Each format records the validation loss of the
weights it holds, measured again on the run's whole validation split after the cast (an exported model,
such as a shipped one, keeps its recorded loss when the cast leaves its weights unchanged, and is measured
again otherwise).

Outputs go through rnnlab's one output guard (``files.write_file``, each format its own ``files.Kind``): an
existing file rnnlab did not write is replaced only with ``--overwrite``, a folder, a link or a socket never,
a FIFO or a device only in place; nothing is written into a checkpoint folder (one holding latest.json /
best.json or a run's lock file), so neither the exported checkpoint nor another run's can be touched. Writes
are atomic.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import files
from ..data.text import NEWLINE
from ..errors import RnnlabError, require
from ..nn.activations import GELU_C, GELU_K
from ..nn.norms import EPS as NORM_EPS
from ..training.checkpoint import TAGS, Checkpoint, CheckpointFolder
from ..training.config import SETTINGS, TrainConfig
from .visualize import render_template

PAGE_DEFAULTS = {"temperature": 0.8, "top_k": None, "stream_length": 500, "name_length": 40, "names": 10, "seed": 1}


# --------------------------------------------------------------------------------------------------------
# What is exported: the (cast) weights and what a reader of the file needs to know about them
# --------------------------------------------------------------------------------------------------------

@dataclass
class ExportedModel:
    """The model an export file carries: weights (rnnlab layout, already cast to ``dtype``, as NumPy arrays
    of that dtype), its config and tokenizer, and what the file shows about it."""

    params: dict
    config: object           # model.ModelConfig (language model) or seq2seq.Seq2SeqConfig (translator)
    tokenizer: object        # text.CharTokenizer or pairs.PairTokenizers
    task: str                # "lm" or "translate"
    mode: str                # the corpus mode: "lines" (one name per line), "stream" or "pairs"
    name: str                # e.g. the checkpoint folder's name: shakespeare-lstm
    description: str
    source: str              # which checkpoint, at which step
    dtype: str
    val_loss: float | None   # nats per character of these weights on the run's validation split
    val_tokens: int

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, dtype: str, val_loss: float | None, val_tokens: int,
                        description: str = "") -> ExportedModel:
        meta = checkpoint.meta
        recorded = meta.get("export", {})
        directory = checkpoint.directory
        name = directory.name if checkpoint.path.name in (f"{tag}.json" for tag in TAGS) else checkpoint.path.stem
        return cls(cast_params(checkpoint.weights, dtype), checkpoint.model_config, checkpoint.tokenizer, meta["task"],
                   meta["corpus"]["mode"], name, description or recorded.get("description", ""),
                   recorded.get("source") or f"{checkpoint.path.name} at step {meta['step']}", dtype, val_loss,
                   val_tokens)

    def summary(self) -> dict:
        """What every format records about the model (JSON-able)."""
        return {"name": self.name, "description": self.description, "source": self.source, "task": self.task,
                "mode": self.mode, "model": self.config.to_dict(), "dtype": self.dtype, "val_loss": self.val_loss,
                "val_tokens": self.val_tokens, "parameters": int(sum(v.size for v in self.params.values()))}


def cast_params(params: dict, dtype: str) -> dict:
    """The parameters in ``dtype``; a value that does not fit it (float16 tops out at 65504) is an error."""
    with np.errstate(over="ignore"):                             # an overflow becomes inf, refused below
        cast = {name: value.astype(dtype) for name, value in params.items()}
    bad = sorted(name for name, value in cast.items() if not np.isfinite(value).all())
    require(not bad, f"{', '.join(bad[:3])} hold values too large for {dtype}: export with --dtype float32")
    return cast


def validation_loss(checkpoint: Checkpoint, dtype: str) -> tuple[float | None, int]:
    """(nats/char, characters measured) of ``checkpoint``'s weights cast to ``dtype``, on its run's whole
    validation split (the Trainer rebuilds the split from the recorded settings; ``eval_tokens`` all).
    An exported checkpoint keeps its recorded number when the cast leaves its weights unchanged."""
    from ..training.trainer import Trainer

    cast = cast_params(checkpoint.weights, dtype)
    recorded = checkpoint.meta.get("export")
    if recorded is not None:
        if all(np.array_equal(cast[name].astype(value.dtype), value) for name, value in checkpoint.weights.items()):
            return recorded["val_loss"], recorded["val_tokens"]
        trainer = exported_model_trainer(checkpoint)
    else:
        trainer = Trainer.resume(checkpoint, {"checkpoint_dir": None, "eval_tokens": None, "ema_decay": None})
    try:
        trainer.engine.load_state(cast, trainer.engine.optimizer_state())
        return trainer.validation_loss(), trainer.data.val_tokens
    finally:
        trainer.close()


def exported_model_trainer(checkpoint: Checkpoint):
    """A Trainer on an exported model's recorded data (an export cannot resume: it has no optimizer state),
    after checking that the text is still the one it was trained on."""
    from ..training.trainer import Trainer

    settings = {k: v for k, v in checkpoint.meta["train"].items() if k in SETTINGS}
    corpus = checkpoint.meta["corpus"]
    if corpus["path"] is not None:
        require(os.path.exists(corpus["path"]), f"the model's dataset {corpus['path']} no longer exists: its "
                                                "validation loss cannot be measured for the new --dtype")
        settings["dataset"] = corpus["path"]
    trainer = Trainer(TrainConfig(**{**settings, "checkpoint_dir": None, "eval_tokens": None}))
    same = all(trainer.task.fingerprint()[k] == corpus[k] for k in ("sha256", "bytes"))
    require(same, f"the model's dataset {corpus['path'] or corpus['name']} has changed since training: its "
                  "validation loss cannot be measured for the new --dtype")
    return trainer


# --------------------------------------------------------------------------------------------------------
# The formats
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffixes: tuple          # file suffixes that select it; () for the folder format
    dtypes: tuple            # the --dtype values it takes; the first is the default
    tasks: tuple             # "lm", "translate"
    render: Callable | None  # ExportedModel -> bytes of the file (None: the folder format, see cli.run_export)
    summary: str
    needs: tuple = ()        # the packages it imports (the [export] extra)
    kind: files.Kind | None = None   # how the output guard recognises a file of this format that rnnlab wrote

    def require_packages(self) -> None:
        """One line naming the extra, before any work, when a package the format needs is missing."""
        for package in self.needs:
            try:
                importlib.import_module(package)
            except ImportError:
                raise RnnlabError(f"--format {self.name} needs the {package} package, which is not installed: "
                                  "pip install 'rnnlab[export]'") from None


def page_html(model: ExportedModel) -> bytes:
    """The self-contained page: a language model samples, a translator translates (templates/)."""
    template, data = ("sample.html", lm_page_data(model)) if model.task == "lm" else \
        ("translate.html", translator_page_data(model))
    return render_template(template, f"{model.name} \u2014 rnnlab", data).encode("utf-8")


def onnx_bytes(model: ExportedModel) -> bytes:
    from ..frameworks import load_framework

    onnx = load_framework("onnx")
    return onnx.to_onnx(model.params, model.config, {f"rnnlab.{key}": text for key, text in metadata(model).items()})


def safetensors_bytes(model: ExportedModel) -> bytes:
    """The weights under the state_dict names of rnnlab's PyTorch twin (frameworks.to_torch, NumPy only), in
    ``dtype``; the metadata (str -> str) says the rest, ``torch_module`` which module takes them:

    * RNN / LSTM / GRU in the plain stack: ``TorchCharRNN``'s names, ``rnn.*`` = nn.RNN/LSTM/GRU(num_layers=L)
      and ``out.*`` = nn.Linear(H, V) -- torch.nn alone loads them (docs/frameworks.md).
    * minGRU / minLSTM, and every cell in the residual block: ``torch_layers.TorchLayeredRNN``'s names
      (``layers.{k}.proj`` nn.Linear, ``norm1`` nn.RMSNorm / nn.LayerNorm, ``ff.0`` / ``ff.2`` nn.Linear,
      ``emb`` nn.Embedding, ...). torch.nn has no module for these models as a whole: rnnlab's twin, which
      the tests hold to NumPy to float64 round-off, loads them with ``load_state_dict``."""
    from safetensors.numpy import save

    from ..frameworks import to_torch

    tensors = to_torch(model.params, model.config)
    return save(tensors, metadata={**metadata(model), "torch_module": torch_module(model.config)})


TORCH_MODULES = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}
LAYERED_MODULE = "rnnlab.frameworks.torch_layers.TorchLayeredRNN"


def torch_module(config) -> str:
    """The module whose state_dict a safetensors export holds (the plain stack of a torch.nn cell, or the twin)."""
    from ..frameworks import layered

    return LAYERED_MODULE if layered(config) else TORCH_MODULES[config.cell]


def metadata(model: ExportedModel) -> dict:
    """{str: str}: what ONNX's metadata_props and safetensors' __metadata__ record about the model."""
    config = model.config
    tokenizer = model.tokenizer
    return {"format": "rnnlab-char-lm", "cell": config.cell, "block": config.block,
            "hidden_size": str(config.hidden_size), "num_layers": str(config.num_layers),
            "vocab_size": str(config.vocab_size), "model": json.dumps(config.to_dict()),
            "vocabulary": json.dumps(tokenizer.chars, ensure_ascii=False),
            "unk_token": json.dumps(tokenizer.unk_token, ensure_ascii=False), "mode": model.mode,
            "input": "one-hot character ids, time first (T, B)", "name": model.name,
            "description": model.description, "source": model.source, "dtype": model.dtype,
            "val_loss": json.dumps(model.val_loss), "val_tokens": str(model.val_tokens)}


FORMATS = {
    "rnnlab": ExportFormat("rnnlab", (), ("float16", "float32", "float64"), ("lm", "translate"), None,
                           "a weights-only rnnlab checkpoint folder"),
    "html": ExportFormat("html", (".html", ".htm"), ("float16", "float32"), ("lm", "translate"), page_html,
                         "a self-contained web page",
                         kind=files.export_kind("a page written by rnnlab", (files.PAGE_MARK,))),
    "onnx": ExportFormat("onnx", (".onnx",), ("float32", "float16"), ("lm",), onnx_bytes, "an ONNX graph",
                         ("onnx",), files.export_kind("an ONNX graph written by rnnlab", (b"rnnlab",))),
    "safetensors": ExportFormat("safetensors", (".safetensors",), ("float32", "float16", "float64"), ("lm",),
                                safetensors_bytes, "PyTorch weights", ("safetensors",),
                                files.export_kind("a safetensors file written by rnnlab", (b"rnnlab-char-lm",))),
}


def export_format(name: str, out: str) -> ExportFormat:
    """The format ``--format`` names, or (``auto``) the one ``--out``'s suffix selects; a suffix that
    contradicts ``--format`` is an error (``--format html --out model.onnx`` is surely a slip)."""
    suffix = Path(out).suffix.lower()
    by_suffix = next((f for f in FORMATS.values() if suffix in f.suffixes), FORMATS["rnnlab"])
    if name == "auto":
        return by_suffix
    chosen = FORMATS[name]
    require(not by_suffix.suffixes or by_suffix is chosen,
            f"--out {out} has the suffix of the {by_suffix.name} format but --format is {name}: "
            + (f"name the file {Path(out).stem}{chosen.suffixes[0]}" if chosen.suffixes else "give a folder name"))
    return chosen


def export_dtype(fmt: ExportFormat, dtype: str | None) -> str:
    """--dtype for ``fmt``: its default when not given; one it cannot hold is an error."""
    if dtype is None:
        return fmt.dtypes[0]
    require(dtype in fmt.dtypes, f"--format {fmt.name} stores {', '.join(fmt.dtypes)} weights, not {dtype}: "
                                 f"give --dtype {fmt.dtypes[0]}")
    return dtype


def export_file(checkpoint: Checkpoint, fmt: ExportFormat, out, dtype: str, overwrite: bool,
                description: str = "") -> tuple[Path, ExportedModel]:
    """Export ``checkpoint`` to the file ``out`` in ``fmt`` (not the folder format): checks first (the
    target, the task), then the validation loss of the cast weights, then the one guarded write."""
    require(checkpoint.meta["task"] in fmt.tasks,
            f"--format {fmt.name} exports language models; {checkpoint.path} holds a translator: export it as "
            f"{' or '.join(f.name for f in FORMATS.values() if checkpoint.meta['task'] in f.tasks)}")
    require(not getattr(checkpoint.model_config, "has_zoneout", False),
            f"--format {fmt.name}: {checkpoint.path} was trained with zoneout, which mixes every new state with the "
            f"previous one (h_t = p h_(t-1) + (1 - p) h~_t), and {fmt.summary} computes the plain cell: export it "
            "as rnnlab (rnnlab sample and visualize run it)")
    files.check_output(out, fmt.kind, "--out", overwrite)       # before any work
    fmt.require_packages()
    val_loss, val_tokens = validation_loss(checkpoint, dtype)
    model = ExportedModel.from_checkpoint(checkpoint, dtype, val_loss, val_tokens, description)
    return files.write_file(out, fmt.render(model), fmt.kind, "--out", overwrite), model


@dataclass(frozen=True)
class Exported:
    """What an export wrote, for the caller to report."""

    path: Path
    format: ExportFormat
    dtype: str
    val_loss: float | None
    val_tokens: int


def export(checkpoint: Checkpoint, format_name: str, out, dtype: str | None = None, overwrite: bool = False,
           description: str = "") -> Exported:
    """``rnnlab export``: ``checkpoint`` in ``format_name`` (auto: from ``out``'s suffix) at ``out``, its weights
    cast to ``dtype`` (default: the format's), with the validation loss of the cast weights. Every check comes
    before the validation pass; the folder format goes through its owner (CheckpointFolder)."""
    fmt = export_format(format_name, out)
    dtype = export_dtype(fmt, dtype)
    if fmt.render is not None:
        path, model = export_file(checkpoint, fmt, out, dtype, overwrite, description)
        return Exported(path, fmt, dtype, model.val_loss, model.val_tokens)
    checkpoint.require_training_run("be exported again to this format")
    folder = CheckpointFolder(out, "--out", overwrite=overwrite)
    folder.check()                                               # before the validation pass, not after it
    val_loss, val_tokens = validation_loss(checkpoint, dtype)
    return Exported(folder.export(checkpoint, dtype, val_loss, val_tokens, description), fmt, dtype, val_loss,
                    val_tokens)


# --------------------------------------------------------------------------------------------------------
# The pages' data (read by templates/rnnlab.js)
# --------------------------------------------------------------------------------------------------------

def weights_blob(params: dict) -> dict:
    """Every array's bytes, little-endian, one after the other, as ONE base64 string, and where each begins:
    {"dtype", "base64", "arrays": [{"name", "shape", "offset" (in elements)}]}. The page decodes it with
    ``decodeWeights`` (float16 through ``halfToFloat``: exact, every float16 is a float32)."""
    dtypes = {value.dtype for value in params.values()}
    require(len(dtypes) == 1, f"the page stores one dtype, the weights have {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    arrays, chunks, offset = [], [], 0
    for name, value in params.items():
        arrays.append({"name": name, "shape": list(value.shape), "offset": offset})
        chunks.append(np.ascontiguousarray(value, dtype=dtype.newbyteorder("<")).tobytes())
        offset += value.size
    return {"dtype": str(dtype), "arrays": arrays, "base64": base64.b64encode(b"".join(chunks)).decode("ascii")}


def page_header(model: ExportedModel) -> dict:
    summary = model.summary()
    loss = model.val_loss
    summary["val_bits"] = None if loss is None else loss / math.log(2)
    return summary


# The constants of rnnlab's maths that the page's residual block uses, handed over from the code that defines
# them (norms.py, activations.py) rather than written a second time in rnnlab.js.
PAGE_CONSTANTS = {"norm_eps": NORM_EPS, "gelu_c": GELU_C, "gelu_k": GELU_K}


def lm_page_data(model: ExportedModel) -> dict:
    tokenizer = model.tokenizer
    names = model.mode == "lines"
    return {"format": 1, **page_header(model), "vocabulary": list(tokenizer.chars), "unk_token": tokenizer.unk_token,
            "constants": PAGE_CONSTANTS,
            "start": NEWLINE if NEWLINE in tokenizer.index else tokenizer.chars[0], "names": names,
            "defaults": {"temperature": PAGE_DEFAULTS["temperature"], "top_k": PAGE_DEFAULTS["top_k"],
                         "length": PAGE_DEFAULTS["name_length" if names else "stream_length"],
                         "count": PAGE_DEFAULTS["names"] if names else 1, "seed": PAGE_DEFAULTS["seed"]},
            "weights": weights_blob(model.params)}


def translator_page_data(model: ExportedModel) -> dict:
    tokenizers = model.tokenizer
    return {"format": 1, **page_header(model), "source_vocabulary": list(tokenizers.source.chars),
            "target_vocabulary": list(tokenizers.target.chars), "end_id": tokenizers.end_id,
            "weights": weights_blob(model.params)}
