"""rnnlab bench --quick as a smoke test: it runs, and its JSON has every documented field (no timing asserts)."""

import json
import subprocess
import sys

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.tools.bench import SPREAD_LIMIT, Shape, add_ratios, bench_one, flops_per_step

pytestmark = pytest.mark.slow      # every test times engines in worker processes

REQUIRED = {"cell", "hidden", "batch", "seq", "layers", "engine", "parallelism", "tokens_per_s", "gflops",
            "peak_rss_mb", "gemm_peak_gflops", "seconds_per_step", "min_seconds_per_step", "max_seconds_per_step",
            "spread", "noisy"}


def test_quick_bench_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "bench", "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["gemm_peak_gflops"] > 0 and data["rows"]
    assert data["threads"] >= 1 and len(data["load_average"]) == 2
    for row in data["rows"]:
        assert row.keys() >= REQUIRED
        assert row["tokens_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["min_seconds_per_step"] <= row["seconds_per_step"] <= row["max_seconds_per_step"]
        assert row["noisy"] == (row["spread"] > SPREAD_LIMIT)
    engines = {row["engine"] for row in data["rows"]}
    numpy_row = next(row for row in data["rows"] if row["engine"] == "numpy")
    assert {f"speedup_vs_{e}" for e in engines - {"numpy"}} <= numpy_row.keys()
    cells = ("rnn", "lstm", "gru", "mingru", "minlstm")
    assert {(r["cell"], r["hidden"], r["batch"], r["seq"]) for r in data["rows"]} == {
        (cell, *shape) for cell in cells for shape in ((50, 1, 10), (128, 32, 64))}
    assert "| lstm | 128/32/64 | numpy |" in result.stdout
    cross = {(c["shape"], c["cell"], c["engine"], c["vs_cell"], c["vs_engine"]) for c in data["cross_cell"]}
    assert ("128/32/64", "mingru", "numpy", "gru", "torch") in cross and len(cross) == 2 * 3 * len(engines) ** 2 * 2
    assert "| 128/32/64 | mingru, numpy | gru, numpy |" in result.stdout


def test_flop_count_of_an_lstm_step():
    """3 x (recurrent 2*T*B*H*4H + output 2*T*B*H*V) for H=2, B=3, T=5, V=65."""
    assert flops_per_step("lstm", Shape(2, 3, 5)) == 3 * (2 * 5 * 3 * 2 * 8 + 2 * 5 * 3 * 2 * 65)


def test_flop_count_of_a_mingru_step_has_no_recurrent_product():
    """Only the output layer for one layer (its input projection is a row lookup); layer 2 adds x Wx."""
    assert flops_per_step("mingru", Shape(2, 3, 5)) == 3 * (2 * 5 * 3 * 2 * 65)
    assert flops_per_step("mingru", Shape(2, 3, 5, 2)) == 3 * (2 * 5 * 3 * 2 * 4 + 2 * 5 * 3 * 2 * 65)


def test_flop_count_of_a_two_layer_step_adds_the_second_layers_two_products():
    """Layer 2 adds its recurrence and its input projection x Wx (a GEMM, unlike layer 1's row lookup)."""
    assert flops_per_step("lstm", Shape(2, 3, 5, 2)) == 3 * (3 * 2 * 5 * 3 * 2 * 8 + 2 * 5 * 3 * 2 * 65)


def test_shapes_parse_with_and_without_layers():
    assert Shape.parse("256/32/64/2") == Shape(256, 32, 64, 2)
    assert Shape.parse("256/32/64", layers=3) == Shape(256, 32, 64, 3)
    assert str(Shape(256, 32, 64, 2)) == "256/32/64/2" and str(Shape(256, 64, 100)) == "256/64/100"
    with pytest.raises(RnnlabError, match="HIDDEN/BATCH/SEQ"):
        Shape.parse("1/2/3/4/5")


class FakeWorker:
    """Stands in for a worker process: answers build and time with fixed per-round step times."""

    def __init__(self, engine, per_step):
        self.engine, self.per_step, self.calls = engine, list(per_step), 0

    def build(self, cell, shape):
        return "1 thread"

    def time(self, steps):
        self.calls += 1
        return steps * (self.per_step[self.calls - 3] if self.calls > 2 else self.per_step[0])


def test_rounds_spread_is_reported_and_flagged(monkeypatch):
    """min / median / max of the rounds, spread = (max - min) / median, flagged above SPREAD_LIMIT; the
    paired ratios compare round i with round i."""
    monkeypatch.setattr("rnnlab.tools.bench.SETTLE_S", 0.0)
    steady = FakeWorker("numpy", [0.010, 0.010, 0.011, 0.010, 0.010])
    noisy = FakeWorker("torch", [0.020, 0.030, 0.020, 0.020, 0.040])
    rows = bench_one("lstm", Shape(8, 2, 3), [steady, noisy], rounds=5, round_s=0.05)
    for row in rows:
        row["peak_rss_mb"] = 1.0
    add_ratios(rows)
    numpy_row, torch_row = rows
    assert numpy_row["seconds_per_step"] == pytest.approx(0.010)
    assert numpy_row["max_seconds_per_step"] == pytest.approx(0.011)
    assert numpy_row["spread"] == pytest.approx(0.1) and not numpy_row["noisy"]
    assert torch_row["spread"] == pytest.approx(1.0) and torch_row["noisy"]
    assert numpy_row["speedup_vs_torch"] == pytest.approx(2.0)
    assert numpy_row["speedup_range_vs_torch"] == pytest.approx([20 / 11, 4.0])


def test_bad_shape_is_one_line():
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "bench", "--shapes", "256x64"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "HIDDEN/BATCH/SEQ" in result.stderr and len(result.stderr.splitlines()) == 1


def test_default_rounds_of_the_cli_are_the_benchs():
    from rnnlab.cli import build_parser
    from rnnlab.tools.bench import DEFAULT_ROUNDS
    assert build_parser().parse_args(["bench"]).rounds == DEFAULT_ROUNDS
