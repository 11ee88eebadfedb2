"""The regularisers as a run uses them: settings and their resume policy, weight averaging (averaging.py),
early stopping, checkpoints (old ones without the new fields, the ema/ arrays), the engines that refuse, and
exact resume with all of it on."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_checkpoint import assert_same_training, run  # (tests/ is on sys.path, as for crosscheck)

from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.training.averaging import WeightAverage
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.trainer import TrainConfig, Trainer

EVERYTHING = dict(dropout=0.2, locked_dropout=True, dropout_input=0.1, dropout_output=0.2, weight_drop=0.2,
                  zoneout=0.1, zoneout_cell=0.3, ar=1.0, tar=1.0, ema_decay=0.9)


def rnnlab(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "rnnlab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.mark.parametrize("cell,data", [("lstm", "stream"), ("gru", "names"), ("rnn", "names")])
def test_resume_is_bit_identical_with_every_regularizer_the_average_and_patience(tmp_path, stream_corpus, cell, data):
    """2N steps == N steps + resume to 2N with every regulariser on, the weight average and --patience: the
    same parameters, optimizer moments, average, carried state, counters, metrics and samples -- the masks'
    Generator, the average and the patience counter are all in the checkpoint."""
    fields = dict(dataset=stream_corpus, batch_size=4, seq_length=12) if data == "stream" else \
        dict(dataset="dinos", batch_size=8)
    common = dict(cell=cell, hidden_size=10, num_layers=2, sample_every=5, eval_every=5, num_samples=2,
                  sample_length=20, patience=50, **EVERYTHING, **fields)
    full, full_metrics = run(TrainConfig(iterations=30, checkpoint_dir=str(tmp_path / "full"), **common))
    half, half_metrics = run(TrainConfig(iterations=15, checkpoint_dir=str(tmp_path / "half"), **common))
    resumed, resumed_metrics = run(TrainConfig(iterations=30, checkpoint_dir=str(tmp_path / "half"), **common),
                                   resume_from=tmp_path / "half")
    assert resumed.step == full.step == 30 and full.average.steps == 30
    assert_same_training(full, resumed)                     # the average included
    assert (resumed.run_state.evals_since_best, resumed.run_state.best_step) == \
        (full.run_state.evals_since_best, full.run_state.best_step)
    assert {**half_metrics, **resumed_metrics} == full_metrics


def test_the_average_is_the_bias_corrected_mean_of_the_iterates():
    """a_t = sum_k beta^(t-k) theta_k (1 - beta) / (1 - beta^t): the weighted mean of every iterate so far,
    a_1 = theta_1, whatever the starting weights (float64; rtol 1e-12 covers the recursion's rounding)."""
    rng = np.random.default_rng(0)
    thetas = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)} for _ in range(25)]
    average = WeightAverage(0.8)
    for t, theta in enumerate(thetas, start=1):
        average.update(theta)
        weights = np.array([0.8 ** (t - k) for k in range(1, t + 1)]) * 0.2 / (1 - 0.8 ** t)
        assert weights.sum() == pytest.approx(1.0)
        for name in theta:
            expected = sum(w * thetas[k][name] for k, w in enumerate(weights))
            np.testing.assert_allclose(average.weights[name], expected, rtol=1e-12)
    thetas[-1]["W"][0, 0] += 1.0                                 # the average holds copies, not views
    assert average.weights["W"][0, 0] != thetas[-1]["W"][0, 0]


@pytest.mark.slow      # runs rnnlab as a process
def test_validation_the_best_checkpoint_and_sampling_use_the_average(tmp_path):
    """With --ema_decay a report's validation loss is the average's, best.json stores the average as ema/
    arrays beside the raw parameters, and everything that uses a checkpoint (sample, export) takes the average."""
    trainer, metrics = run(TrainConfig(dataset="dinos", cell="gru", hidden_size=16, batch_size=16, iterations=40,
                                       eval_every=20, ema_decay=0.95, checkpoint_dir=str(tmp_path / "ck")))
    average = trainer.average.weights
    state, total, count = None, 0.0, 0.0                         # the validation pass, by hand, on the average
    for batch in trainer.data.val_batches:
        if state is None or batch.reset_state:
            state = charmodel.zero_state(trainer.model_config, batch.ids.shape[1])
        loss, state = charmodel.evaluate_loss(average, trainer.model_config, batch.ids, batch.targets, state,
                                              batch.mask)
        total, count = total + loss * batch.n_tokens, count + batch.n_tokens
    assert metrics[40]["val_loss"] == pytest.approx(total / count, rel=1e-6)   # float32, summed in another order
    not_averaged = trainer.params
    assert any(not np.array_equal(average[name], not_averaged[name]) for name in average)
    latest = load_checkpoint(tmp_path / "ck")
    assert latest.meta["ema_steps"] == 40
    for name in average:
        np.testing.assert_array_equal(latest.weights[name], average[name])
        np.testing.assert_array_equal(latest.params[name], not_averaged[name])
    exported = rnnlab("export", "--checkpoint", tmp_path / "ck", "--out", tmp_path / "export", "--dtype", "float32")
    assert exported.returncode == 0, exported.stderr
    export = load_checkpoint(tmp_path / "export")
    assert export.ema is None and export.meta["ema_steps"] == 0
    for name in average:
        np.testing.assert_array_equal(export.params[name], average[name])


