"""What a checkpoint needs to know about the model it holds, per task: its config class, the schema of its
tokenizer and how to rebuild it, its parameter shapes, whether a tokenizer fits it, how to describe it.

Static descriptions only: reading a checkpoint imports these and the model math (``nn``), never the
machinery that trains or decodes (``tasks.py``, the engines, ``generate.translate``). ``tasks.py`` builds
each task on its kind.
"""

from __future__ import annotations

import numpy as np

from .. import schema as s
from ..data.pairs import PairTokenizers
from ..data.text import CharTokenizer
from ..errors import RnnlabError
from ..nn import model as charmodel
from ..nn import seq2seq as s2s

CHAR = s.Str(pattern=r"(?s).", max_len=1)
CHAR_TOKENIZER = s.Object({"chars": s.ListOf(CHAR, max_len=2 ** 21), "unk_token": s.Optional(CHAR)})


class LanguageModelKind:
    """A character language model: model.ModelConfig, one CharTokenizer."""

    kind = "lm"
    config_class = charmodel.ModelConfig
    tokenizer_schema = CHAR_TOKENIZER

    @staticmethod
    def describe_model(m) -> str:
        block = f", residual block ({m.norm} norm, feed-forward {m.ffn_size})" if m.residual else ""
        return f"{m.cell} {m.num_layers}x{m.hidden_size}{block}, vocabulary {m.vocab_size}"

    @staticmethod
    def training_bytes(model_config, batch, steps, itemsize, slots) -> int:
        return charmodel.training_bytes(model_config, batch, steps, itemsize, slots)

    @staticmethod
    def param_shapes(model_config) -> dict:
        return charmodel.param_shapes(model_config)

    @staticmethod
    def tokenizer_from_dict(data: dict) -> CharTokenizer:
        return CharTokenizer.from_dict(data)

    @staticmethod
    def vocabulary_fits(model_config, tokenizer) -> bool:
        return tokenizer.vocab_size == model_config.vocab_size

    @staticmethod
    def vocab_size(model_config) -> int:
        """The size of what is predicted (a uniform guess scores ln of it)."""
        return model_config.vocab_size


class TranslatorKind:
    """A sequence-to-sequence translator: seq2seq.Seq2SeqConfig, a source and a target tokenizer."""

    kind = "translate"
    config_class = s2s.Seq2SeqConfig
    tokenizer_schema = s.Object({"source": CHAR_TOKENIZER, "target": CHAR_TOKENIZER})

    @staticmethod
    def describe_model(m) -> str:
        return (f"translator: bi-{m.encoder_cell} {m.encoder_hidden} -> {m.decoder_cell} {m.decoder_hidden}, "
                f"{m.attention} attention, vocabulary {m.source_vocab_size} -> {m.target_vocab_size}")

    @staticmethod
    def training_bytes(model_config, batch, steps, itemsize, slots) -> int:
        n_params = sum(int(np.prod(shape)) for shape in s2s.param_shapes(model_config).values())
        m = model_config                                        # per (step, example): states, caches, logits
        widths = 2 * m.encoder_hidden * 8 + m.decoder_hidden * 12 + m.target_vocab_size * 2
        return itemsize * (n_params * (2 + slots) + steps * batch * widths)

    @staticmethod
    def param_shapes(model_config) -> dict:
        return s2s.param_shapes(model_config)

    @staticmethod
    def tokenizer_from_dict(data: dict) -> PairTokenizers:
        return PairTokenizers.from_dict(data)

    @staticmethod
    def vocabulary_fits(model_config, tokenizer) -> bool:
        return (tokenizer.source.vocab_size, tokenizer.target.vocab_size) == (
            model_config.source_vocab_size, model_config.target_vocab_size)

    @staticmethod
    def vocab_size(model_config) -> int:
        return model_config.target_vocab_size


KINDS = {kind.kind: kind for kind in (LanguageModelKind, TranslatorKind)}


def kind_of(meta: dict):
    """The kind of a checkpoint document (its ``"task"``, validated by the checkpoint schema)."""
    try:
        return KINDS[meta["task"]]
    except KeyError:
        raise RnnlabError(f"unknown task {meta.get('task')!r}: use one of {', '.join(KINDS)}") from None
