"""rnnlab.tools.blas names the OpenBLAS kernel set in use, which `rnnlab bench` prints beside its numbers."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rnnlab.tools.blas import openblas_kernels


def numpy_uses_openblas() -> bool:
    config = np.show_config(mode="dicts")
    return "openblas" in config.get("Build Dependencies", {}).get("blas", {}).get("name", "").lower()


def test_openblas_kernels_names_the_loaded_kernel_set():
    name = openblas_kernels()
    if numpy_uses_openblas() and sys.platform.startswith("linux"):
        assert isinstance(name, str) and name
    else:
        assert name is None or isinstance(name, str)


def test_openblas_kernels_follows_openblas_coretype():
    """OPENBLAS_CORETYPE=Haswell (valid on every x86-64 CPU with AVX2) is what OpenBLAS then reports."""
    if not (numpy_uses_openblas() and sys.platform.startswith("linux")) or "avx2" not in cpuinfo_text():
        pytest.skip("needs NumPy's OpenBLAS on Linux and an AVX2 CPU")
    code = "import numpy; from rnnlab.tools.blas import openblas_kernels; print(openblas_kernels())"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "Haswell"


def cpuinfo_text() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""
