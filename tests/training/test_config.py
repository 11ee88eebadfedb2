"""training/config.py: the settings, five dataclasses by concern, each option one field whose metadata drives
the CLI, the checks and the resume policy."""

import dataclasses

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.training.config import (
    CONTENT,
    FREE,
    GROUPS,
    HERE,
    LOCKED,
    SETTINGS,
    TrainConfig,
    config_for_data,
    resume_config,
)


def test_every_setting_is_declared_once_with_help_and_a_resume_policy():
    names = [f.name for cls in GROUPS.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(SETTINGS)
    for name, (_, f) in SETTINGS.items():
        assert f.metadata["help"].strip(), name
        assert f.metadata["resume"] in (LOCKED, FREE, HERE, CONTENT), name


def test_a_config_is_built_flat_read_flat_and_grouped_by_concern():
    config = TrainConfig(hidden_size=8, learning_rate=0.01, threads=1)
    assert (config.hidden_size, config.model.hidden_size) == (8, 8)
    assert (config.learning_rate, config.optim.learning_rate, config.compute.threads) == (0.01, 0.01, 1)
    assert TrainConfig(**config.to_dict()) == config
    assert config.replace(hidden_size=16).hidden_size == 16 and config.hidden_size == 8
    with pytest.raises(AttributeError):
        config.hidden_size = 3                               # a config does not change


@pytest.mark.parametrize("settings, message", [
    ({"hidden_size": 0}, "--hidden_size must be > 0, got 0"),
    ({"dropout": 1.0}, "--dropout must be in [0, 1), got 1.0"),
    ({"cell": "transformer"}, "--cell must be one of"),
    ({"clip_value": 0.0}, "use 'none' to turn it off"),
    ({"seed": -1}, "--seed must be in [0, "),
    ({"dist_timeout": 0.0}, "--dist_timeout must be between 0 and 86400 seconds"),
    ({"device": "cuda"}, "--device cuda needs the torch engine"),
    ({"learning_rate": float("inf")}, "--learning_rate must be a finite number"),
    ({"hidden_sizes": 8}, "unknown training setting(s) ['hidden_sizes']"),
])
def test_each_bad_value_is_one_error_naming_the_flag(settings, message):
    with pytest.raises(RnnlabError) as err:
        TrainConfig(**settings)
    assert message in str(err.value)


def test_the_resume_policy_is_read_from_each_settings_metadata():
    saved = TrainConfig(hidden_size=8, checkpoint_dir="/old/place", threads=3).to_dict()
    config, notes = resume_config(saved, {"learning_rate": 0.01, "checkpoint_dir": "here", "dataset": "other"})
    assert (config.learning_rate, config.checkpoint_dir, config.threads) == (0.01, "here", None)   # HERE: now's
    assert notes == ["learning_rate changed from the default to 0.01"]        # CONTENT (dataset): no note
    for name, (_, f) in SETTINGS.items():
        if f.metadata["resume"] == LOCKED and f.type is int:
            with pytest.raises(RnnlabError, match=f"--{name} .* cannot change on --resume"):
                resume_config(saved, {name: saved[name] + 1 if saved[name] is not None else 1})


def test_pairs_data_takes_the_translators_defaults():
    assert config_for_data({"dataset": "dates"}).hidden_size == 128
    assert config_for_data({"dataset": "dates", "hidden_size": 16}).hidden_size == 16
    assert config_for_data({"dataset": "dinos"}).hidden_size == 50


def test_a_checkpoint_without_settings_added_later_still_reads():
    """The schema lets a setting with a default be absent (a checkpoint from before it existed)."""
    saved = TrainConfig().to_dict()
    for name in ("block", "norm", "ffn_mult", "dist_timeout", "metrics_file"):
        del saved[name]
    TrainConfig.schema().check(saved, "train")
    assert TrainConfig(**saved).block == "plain"