@pytest.mark.slow      # runs rnnlab as a process
def test_patience_ends_the_run_keeps_the_best_and_resumes(tmp_path):
    """A large model on the dinosaur names overfits within a few hundred steps: --patience 2 ends the run
    there and says so, best.json holds the best validation, latest.json the last step; resuming with the same
    patience trains nothing, with a larger one it trains on."""
    args = ["train", "--dataset", "dinos", "--cell", "gru", "--hidden_size", 96, "--batch_size", 32,
            "--learning_rate", 0.01, "--iterations", 2000, "--eval_every", 20, "--patience", 2,
            "--checkpoint_dir", tmp_path / "ck", "--quiet"]
    first = rnnlab(*args)
    assert first.returncode == 0, first.stderr
    assert "early stop at step" in first.stdout and "2 validations without a new best" in first.stdout
    latest, best = load_checkpoint(tmp_path / "ck" / "latest.json"), load_checkpoint(tmp_path / "ck" / "best.json")
    assert latest.meta["step"] < 2000 and latest.meta["evals_since_best"] == 2
    assert best.meta["step"] == latest.meta["best_step"] == latest.meta["step"] - 40
    assert best.meta["best_val_loss"] == latest.meta["best_val_loss"]
    again = rnnlab("train", "--resume", tmp_path / "ck", "--quiet")
    assert again.returncode == 0 and "the run stopped early" in again.stderr
    assert load_checkpoint(tmp_path / "ck").meta["step"] == latest.meta["step"]
    more = rnnlab("train", "--resume", tmp_path / "ck", "--patience", 3, "--quiet")
    assert more.returncode == 0, more.stderr
    assert "patience changed from 2 to 3" in more.stderr
    assert load_checkpoint(tmp_path / "ck").meta["step"] > latest.meta["step"]


def test_a_checkpoint_written_before_the_regularizers_loads_and_resumes(tmp_path):
    """The schema accepts a checkpoint without any of the new fields (model, settings, run state): their
    defaults apply -- the model it describes is the one trained then."""
    run(TrainConfig(dataset="dinos", cell="lstm", num_layers=2, hidden_size=8, batch_size=4, iterations=6,
                    dropout=0.2, checkpoint_dir=str(tmp_path / "ck")))
    path = tmp_path / "ck" / "latest.json"
    meta = json.loads(path.read_text())
    for name in charmodel.ModelConfig.ADDED_LATER[3:]:
        del meta["model"][name]
    for name in ("locked_dropout", "dropout_input", "dropout_output", "weight_drop", "zoneout", "zoneout_cell",
                 "ar", "tar", "ema_decay", "patience"):
        del meta["train"][name]
    for name in ("best_step", "evals_since_best", "ema_steps"):
        del meta[name]
    path.write_text(json.dumps(meta))
    old = load_checkpoint(path)
    assert old.ema is None and old.run_state.ema_steps == 0 and old.model_config.zoneout == 0.0
    Trainer.resume(old, {"iterations": 8}).run()
    assert load_checkpoint(tmp_path / "ck").meta["step"] == 8


def test_ema_arrays_are_checked_like_every_other_array(tmp_path):
    """ema_steps > 0 without the ema/ arrays is an incomplete checkpoint; ema/ arrays without ema_steps are
    arrays it was not written with; an ema_steps past the step is a damaged document."""
    run(TrainConfig(dataset="dinos", hidden_size=8, batch_size=4, iterations=6, ema_decay=0.9,
                    checkpoint_dir=str(tmp_path / "ck")))
    path = tmp_path / "ck" / "latest.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "ema_steps": 0}))
    with pytest.raises(RnnlabError, match="unexpected array 'ema/"):
        load_checkpoint(path)
    path.write_text(json.dumps({**meta, "ema_steps": 7}))
    with pytest.raises(RnnlabError, match="ema_steps 7 is past step 6"):
        load_checkpoint(path)
    run(TrainConfig(dataset="dinos", hidden_size=8, batch_size=4, iterations=6, checkpoint_dir=str(tmp_path / "no")))
    path = tmp_path / "no" / "latest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "ema_steps": 3}))
    with pytest.raises(RnnlabError, match="lacks .* array"):
        load_checkpoint(path)


