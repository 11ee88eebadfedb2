"""training/tasks.py and kinds.py: a run's task follows its data, and what a checkpoint needs of a task is
its kind alone."""

import pytest

from rnnlab.data.pairs import PairTokenizers
from rnnlab.data.text import CharTokenizer
from rnnlab.nn.model import ModelConfig
from rnnlab.training.config import TrainConfig
from rnnlab.training.kinds import KINDS, LanguageModelKind, TranslatorKind, kind_of
from rnnlab.training.tasks import TASKS, LanguageModelTask, TranslationTask, make_task


def test_the_task_follows_the_data():
    assert isinstance(make_task(TrainConfig(dataset="dinos")), LanguageModelTask)
    assert isinstance(make_task(TrainConfig(dataset="dates")), TranslationTask)


def test_every_task_is_built_on_its_kind_and_the_kinds_are_the_checkpoints_tasks():
    assert set(TASKS) == set(KINDS) == {"lm", "translate"}
    assert issubclass(TASKS["lm"], LanguageModelKind) and issubclass(TASKS["translate"], TranslatorKind)
    assert kind_of({"task": "translate"}) is TranslatorKind


def test_a_kind_rebuilds_and_checks_its_tokenizer():
    tokenizer = CharTokenizer.fit("abc\n")
    assert LanguageModelKind.tokenizer_from_dict(tokenizer.to_dict()) == tokenizer
    config = ModelConfig(vocab_size=4, cell="rnn", hidden_size=3)
    assert LanguageModelKind.vocabulary_fits(config, tokenizer)
    pairs = PairTokenizers.fit([("ab", "xy")])
    assert TranslatorKind.tokenizer_from_dict(pairs.to_dict()).target == pairs.target


def test_an_unknown_task_is_one_error():
    from rnnlab.errors import RnnlabError
    with pytest.raises(RnnlabError, match="unknown task 'vision'"):
        kind_of({"task": "vision"})
