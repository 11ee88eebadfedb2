"""health.py: a broken run says so (worse than a uniform guess, a validation/training gap), naming the likely
cause; the carried state's size is recorded; healthy walkthrough runs stay silent."""

from __future__ import annotations

import json
import math

import pytest

from rnnlab.cli import main
from rnnlab.errors import TrainingDiverged
from rnnlab.training.checkpoint import RunState
from rnnlab.training.config import TrainConfig
from rnnlab.training.health import MAX_GAP, STATE_RUNAWAY, LossTracker, health_warnings, state_max
from rnnlab.training.trainer import Trainer


def test_worse_than_uniform_warns_once_and_names_the_carried_state_when_it_ran_away():
    warned = set()
    assert health_warnings(50, 300, 4.4, 4.3, 68, [665.0], set()) == []      # within a fresh model's margin
    first = health_warnings(50, 300, 4.5, 4.3, 68, [665.0, 12.0], warned)
    assert len(first) == 1 and "worse than a uniform guess (ln 68 = 4.220)" in first[0]
    assert "|state| = 665" in first[0] and "--init rnnlab" in first[0]
    second = health_warnings(60, 300, 4.6, 3.0, 68, [700.0], warned)   # now also a gap: said once, the
    assert len(second) == 1 and "nats above training" in second[0]     # uniform warning not again
    assert health_warnings(70, 300, 4.7, 3.0, 68, [700.0], warned) == []   # nothing twice


def test_no_uniform_warning_before_a_tenth_of_the_run():
    assert health_warnings(20, 300, 4.6, 4.4, 68, [], set()) == []       # step 20 < 10 % of 300, no gap
    assert health_warnings(30, 300, 4.6, 4.4, 68, [], set()) != []


def test_a_gap_without_a_runaway_state_is_called_memorising():
    (message,) = health_warnings(5000, 22001, 1.9, 1.9 - MAX_GAP - 0.1, 27, [0.99], set())
    assert "memorising" in message and "best.json" in message and "|state|" not in message
    assert health_warnings(5000, 22001, 1.9, 1.9 - MAX_GAP + 0.05, 27, [0.99], set()) == []


def test_state_max_is_the_largest_magnitude_of_each_layer():
    import numpy as np
    state = [(np.array([[0.5, -0.9]]), np.array([[3.0, -70.0]])), (np.array([[0.1, 0.2]]),)]
    assert state_max(state) == [70.0, pytest.approx(0.2)]


def test_a_deliberately_broken_run_is_reported_on_stderr_even_when_quiet(tmp_path, capsys):
    """A model that learns the training text's 'abab...' perfectly is confidently wrong on a held-out 'aaaa':
    validation goes above ln 2 while the training loss falls. The warning comes once, on stderr, with
    --quiet too, and the run still ends normally (exit 0)."""
    path = tmp_path / "shift.txt"
    path.write_text("ab" * 900 + "a" * 200)
    metrics = tmp_path / "m.jsonl"
    status = main(["train", "--dataset", str(path), "--hidden_size", "8", "--batch_size", "4", "--seq_length", "16",
                   "--iterations", "200", "--sample_every", "50", "--quiet", "--metrics_file", str(metrics)])
    err = capsys.readouterr().err
    assert status == 0
    assert err.count("worse than a uniform guess (ln 2 = 0.693)") == 1
    assert "held-out" in err
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert all(len(r["state_max"]) == 1 for r in records)


def test_a_scaled_forget_bias_makes_the_carried_state_run_away_and_the_reports_show_it():
    """Forget and input gates held open (biases +30) and a fixed-sign candidate: c grows by about one per
    character, far past the saturation of tanh -- the reports' state_max records it."""
    reports = []
    trainer = Trainer(TrainConfig(dataset="shakespeare", cell="lstm", hidden_size=8, batch_size=4, seq_length=16,
                                  iterations=60, sample_every=30, num_samples=1, sample_length=5, eval_tokens=2000),
                      reports.append)
    H = 8
    bias = trainer.engine.params["l0.b"]
    bias[:H], bias[H:2 * H], bias[2 * H:3 * H] = 30.0, 30.0, 3.0    # i, f open; g ~ +1
    trainer.run()
    assert reports[-1].state_max[0] > STATE_RUNAWAY > reports[-1].state_max[0] / 100
    message = health_warnings(30, 60, math.log(64) + 0.3, 3.0, 64, reports[-1].state_max, set())[0]
    assert "carried state has grown" in message


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["--dataset", "dinos", "--iterations", "3000", "--optimizer", "rms", "--sample_every", "1000"],
    ["--dataset", "shakespeare", "--cell", "lstm", "--num_layers", "2", "--hidden_size", "32", "--batch_size", "16",
     "--seq_length", "32", "--iterations", "150", "--sample_every", "50", "--eval_tokens", "20000",
     "--clip_value", "none", "--clip_norm", "5"],
], ids=["dinos quick start", "shakespeare lstm"])
def test_the_walkthrough_runs_stay_silent(args, capsys):
    assert main(["train", *args, "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


# ---- the loss tracker: smoothed loss and divergence guard -------------------------------------------------
def test_loss_tracker_smooths_in_step_order_bias_corrected():
    """The smoothed loss starts at the first loss (bias correction) and is the bias-corrected EMA of the
    losses read, whether they are read one by one or together (a GPU engine's batch of device scalars)."""
    losses = [3.0, 2.5, 2.2, 2.4, 2.0]
    one, together = LossTracker(32), LossTracker(32)
    run_one, run_together = RunState(), RunState()
    for i, loss in enumerate(losses, 1):
        run_one.step = run_together.step = i
        one.add(loss)
        one.read(run_one)
        together.add(loss)
    assert math.isnan(together.smooth(run_together)) and len(together.unread) == 5      # nothing read yet
    together.read(run_together)
    beta = max(0.999 ** 32, 0.9)
    expected = sum((1 - beta) * beta ** (len(losses) - 1 - k) * x for k, x in enumerate(losses)) / (1 - beta ** 5)
    assert one.smooth(run_one) == pytest.approx(expected, rel=1e-12)
    assert together.smooth(run_together) == pytest.approx(expected, rel=1e-12)
    assert one.last == together.last == 2.0 and run_one.first_loss == 3.0
    fresh = LossTracker(32)
    assert math.isnan(fresh.smooth(RunState())) and math.isnan(fresh.last)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 100.0])
def test_loss_tracker_stops_a_diverging_run_naming_the_step(bad):
    """A non-finite loss, or a smoothed loss above 3x the first, raises TrainingDiverged naming the step
    of the bad loss (read late, together with later ones) and the fix."""
    tracker, run = LossTracker(1), RunState()          # batch 1: smoothing 0.999 -> the floor 0.9
    for step, loss in enumerate([2.0, 2.1, bad, 2.0], 1):
        run.step = step
        tracker.add(loss)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 3: .*--learning_rate"):
        tracker.read(run)