@pytest.mark.slow      # runs rnnlab as a process
def test_strengths_may_change_on_resume_zoneout_may_not(tmp_path):
    """A training-only strength (dropout, weight drop, AR ...) changes how the run trains and may change on
    resume, and the change is noted; zoneout changes the function the model computes: refused in one line."""
    args = ["train", "--dataset", "dinos", "--cell", "lstm", "--num_layers", 2, "--hidden_size", 8, "--batch_size",
            4, "--iterations", 4, "--dropout", 0.2, "--zoneout", 0.1, "--checkpoint_dir", tmp_path / "ck", "--quiet"]
    assert rnnlab(*args).returncode == 0
    changed = rnnlab("train", "--resume", tmp_path / "ck", "--iterations", 6, "--dropout", 0.3, "--weight_drop",
                     0.2, "--ar", 2, "--locked_dropout", "--ema_decay", 0.9, "--quiet")
    assert changed.returncode == 0, changed.stderr
    for note in ("dropout changed from 0.2 to 0.3", "weight_drop changed", "ar changed", "locked_dropout changed",
                 "weight averaging starts now, at step 4"):
        assert note in changed.stderr, note
    assert rnnlab("train", "--resume", tmp_path / "ck", "--iterations", 8, "--no-locked_dropout", "--ema_decay",
                  "none", "--quiet").returncode == 0
    refused = rnnlab("train", "--resume", tmp_path / "ck", "--zoneout", 0.2)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "--zoneout 0.2 differs from the checkpoint's 0.1" in refused.stderr


@pytest.mark.slow      # runs rnnlab as a process
@pytest.mark.parametrize("args,message", [
    (["--dataset", "dates", "--zoneout", 0.1], "the translator (an encoder-decoder"),
    (["--cell", "mingru", "--zoneout", 0.1], "--zoneout does not apply to --cell mingru"),
    (["--engine", "keras-tape", "--batch_size", 4, "--weight_drop", 0.2], "cannot follow --weight_drop"),
    (["--engine", "torch", "--cell", "mingru", "--ar", 1], "plain stack of rnn, lstm and gru only"),
    (["--ar", -1], "--ar must be >= 0"),
    (["--ema_decay", 1], "--ema_decay must be in (0, 1)"),
    (["--patience", 0], "--patience must be > 0"),
])
def test_what_cannot_apply_is_refused_in_one_line(tmp_path, args, message):
    result = rnnlab("train", "--iterations", 2, *args, cwd=tmp_path)
    ours = [line for line in result.stderr.splitlines() if line.startswith("rnnlab")]   # TensorFlow logs too
    assert result.returncode == 2 and len(ours) == 1, result.stderr
    assert message in ours[0]


@pytest.mark.slow      # runs rnnlab as a process
@pytest.mark.parametrize("args,note", [
    (["--cell", "mingru", "--weight_drop", 0.3], "--weight_drop does nothing with --cell mingru"),
    (["--cell", "gru", "--zoneout_cell", 0.3], "--zoneout_cell does nothing with --cell gru"),
    (["--locked_dropout"], "--locked_dropout shapes --dropout's masks"),
    (["--patience", 3], "--patience 3 stops the run at its best, but without --checkpoint_dir"),
])
def test_a_setting_that_does_nothing_gets_a_note(tmp_path, args, note):
    result = rnnlab("train", "--iterations", 2, "--quiet", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"rnnlab: note: {note}" in result.stderr


@pytest.mark.slow      # runs rnnlab as a process
def test_a_zoneout_model_exports_as_rnnlab_and_refuses_formats_that_compute_the_plain_cell(tmp_path):
    assert rnnlab("train", "--cell", "gru", "--hidden_size", 8, "--iterations", 3, "--zoneout", 0.2,
                  "--checkpoint_dir", tmp_path / "ck", "--quiet").returncode == 0
    refused = rnnlab("export", "--checkpoint", tmp_path / "ck", "--out", tmp_path / "m.html")
    assert refused.returncode == 2 and "trained with zoneout" in refused.stderr
    assert rnnlab("export", "--checkpoint", tmp_path / "ck", "--out", tmp_path / "folder").returncode == 0
    sampled = rnnlab("sample", "--checkpoint", tmp_path / "folder", "--num_samples", 2)
    assert sampled.returncode == 0 and sampled.stdout.strip()
