"""The code passes the project's linter (ruff, its rules in pyproject.toml), so CI catches what a reviewer
would: unused names, shadowed loop variables, zips of unequal lengths, unsorted imports, overlong lines."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff", reason="ruff is in the [test] extra; CI installs it")

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing_in_the_code_tests_benchmarks_and_scripts():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks",
                             "scripts"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
