"""Which matrix-multiply kernels NumPy's OpenBLAS runs: on some CPUs the biggest speed lever of all.

NumPy's wheels carry an OpenBLAS built for many CPUs at once (``DYNAMIC_ARCH``). When NumPy is first
imported, OpenBLAS reads the CPU's identity and picks one kernel set; a CPU newer than its table gets an
older set. On the AMD EPYC (Zen 5) machines rnnlab is measured on, OpenBLAS 0.3.31 picks its "Haswell"
(AVX2) kernels although the CPU has AVX-512: a 1024^3 float32 GEMM runs at ~244 GFLOP/s, and at ~442 with
the "SkylakeX" (AVX-512) kernels; the (64, 256) x (256, 1024) product of an LSTM step at 200 vs 273.

OpenBLAS honours the environment variable ``OPENBLAS_CORETYPE`` -- read once, when it loads. So the
``rnnlab`` command calls :func:`prefer_avx512_kernels` before anything imports NumPy: it sets
``OPENBLAS_CORETYPE=SkylakeX`` only if the variable is unset and the CPU reports every AVX-512 subset those
kernels use (F, CD, BW, DQ, VL). Set the variable yourself to choose (``OPENBLAS_CORETYPE=Haswell`` gives
the old behaviour). Using rnnlab as a library: set it in the environment before Python starts. With
another BLAS (MKL, Accelerate) the variable does nothing. Standard library only: NumPy must not be loaded.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

AVX512_KERNELS = "SkylakeX"
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags the kernel reports (Linux); empty where there is no /proc/cpuinfo."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def prefer_avx512_kernels(environ=os.environ, flags=None, modules=sys.modules) -> str | None:
    """Ask OpenBLAS for its AVX-512 kernels where the CPU has AVX-512 -> the value set, or None if nothing
    was changed (variable already set, NumPy already loaded, or no AVX-512)."""
    if "OPENBLAS_CORETYPE" in environ or "numpy" in modules:
        return None
    if not AVX512_FLAGS <= (cpu_flags() if flags is None else flags):
        return None
    environ["OPENBLAS_CORETYPE"] = AVX512_KERNELS
    return AVX512_KERNELS


def openblas_kernels() -> str | None:
    """The kernel set the loaded OpenBLAS runs (e.g. "SkylakeX", "Haswell"), or None if unknown (another
    BLAS, or not Linux). Call after NumPy is imported."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            function = getattr(lib, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None
