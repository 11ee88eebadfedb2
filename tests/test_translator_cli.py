"""The translator through the same trainer and command line as the language models: `rnnlab train` on pairs
data, `rnnlab translate`, `rnnlab visualize` (attention), exact resume, and one-line errors.

A tiny pairs file (26 letters -> their upper case, twice over) keeps every run to a second or two.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.data.pairs import uses_pairs
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.config import MODE_DEFAULTS, config_for_mode
from rnnlab.training.trainer import Trainer

pytestmark = pytest.mark.slow      # trains translators

WORDS = ["cab", "bad", "dab", "ace", "bead", "deca", "abed", "cede", "bade", "dace", "ebb", "add"]


@pytest.fixture
def pairs_file(tmp_path):
    """Words and their reversal in upper case, e.g. 'cab<TAB>BAC'."""
    path = tmp_path / "rev.tsv"
    path.write_text("".join(f"{w}\t{w[::-1].upper()}\n" for w in WORDS * 3), encoding="utf-8")
    return path


TINY = ["--hidden_size", "16", "--attention_size", "8", "--batch_size", "8", "--iterations", "30",
        "--eval_every", "15", "--sample_every", "30", "--num_samples", "2", "--quiet"]


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_pairs_data_is_recognised_and_gets_the_translator_defaults(pairs_file):
    """A file whose lines hold one tab each (and the shipped 'dates') trains a translator, with the pairs
    defaults for every setting not given."""
    assert uses_pairs(str(pairs_file), "auto") and uses_pairs("dates", "auto") and not uses_pairs("dinos", "auto")
    config = config_for_mode("pairs", {"dataset": "dates", "batch_size": 16})
    assert config.batch_size == 16 and config.cell == MODE_DEFAULTS["pairs"]["cell"]
    assert config.learning_rate == MODE_DEFAULTS["pairs"]["learning_rate"]


def test_train_reports_exact_match_and_translate_prints_one_line_per_input(tmp_path, pairs_file, capsys, monkeypatch):
    """`train` on pairs reports validation loss and exact-match accuracy (test accuracy at the end) and writes
    a translator checkpoint; `translate` answers arguments and stdin, one output line per input line."""
    ck = tmp_path / "ck"
    metrics = tmp_path / "m.jsonl"
    status, out, err = run(capsys, "train", "--dataset", pairs_file, *TINY, "--checkpoint_dir", ck,
                           "--metrics_file", metrics)
    assert status == 0, err
    assert out.startswith("rnnlab: translator: bi-gru 8 -> gru 16, additive attention")
    assert "exact match" in out and "(test " in out
    last = json.loads(metrics.read_text().splitlines()[-1])
    assert 0 <= last["val_accuracy"] <= 1 and 0 <= last["test_accuracy"] <= 1
    assert load_checkpoint(ck).meta["task"] == "translate"

    status, out, _ = run(capsys, "translate", "--checkpoint", ck, "cab", "bead")
    assert status == 0 and len(out.splitlines()) == 2
    assert set("".join(out.split())) <= set("ABCDE")
    stdin = io.BytesIO(b"cab\n\nbad\n")                                    # read as it comes, in chunks
    monkeypatch.setattr("sys.stdin", type("In", (), {"buffer": stdin})())
    status, out, _ = run(capsys, "translate", "--checkpoint", ck, "--input", "-")
    assert status == 0 and out.count("\n") == 3 and out.splitlines()[1] == ""    # an empty line stays empty


def test_show_attention_prints_a_matrix_under_each_translation(tmp_path, pairs_file, capsys):
    ck = tmp_path / "ck"
    assert run(capsys, "train", "--dataset", pairs_file, *TINY, "--checkpoint_dir", ck)[0] == 0
    status, out, _ = run(capsys, "translate", "--checkpoint", ck, "cab", "--show_attention")
    lines = out.splitlines()
    assert status == 0 and lines[1].split() == ["c", "a", "b"]          # the source characters as columns
    for row in lines[2:]:
        weights = [float(x) for x in row.split()[1:]]
        assert len(weights) == 3 and abs(sum(weights) - 1) < 0.02          # each row is a distribution


def test_visualize_writes_an_attention_page_and_a_png(tmp_path, pairs_file, capsys):
    pytest.importorskip("matplotlib")
    ck = tmp_path / "ck"
    assert run(capsys, "train", "--dataset", pairs_file, *TINY, "--checkpoint_dir", ck)[0] == 0
    status, out, err = run(capsys, "visualize", "--checkpoint", ck, "--text", "cab\n3/1 bad", "--out",
                           tmp_path / "a.html", "--png", tmp_path / "a.png")
    assert status == 2 and "not trained on" in err                     # '3', '/', '1' are unknown characters
    status, out, err = run(capsys, "visualize", "--checkpoint", ck, "--text", "cab\nbad", "--out",
                           tmp_path / "a.html", "--png", tmp_path / "a.png")
    assert status == 0, err
    assert "2 attention map(s)" in out
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "<script" in (tmp_path / "a.html").read_text(encoding="utf-8")


def test_commands_refuse_the_other_kind_of_checkpoint(tmp_path, pairs_file, capsys):
    """`sample` on a translator and `translate` on a language model: one line each, exit 2."""
    translator, lm = tmp_path / "t", tmp_path / "lm"
    assert run(capsys, "train", "--dataset", pairs_file, *TINY, "--checkpoint_dir", translator)[0] == 0
    assert run(capsys, "train", "--iterations", "3", "--quiet", "--checkpoint_dir", lm)[0] == 0
    status, out, err = run(capsys, "sample", "--checkpoint", translator)
    assert status == 2 and out == "" and "holds a translator" in err and len(err.splitlines()) == 1
    status, out, err = run(capsys, "translate", "--checkpoint", lm, "abc")
    assert status == 2 and out == "" and "holds a language model" in err and len(err.splitlines()) == 1
    status, out, err = run(capsys, "translate", "--checkpoint", translator, "xyz")
    assert status == 2 and "not trained on" in err and len(err.splitlines()) == 1


def test_a_translator_resumes_exactly(tmp_path, pairs_file):
    """N steps + resume to 2N == 2N steps: the same parameters and optimizer moments, bit for bit."""
    from rnnlab.training.config import TrainConfig

    common = dict(dataset=str(pairs_file), **{**MODE_DEFAULTS["pairs"], "hidden_size": 16, "attention_size": 8,
                                              "batch_size": 8, "sample_every": 100, "eval_every": 100})
    full = Trainer(TrainConfig(**{**common, "iterations": 20}))
    full.run()
    half = Trainer(TrainConfig(**{**common, "iterations": 10}, checkpoint_dir=str(tmp_path / "ck")))
    half.run()
    resumed = Trainer.resume(load_checkpoint(tmp_path / "ck"), {"iterations": 20})
    resumed.run()
    for name, value in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)


def test_sample_beam_size_lists_continuations_by_log_probability(tmp_path, capsys):
    ck = tmp_path / "lm"
    assert run(capsys, "train", "--iterations", "50", "--quiet", "--checkpoint_dir", ck)[0] == 0
    status, out, _ = run(capsys, "sample", "--checkpoint", ck, "--beam_size", "3", "--prime", "ty", "--length", "5")
    scores = [float(line.split()[0]) for line in out.splitlines()]
    assert status == 0 and len(scores) == 3 and scores == sorted(scores, reverse=True)
