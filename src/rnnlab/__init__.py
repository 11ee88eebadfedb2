"""rnnlab: character-level recurrent language models written from scratch in NumPy."""

from .corpus import load_corpus
from .errors import RnnlabError
from .model import ModelConfig
from .text import CharTokenizer
from .train import TrainConfig, Trainer

__all__ = ["CharTokenizer", "ModelConfig", "RnnlabError", "TrainConfig", "Trainer", "load_corpus"]
__version__ = "0.1.0"
