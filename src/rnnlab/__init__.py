"""rnnlab: character-level recurrent language models written from scratch in NumPy.

The public names below are imported on first use, so importing one submodule does not import them all.
"""

import importlib

_PUBLIC = {"CharTokenizer": "text", "load_corpus": "text", "ModelConfig": "model", "RnnlabError": "errors",
           "TrainConfig": "train", "Trainer": "train"}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
