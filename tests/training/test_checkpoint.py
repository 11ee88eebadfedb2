"""Checkpoints: exact resume, crash safety, and a clear error for every kind of bad checkpoint."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from rnnlab.training.trainer import TrainConfig, Trainer

TIMING = ("tokens_per_s", "elapsed_s", "wall_s")  # wall-clock fields differ between any two runs


def metrics_by_step(reports):
    return {r.step: {k: v for k, v in r.metrics().items() if k not in TIMING} | {"samples": r.samples}
            for r in reports}


def run(config, resume_from=None):
    reports = []
    checkpoint = None if resume_from is None else load_checkpoint(resume_from)
    trainer = Trainer(config, reports.append, continues=checkpoint)   # a run continued in its own folder
    if checkpoint is not None:
        trainer.restore(checkpoint)
    trainer.run()
    return trainer, metrics_by_step(reports)


def assert_same_training(full, resumed):
    """Two Trainers stand at the same point: parameters, every optimizer slot, the carried hidden state and
    (with --ema_decay) the weights' average, bit for bit."""
    assert resumed.step == full.step
    for name, value in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)
    for slot, values in full.engine.opt_state.items():
        if slot == "step":
            assert resumed.engine.opt_state["step"] == values
        else:
            for name in values:
                np.testing.assert_array_equal(resumed.engine.opt_state[slot][name], values[name], err_msg=name)
    for layer_a, layer_b in zip(full.state, resumed.state, strict=True):
        for a, b in zip(layer_a, layer_b, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (full.average is None) == (resumed.average is None)
    if full.average is not None:
        assert resumed.average.steps == full.average.steps
        for name, value in full.average.weights.items():
            np.testing.assert_array_equal(resumed.average.weights[name], value, err_msg=name)


MODES = {  # name -> config fields: single example per step and mini-batches, on both kinds of corpus
    "names-single": dict(dataset="dinos", batch_size=1),
    "names-batch": dict(dataset="dinos", batch_size=16),
    "stream-single": dict(batch_size=1, seq_length=16),
    "stream-batch": dict(batch_size=4, seq_length=16),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, stream_corpus, cell, mode):
    """2N steps == N steps + resume to 2N: identical parameters, optimizer moments, hidden state,
    metrics and samples. Dropout is on, so the dropout Generator's stream must be restored too."""
    fields = dict(MODES[mode])
    fields.setdefault("dataset", stream_corpus)
    common = dict(cell=cell, hidden_size=12, num_layers=2, dropout=0.1, sample_every=10, num_samples=2,
                  sample_length=30, **fields)
    full, full_metrics = run(TrainConfig(iterations=40, checkpoint_dir=str(tmp_path / "full"), **common))
    half, half_metrics = run(TrainConfig(iterations=20, checkpoint_dir=str(tmp_path / "half"), **common))
    resumed, resumed_metrics = run(TrainConfig(iterations=40, checkpoint_dir=str(tmp_path / "half"), **common),
                                   resume_from=tmp_path / "half")
    assert resumed.step == 40
    assert_same_training(full, resumed)
    assert {**half_metrics, **resumed_metrics} == full_metrics


def test_checkpoint_holds_no_pickle_and_documents_itself(tmp_path):
    trainer, _ = run(TrainConfig(dataset="dinos", iterations=5, batch_size=4, checkpoint_dir=str(tmp_path)))
    meta = json.loads((tmp_path / "latest.json").read_text())
    assert meta["format_version"] == 2 and meta["step"] == 5
    assert meta["model"]["cell"] == "rnn" and meta["tokenizer"]["chars"][0] == "\n"
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer_slots"] == ["m", "v"]
    assert {"data_position", "rng", "loss_average", "best_val_loss"} <= meta.keys()
    with np.load(tmp_path / meta["arrays"], allow_pickle=False) as npz:
        assert "param/Wy" in npz.files and "opt/m/Wy" in npz.files


def test_saving_again_replaces_the_old_arrays_file(tmp_path):
    run(TrainConfig(dataset="dinos", iterations=6, batch_size=4, save_every=2, checkpoint_dir=str(tmp_path)))
    assert sorted(p.name for p in tmp_path.glob("latest*")) == ["latest-000006.npz", "latest.json"]


# ---- bad checkpoints: one clear RnnlabError each -------------------------------------------------------

@pytest.fixture
def checkpoint_dir(tmp_path):
    run(TrainConfig(dataset="dinos", iterations=3, batch_size=4, checkpoint_dir=str(tmp_path / "ck")))
    return tmp_path / "ck"


def arrays_path(directory):
    return directory / json.loads((directory / "latest.json").read_text())["arrays"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(RnnlabError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(RnnlabError, match="no checkpoint in directory"):
        load_checkpoint(tmp_path)


def test_truncated_arrays(checkpoint_dir):
    path = arrays_path(checkpoint_dir)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RnnlabError, match="truncated or corrupt"):
        load_checkpoint(checkpoint_dir)


def test_corrupt_npz_is_reported_even_with_a_matching_checksum(checkpoint_dir):
    """A damaged file whose checksum was (wrongly) updated still fails in the .npz reader, clearly."""
    path = arrays_path(checkpoint_dir)
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    meta = json.loads((checkpoint_dir / "latest.json").read_text())
    import hashlib
    meta["arrays_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (checkpoint_dir / "latest.json").write_text(json.dumps(meta))
    with pytest.raises(RnnlabError, match="truncated or corrupt"):
        load_checkpoint(checkpoint_dir)


def test_unknown_format_version(checkpoint_dir):
    meta = json.loads((checkpoint_dir / "latest.json").read_text())
    meta["format_version"] = 99
    (checkpoint_dir / "latest.json").write_text(json.dumps(meta))
    with pytest.raises(RnnlabError, match="format version 99"):
        load_checkpoint(checkpoint_dir)


def test_damaged_json(checkpoint_dir):
    (checkpoint_dir / "latest.json").write_text("{not json")
    with pytest.raises(RnnlabError, match="not readable JSON"):
        load_checkpoint(checkpoint_dir / "latest.json")


def test_arrays_that_do_not_match_the_config(tmp_path):
    trainer, _ = run(TrainConfig(dataset="dinos", iterations=2, batch_size=4))
    meta = trainer.meta()
    meta["model"]["hidden_size"] = 51
    save_checkpoint(tmp_path, "latest", meta, trainer.params, trainer.engine.opt_state)
    with pytest.raises(RnnlabError, match="does not match its own config"):
        load_checkpoint(tmp_path)


def test_pickled_npz_is_refused(checkpoint_dir):
    path = arrays_path(checkpoint_dir)
    arrays = dict(np.load(path))
    arrays["param/Wy"] = np.array([{"evil": "object"}], dtype=object)
    np.savez(path, **arrays)
    meta = json.loads((checkpoint_dir / "latest.json").read_text())
    import hashlib
    meta["arrays_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (checkpoint_dir / "latest.json").write_text(json.dumps(meta))
    with pytest.raises(RnnlabError, match="pickled"):
        load_checkpoint(checkpoint_dir)


# ---- the CLI side ----------------------------------------------------------------------------------------

def rnnlab(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "rnnlab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.mark.slow                          # rnnlab as a process (like every test_cli_* here)
def test_cli_resume_refuses_shape_changes_and_reports_allowed_ones(checkpoint_dir):
    refused = rnnlab("train", "--resume", checkpoint_dir, "--hidden_size", 64)
    assert refused.returncode == 2 and "hidden_size" in refused.stderr and len(refused.stderr.splitlines()) == 1
    allowed = rnnlab("train", "--resume", checkpoint_dir, "--iterations", 5, "--learning-rate", 0.001,
                     "--quiet")
    assert allowed.returncode == 0, allowed.stderr
    assert "learning_rate changed" in allowed.stderr and "at step 3" in allowed.stderr
    assert load_checkpoint(checkpoint_dir).meta["step"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--prime", "Tyr"], "'T'"),
    (["--top_k", "0"], "top_k"),
    (["--top_k", "28"], "top_k"),
    (["--temperature", "0"], "temperature"),
])
def test_cli_sample_bad_input_is_one_line(checkpoint_dir, args, message):
    result = rnnlab("sample", "--checkpoint", checkpoint_dir, *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_sample_missing_checkpoint(tmp_path):
    result = rnnlab("sample", "--checkpoint", tmp_path / "missing")
    assert result.returncode == 2 and "not found" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.slow
def test_cli_sample_prints_names_and_novelty(checkpoint_dir):
    result = rnnlab("sample", "--checkpoint", checkpoint_dir, "--num_samples", 5, "--novelty", "--seed", 1)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 6 and lines[-1].startswith("novelty: ")
    again = rnnlab("sample", "--checkpoint", checkpoint_dir, "--num_samples", 5, "--novelty", "--seed", 1)
    assert again.stdout == result.stdout  # same seed, same samples


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_the_checkpoint(tmp_path):
    """Kill a run that saves every step at three random moments; each time the checkpoint loads, and the
    run resumes from it. Bounded: at most ~3 x 5 s."""
    rng = np.random.default_rng(0)
    directory = tmp_path / "ck"
    for _ in range(3):
        args = ["--resume", str(directory)] if (directory / "latest.json").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "train", "--iterations", "10000000",
                                 "--batch_size", "4", "--save_every", "1", "--checkpoint_dir", str(directory),
                                 "--quiet", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0 + rng.uniform(0, 2.5))
        proc.kill()
        proc.wait(timeout=30)
        checkpoint = load_checkpoint(directory)
        assert checkpoint.meta["step"] > 0
        leftovers = [p.name for p in directory.iterdir() if p.suffix == ".npz"]
        assert checkpoint.meta["arrays"] in leftovers


def test_resume_follows_the_same_cosine_schedule(tmp_path):
    """The learning rate is a function of (step, total steps): a 30-step cosine run stopped at step 15 (as
    Ctrl-C does) and resumed ends bit-identical to an uninterrupted one."""
    common = dict(dataset="dinos", batch_size=8, hidden_size=10, lr_schedule="cosine", sample_every=100,
                  iterations=30)
    full, _ = run(TrainConfig(**common))
    stopped = Trainer(TrainConfig(checkpoint_dir=str(tmp_path), **common),
                      on_progress=lambda p: stopped.request_stop() if p.step == 15 else None)
    stopped.run()
    assert stopped.step == 15
    resumed, _ = run(TrainConfig(checkpoint_dir=str(tmp_path), **common), resume_from=tmp_path)
    assert resumed.engine.optimizer.lr == pytest.approx(0.005 / 20)
    for name, value in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)


def test_divergence_stops_with_a_hint_and_keeps_the_last_good_checkpoint(tmp_path):
    """SGD at lr 1e4 without clipping blows up; the run ends with one line that says why, what to change
    and where the last good checkpoint is -- and that checkpoint still loads, with finite weights."""
    result = rnnlab("train", "--optimizer", "sgd", "--learning_rate", 1e4, "--clip_value", "none",
                    "--batch_size", 8, "--save_every", 1, "--checkpoint_dir", tmp_path / "ck", "--quiet")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "diverged" in line and "--learning_rate" in line and "last good checkpoint" in line
    checkpoint = load_checkpoint(tmp_path / "ck")
    assert all(np.isfinite(value).all() for value in checkpoint.params.values())


# ---- exported models: weights only, float16, shipped names -------------------------------------------------

def test_export_writes_float16_weights_that_sample_but_do_not_resume(tmp_path, capsys):
    """`rnnlab export` keeps the parameters alone (no optimizer moments) as float16, records the validation
    loss those float16 weights score on the whole held-out split, and the result samples but refuses to
    resume."""
    from rnnlab.cli import main

    run(TrainConfig(dataset="dinos", iterations=200, batch_size=8, sample_every=100,
                    checkpoint_dir=str(tmp_path / "run")))
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "best.json"), "--out", str(tmp_path / "ex"),
                 "--description", "a test model"]) == 0
    exported = load_checkpoint(tmp_path / "ex")
    assert exported.meta["optimizer_slots"] == [] and exported.meta["export"]["dtype"] == "float16"
    with np.load(tmp_path / "ex" / exported.meta["arrays"]) as npz:
        assert all(npz[name].dtype == np.float16 for name in npz.files) and not any("opt/" in n for n in npz.files)
    assert all(value.dtype == np.float32 for value in exported.params.values())   # used as float32
    # the recorded loss is what the float16 weights score, measured again here
    trainer = Trainer.resume(load_checkpoint(tmp_path / "run" / "best.json"), {"checkpoint_dir": None,
                                                                               "eval_tokens": None})
    trainer.engine.load_state(exported.params, trainer.engine.optimizer_state())
    assert exported.meta["export"]["val_loss"] == pytest.approx(trainer.validation_loss(), rel=1e-6)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "ex"), "--num_samples", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["train", "--resume", str(tmp_path / "ex")]) == 2
    assert "exported model" in capsys.readouterr().err


def test_shipped_model_names_resolve_when_no_such_path_exists(tmp_path, monkeypatch, capsys):
    """`--checkpoint NAME` finds a shipped model when NAME is not a path here; `sample --list` names it."""
    from rnnlab.cli import main
    from rnnlab.training import checkpoint as ckpt_module

    run(TrainConfig(dataset="dinos", iterations=50, batch_size=8, sample_every=50, checkpoint_dir=str(tmp_path / "r")))
    assert main(["export", "--checkpoint", str(tmp_path / "r"), "--out", str(tmp_path / "shipped" / "tiny-dinos"),
                 "--description", "tiny"]) == 0
    monkeypatch.setattr(ckpt_module, "shipped_checkpoints", lambda: {"tiny-dinos": tmp_path / "shipped" / "tiny-dinos"})
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["sample", "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("tiny-dinos") and "validation" in listed and "tiny" in listed
    assert main(["sample", "--checkpoint", "tiny-dinos", "--num_samples", "1"]) == 0
    (tmp_path / "tiny-dinos").mkdir()                       # a real folder of that name wins over the shipped one
    assert main(["sample", "--checkpoint", "tiny-dinos"]) == 2
    assert "no checkpoint in directory" in capsys.readouterr().err
