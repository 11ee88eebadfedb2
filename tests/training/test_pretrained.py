"""The pretrained models shipped in the package (src/rnnlab/pretrained/, trained and exported by
scripts/train_pretrained.py): their names resolve from any folder, they sample and visualise offline, and
the validation loss each records is what rnnlab measures on the shipped split with the shipped weights."""

import math

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.training import checkpoint as ckpt
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.config import SETTINGS, TrainConfig
from rnnlab.training.trainer import Trainer

SHIPPED = ("shakespeare-lstm", "shakespeare-gru", "shakespeare-mingru")
LAYERS = {"shakespeare-lstm": 2, "shakespeare-gru": 2, "shakespeare-mingru": 3}


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Run from an empty folder: the names must resolve to the package, not to anything here."""
    monkeypatch.chdir(tmp_path)


def test_the_models_are_in_the_package_small_and_float16():
    shipped = ckpt.shipped_checkpoints()
    assert set(SHIPPED) <= set(shipped)
    for name in SHIPPED:
        checkpoint = load_checkpoint(name)
        meta = checkpoint.meta
        assert meta["model"]["cell"] == name.split("-")[1] and meta["model"]["num_layers"] == LAYERS[name]
        assert meta["export"]["dtype"] == "float16" and meta["optimizer_slots"] == []
        arrays = shipped[name] / meta["arrays"]
        assert arrays.stat().st_size < 4 * 2**20                  # the budget: about 4 MB each
        with np.load(arrays) as npz:
            assert all(npz[key].dtype == np.float16 for key in npz.files)
        # nothing in the shipped JSON names a folder of the machine that trained it
        assert all(meta["train"].get(key) is None for key in ("checkpoint_dir", "metrics_file", "cache_dir"))


def test_sample_list_names_them_with_their_validation_loss(capsys):
    assert main(["sample", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in SHIPPED:
        line = next(line for line in lines if line.startswith(name))
        assert "validation" in line and "nats/char" in line


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_samples_shakespeare_like_text(name, capsys):
    """Sampling from the shipped weights: the requested length, only the model's characters, and text that
    looks learnt (mostly letters and spaces, real words) rather than noise."""
    assert main(["sample", "--checkpoint", name, "--length", "400", "--seed", "3", "--temperature", "0.7",
                 "--prime", "ROMEO:"]) == 0
    text = capsys.readouterr().out
    vocab = set(load_checkpoint(name).tokenizer.chars)
    assert set(text) - {"\n"} <= vocab
    words = text.split()
    common = {"the", "and", "of", "to", "my", "I", "you", "a", "in", "that", "is", "not", "with", "me", "be"}
    assert sum(word.strip(",.;:!?'") in common for word in words) >= 5, text


def test_a_shipped_model_visualises(tmp_path):
    out = tmp_path / "gru.html"
    assert main(["visualize", "--checkpoint", "shakespeare-gru", "--text", "To be, or not to be: that is the question.",
                 "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html") or page.lstrip().lower().startswith("<!doctype html")
    assert "question" in page


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_the_recorded_validation_loss_is_what_rnnlab_measures_on_the_shipped_split(name):
    """Rebuild the run's data split from the recorded settings, load the float16 weights, and score the
    whole validation split again: it must equal what the export recorded (same code path, same weights;
    rel 1e-6 allows only summation-order differences between BLAS builds)."""
    checkpoint = load_checkpoint(name)
    settings = {k: v for k, v in checkpoint.meta["train"].items() if k in SETTINGS}
    trainer = Trainer(TrainConfig(**{**settings, "eval_tokens": None}))
    try:
        trainer.engine.load_state(checkpoint.params, trainer.engine.optimizer_state())
        measured = trainer.validation_loss()
    finally:
        trainer.close()
    recorded = checkpoint.meta["export"]["val_loss"]
    assert trainer.data.val_tokens == checkpoint.meta["export"]["val_tokens"]
    assert measured == pytest.approx(recorded, rel=1e-6)
    assert recorded < math.log(len(checkpoint.tokenizer.chars)) - 2.5     # far below a uniform guess (ln 64 = 4.16)
