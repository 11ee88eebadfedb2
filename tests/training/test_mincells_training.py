"""The new cells and the residual block through the whole tool: train, checkpoint, resume exactly, sample,
visualise; checkpoints written before ``block`` existed still load; the flags are checked and locked."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_checkpoint import assert_same_training, run  # (tests/ is on sys.path, as for crosscheck)

from rnnlab.errors import RnnlabError
from rnnlab.generate.sampling import sample
from rnnlab.nn.model import ModelConfig
from rnnlab.tools.visualize import visualization_data
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

pytestmark = pytest.mark.slow      # trains and resumes whole runs


@pytest.mark.parametrize("cell,block", [("mingru", "plain"), ("minlstm", "plain"), ("mingru", "residual"),
                                        ("minlstm", "residual"), ("gru", "residual")])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, stream_corpus, cell, block):
    """2N steps == N steps + resume to 2N: parameters, optimizer moments, carried state, metrics, samples --
    with dropout on (two masks per layer in the residual block), so its Generator is restored too."""
    common = dict(dataset=stream_corpus, cell=cell, block=block, hidden_size=12, num_layers=2, dropout=0.1,
                  batch_size=4, seq_length=16, sample_every=10, num_samples=2, sample_length=30, norm="layer",
                  ffn_mult=2)
    full, full_metrics = run(TrainConfig(iterations=40, checkpoint_dir=str(tmp_path / "full"), **common))
    half, half_metrics = run(TrainConfig(iterations=20, checkpoint_dir=str(tmp_path / "half"), **common))
    resumed, resumed_metrics = run(TrainConfig(iterations=40, checkpoint_dir=str(tmp_path / "half"), **common),
                                   resume_from=tmp_path / "half")
    assert_same_training(full, resumed)
    assert {**half_metrics, **resumed_metrics} == full_metrics
    meta = json.loads((tmp_path / "full" / "latest.json").read_text())
    assert meta["model"]["block"] == block and meta["model"]["cell"] == cell


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rnnlab.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_train_resume_sample_and_visualize_from_the_command_line(tmp_path, stream_corpus):
    """``rnnlab train --cell mingru --block residual`` end to end; a flag that changes the model's shape is
    refused on resume in one line (exit status 2)."""
    run_dir = tmp_path / "run"
    trained = cli("train", "--dataset", stream_corpus, "--cell", "mingru", "--block", "residual", "--num_layers", "2",
                  "--hidden_size", "16", "--batch_size", "4", "--seq_length", "16", "--iterations", "12",
                  "--checkpoint_dir", str(run_dir), "--quiet")
    assert trained.returncode == 0, trained.stderr
    for flag, value in (("--block", "plain"), ("--norm", "layer"), ("--ffn_mult", "2"), ("--cell", "minlstm")):
        refused = cli("train", "--resume", str(run_dir), flag, value, "--iterations", "14")
        assert refused.returncode == 2 and flag in refused.stderr and len(refused.stderr.splitlines()) == 1
    resumed = cli("train", "--resume", str(run_dir), "--iterations", "14", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "latest.json").read_text())["step"] == 14
    sampled = cli("sample", "--checkpoint", str(run_dir), "--prime", "KING", "--length", "40", "--seed", "1")
    assert sampled.returncode == 0 and sampled.stdout.startswith("KING"), sampled.stderr
    page = tmp_path / "page.html"
    shown = cli("visualize", "--checkpoint", str(run_dir), "--text", "KING:\nline 3, my lord", "--out", str(page))
    assert shown.returncode == 0 and page.stat().st_size > 0, shown.stderr


def test_visualize_keeps_every_layers_recurrent_state_in_the_residual_block():
    """What the page colours: each layer's h after each character -- the same numbers as running the
    model over the text one character at a time and reading the carried state -- and the logits of the
    whole text in one window."""
    from rnnlab.data.text import CharTokenizer
    from rnnlab.nn import model as charmodel

    tokenizer = CharTokenizer.fit("abcd efg\n")
    config = ModelConfig(tokenizer.vocab_size, "minlstm", 6, 2, block="residual")
    rng = np.random.default_rng(0)
    params = {k: v + rng.normal(scale=0.3, size=v.shape) for k, v in
              charmodel.init_params(config, rng, np.float64).items()}
    vis = visualization_data(params, config, tokenizer, "abc dag\nfee")
    ids = tokenizer.encode("abc dag\nfee")
    logits, final, _ = charmodel.forward(params, config, ids[:, None], charmodel.zero_state(config, 1, np.float64))
    np.testing.assert_allclose(vis.logits, logits[:, 0], rtol=1e-10, atol=1e-12)
    assert [list(layer) for layer in vis.states] == [["h"], ["h"]]
    for layer in range(2):
        np.testing.assert_allclose(vis.states[layer]["h"][-1], final[layer][0][0], rtol=1e-10, atol=1e-12)


def test_a_checkpoint_written_before_the_block_field_loads_samples_and_resumes(tmp_path, stream_corpus):
    """Older checkpoints (the shipped models among them) have no block, norm or ffn_mult: the defaults (the
    plain stack) apply, and they sample and resume as before."""
    run(TrainConfig(dataset=stream_corpus, cell="gru", hidden_size=8, batch_size=2, seq_length=8, iterations=6,
                    checkpoint_dir=str(tmp_path / "old")))
    path = tmp_path / "old" / "latest.json"
    meta = json.loads(path.read_text())
    for name in ("block", "norm", "ffn_mult"):
        del meta["model"][name], meta["train"][name]
    path.write_text(json.dumps(meta))
    checkpoint = load_checkpoint(tmp_path / "old")
    assert checkpoint.model_config.block == "plain"
    text = sample(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, np.random.default_rng(0),
                  length=20)
    assert len(text) == 20
    resumed, _ = run(TrainConfig(dataset=stream_corpus, cell="gru", hidden_size=8, batch_size=2, seq_length=8,
                                 iterations=8, checkpoint_dir=str(tmp_path / "old")), resume_from=tmp_path / "old")
    assert resumed.step == 8


def test_the_shipped_pretrained_models_still_load_with_the_plain_block():
    """shakespeare-gru was written before the block field existed (shakespeare-lstm, retrained since, after it):
    both load as the plain stack."""
    assert "block" not in load_checkpoint("shakespeare-gru").meta["model"]
    for name in ("shakespeare-lstm", "shakespeare-gru"):
        assert load_checkpoint(name).model_config.block == "plain"


def test_min_cells_and_the_block_are_refused_by_the_translator_in_one_line(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{i}\t{i * 2}\n" for i in range(200)))
    with pytest.raises(RnnlabError, match="mingru and minlstm are for language models"):
        Trainer(TrainConfig(dataset=str(pairs), cell="mingru"))
    with pytest.raises(RnnlabError, match="--block residual is for language models"):
        Trainer(TrainConfig(dataset=str(pairs), block="residual"))


def test_norm_and_ffn_mult_without_the_residual_block_get_a_note():
    assert any("--block residual" in note for note in TrainConfig(norm="layer").notes())
    assert not TrainConfig(block="residual", norm="layer").notes()
    assert not any("dropout" in note for note in TrainConfig(block="residual", dropout=0.2).notes())
