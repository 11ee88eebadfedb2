"""rnnlab plot: a PNG of train and validation loss from a metrics file; bad metrics files fail clearly."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")


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
