"""rnnlab plot: a PNG of train and validation loss from a metrics file; bad metrics files fail clearly."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow      # draws with matplotlib (about a second a figure)


def rnnlab(*args):
    return subprocess.run([sys.executable, "-m", "rnnlab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_plot_writes_a_png(tmp_path):
    metrics = tmp_path / "m.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "train_loss": 3 - s / 100, "smooth_loss": 3 - s / 120,
                                           **({"val_loss": 3 - s / 150} if s % 20 == 0 else {})}) + "\n"
                               for s in range(10, 200, 10)))
    out = tmp_path / "loss.png"
    result = rnnlab("plot", metrics, "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("content,message", [(None, "not found"), ("{bad\n", "not JSON"), ('{"x": 1}\n', "no metrics")])
def test_bad_metrics_file_is_one_line(tmp_path, content, message):
    metrics = tmp_path / "m.jsonl"
    if content is not None:
        metrics.write_text(content)
    result = rnnlab("plot", metrics, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


def write_run(path, slope):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": s, "smooth_loss": 3 - s / slope, "val_loss": 3.1 - s / slope}) + "\n"
                            for s in range(100, 1100, 100)))
    return path


def test_several_metrics_files_are_overlaid_in_one_figure(tmp_path):
    """Two runs (e.g. rnnlab and PyTorch at equal steps) on one panel, labelled by --labels."""
    a, b = write_run(tmp_path / "lstm" / "metrics.jsonl", 800), write_run(tmp_path / "torch.jsonl", 900)
    out = tmp_path / "both.png"
    result = rnnlab("plot", a, b, "--out", out, "--labels", "rnnlab LSTM,PyTorch LSTM")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_metrics_files_default_labels_and_errors(tmp_path):
    from rnnlab.tools.plot import run_label

    assert run_label(tmp_path / "lstm" / "metrics.jsonl") == "lstm" and run_label(tmp_path / "t.jsonl") == "t"
    a = write_run(tmp_path / "a.jsonl", 800)
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"step": 1, "val_loss": "x"}\n')
    result = rnnlab("plot", a, bad, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "b.jsonl line 1" in result.stderr and not (tmp_path / "x.png").exists()
    result = rnnlab("plot", a, a, "--out", tmp_path / "x.png", "--labels", "one")
    assert result.returncode == 2 and "--labels names 1 runs but 2 metrics files" in result.stderr


def test_records_a_resumed_or_restarted_run_repeated_are_replaced_by_the_later_ones():
    """The metrics file is appended to: steps repeated after a resume, or a new run from step 1 in the same
    file, replace the earlier records from that step on (a plot shows the run as it stands)."""
    from rnnlab.tools.plot import superseded_dropped

    steps = lambda records: [r.get("step") for r in records]  # noqa: E731
    resumed = [{"step": s} for s in (100, 200, 300, 200, 300, 400)]
    assert steps(superseded_dropped(resumed)) == [100, 200, 300, 400]
    restarted = [{"step": s} for s in (500, 1000, 500, 1000, 1500)]
    assert steps(superseded_dropped(restarted)) == [500, 1000, 1500]
    assert superseded_dropped(restarted)[0] is restarted[2]
    assert steps(superseded_dropped([{"step": 5}, {"note": "x"}, {"step": 6}])) == [5, None, 6]


def test_runs_of_different_speeds_are_drawn_against_training_minutes(tmp_path):
    """--x minutes puts each record at elapsed_s / 60: a run twice as fast reaches step 1,000 in half the time."""
    from rnnlab.tools.plot import curve

    records = [{"step": s, "val_loss": 3 - s / 1000, "elapsed_s": 0.3 * s} for s in (100, 200, 1000)]
    assert curve(records, "val_loss", "minutes") == [(0.5, 2.9), (1.0, 2.8), (5.0, 2.0)]
    assert curve(records, "val_loss") == [(100, 2.9), (200, 2.8), (1000, 2.0)]
    for name, seconds_per_step in (("fast", 0.1), ("slow", 0.2)):
        (tmp_path / name).mkdir()
        lines = [{"step": s, "smooth_loss": 3 - s / 900, "val_loss": 3.1 - s / 1000, "elapsed_s": seconds_per_step * s}
                 for s in range(100, 1100, 100)]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "time.png"
    result = rnnlab("plot", tmp_path / "fast" / "metrics.jsonl", tmp_path / "slow" / "metrics.jsonl", "--x", "minutes",
                    "--out", out)
    assert result.returncode == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", result.stderr
