"""rnnlab: character-level recurrent language models written from scratch in NumPy."""

from .data.corpus import load_corpus
from .data.text import CharTokenizer
from .errors import RnnlabError
from .nn.model import ModelConfig
from .training.trainer import TrainConfig, Trainer

__all__ = ["CharTokenizer", "ModelConfig", "RnnlabError", "TrainConfig", "Trainer", "load_corpus"]
__version__ = "0.1.0"
