"""benchmarks/gpu.py as a smoke test on the CPU: ``--device cpu --quick`` runs rnnlab's torch engine and the
bare PyTorch loop on a tiny shape and prints and writes every row (no timing asserts: the CPU numbers mean
nothing; the script is meant for a GPU, docs/gpu.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow      # runs the benchmark as a process

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


def test_quick_cpu_run_measures_both_sides_for_each_cell(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["cell"], r["hidden"], r["batch"], r["seq"]) for r in rows] == [("lstm", 16, 4, 8), ("gru", 16, 4, 8)]
    for row in rows:
        assert row["rnnlab_tokens_per_s"] > 0 and row["bare_tokens_per_s"] > 0 and row["device"] == "cpu"
    assert "| lstm | 2x16 | 4 | 8 |" in result.stdout


def test_a_missing_gpu_is_one_line():
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda:7"], capture_output=True, text=True,
                            timeout=120)
    import torch
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs or more: cuda:7 exists")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "cuda:7" in result.stderr
