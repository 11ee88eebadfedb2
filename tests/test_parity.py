"""benchmarks/parity.py as a smoke test: a tiny configuration runs both engines for every cell and writes
the equal-steps table and its JSON (no loss or timing asserts: a few steps say nothing about learning)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "parity.py"


@pytest.mark.slow
def test_quick_parity_prints_equal_steps_table_for_every_cell(tmp_path):
    out = tmp_path / "parity.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--steps", "4", "--eval_every", "2",
                             "--hidden_size", "8", "--batch_size", "2", "--seq_length", "8", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for cell in ("rnn", "lstm", "gru"):
        assert f"### {cell}" in result.stdout
    assert "| 2 | " in result.stdout and "| 4 | " in result.stdout
    data = json.loads(out.read_text())["results"]
    lstm = data["lstm"]["0"]
    assert set(lstm) == {"rnnlab", "torch"}
    for engine in lstm.values():
        assert set(engine["val"]) == {"2", "4"} and engine["tokens_per_s"] > 0
        assert len(engine["max_state"]) == 2 and len(engine["max_state"][0]) == 2   # 2 layers x (h, c)


def test_unknown_engine_is_a_usage_error():
    result = subprocess.run([sys.executable, str(SCRIPT), "--engines", "jax"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "unknown engine" in result.stderr
