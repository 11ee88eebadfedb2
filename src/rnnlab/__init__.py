"""rnnlab: character-level recurrent language models written from scratch in NumPy.

The names below are loaded when first used (PEP 562), so that importing one part of rnnlab -- reading a
checkpoint, say -- does not load the rest (the trainer, the translator's decoding, the engines)."""

import importlib

__all__ = ["CharTokenizer", "ModelConfig", "RnnlabError", "TrainConfig", "Trainer", "load_corpus"]
__version__ = "0.1.0"

_WHERE = {"CharTokenizer": "rnnlab.data.text", "ModelConfig": "rnnlab.nn.model", "RnnlabError": "rnnlab.errors",
          "TrainConfig": "rnnlab.training.config", "Trainer": "rnnlab.training.trainer",
          "load_corpus": "rnnlab.data.corpus"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
