"""rnnlab.blas: the rnnlab command asks OpenBLAS for its AVX-512 kernels only where that is safe and wanted."""

import subprocess
import sys

import numpy as np

from rnnlab.blas import AVX512_FLAGS, cpu_flags, openblas_kernels, prefer_avx512_kernels

NO_NUMPY = {}


def test_sets_skylakex_kernels_on_an_avx512_cpu_when_nothing_is_set():
    environ = {}
    assert prefer_avx512_kernels(environ, AVX512_FLAGS | {"sse2"}, NO_NUMPY) == "SkylakeX"
    assert environ == {"OPENBLAS_CORETYPE": "SkylakeX"}


def test_respects_a_coretype_the_user_set():
    environ = {"OPENBLAS_CORETYPE": "Haswell"}
    assert prefer_avx512_kernels(environ, AVX512_FLAGS, NO_NUMPY) is None
    assert environ == {"OPENBLAS_CORETYPE": "Haswell"}


def test_leaves_cpus_without_every_avx512_subset_alone():
    environ = {}
    assert prefer_avx512_kernels(environ, AVX512_FLAGS - {"avx512bw"}, NO_NUMPY) is None
    assert prefer_avx512_kernels(environ, frozenset(), NO_NUMPY) is None
    assert environ == {}


def test_does_nothing_once_numpy_is_loaded():
    """OpenBLAS picks its kernels when NumPy loads; setting the variable later would be a silent no-op."""
    environ = {}
    assert prefer_avx512_kernels(environ, AVX512_FLAGS, {"numpy": np}) is None
    assert environ == {}


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: none\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2", "avx512f"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_command_entry_point_does_not_import_numpy_before_the_choice():
    code = "import sys, rnnlab.__main__; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_openblas_kernels_names_the_loaded_kernel_set():
    """NumPy's wheels ship OpenBLAS; then the name is known (e.g. Haswell, SkylakeX), else None."""
    name = openblas_kernels()
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {}).get("name", "")
    if "openblas" in blas.lower() and sys.platform.startswith("linux"):
        assert isinstance(name, str) and name
    else:
        assert name is None or isinstance(name, str)
