"""rnnlab bench --quick as a smoke test: it runs, and its JSON has every documented field (no timing asserts)."""

import json
import subprocess
import sys

from rnnlab.bench import Shape, flops_per_step

REQUIRED = {"cell", "hidden", "batch", "seq", "engine", "tokens_per_s", "gflops", "peak_rss_mb", "gemm_peak_gflops"}


def test_quick_bench_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "bench", "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["gemm_peak_gflops"] > 0 and data["rows"]
    for row in data["rows"]:
        assert REQUIRED <= row.keys()
        assert row["tokens_per_s"] > 0 and row["peak_rss_mb"] > 0
    engines = {row["engine"] for row in data["rows"]}
    numpy_row = next(row for row in data["rows"] if row["engine"] == "numpy")
    assert {f"speedup_vs_{e}" for e in engines - {"numpy"}} <= numpy_row.keys()
    assert {(r["cell"], r["hidden"], r["batch"], r["seq"]) for r in data["rows"]} == {
        (cell, *shape) for cell in ("rnn", "lstm", "gru") for shape in ((50, 1, 10), (128, 32, 64))}
    assert "| lstm | 128/32/64 | numpy |" in result.stdout


def test_flop_count_of_an_lstm_step():
    """3 x (recurrent 2*T*B*H*4H + output 2*T*B*H*V) for H=2, B=3, T=5, V=65."""
    assert flops_per_step("lstm", Shape(2, 3, 5)) == 3 * (2 * 5 * 3 * 2 * 8 + 2 * 5 * 3 * 2 * 65)


def test_bad_shape_is_one_line():
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "bench", "--shapes", "256x64"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "HIDDEN/BATCH/SEQ" in result.stderr and len(result.stderr.splitlines()) == 1
