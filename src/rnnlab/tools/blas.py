"""Which kernel set NumPy's OpenBLAS runs -- worth printing next to any benchmark.

NumPy's wheels carry an OpenBLAS built for many CPUs at once (``DYNAMIC_ARCH``). When NumPy is first
imported, OpenBLAS picks one kernel set for the CPU, unless the environment variable ``OPENBLAS_CORETYPE``
names one. On the AMD EPYC (Zen 5) machines rnnlab is measured on, OpenBLAS picks its AVX-512 "SkylakeX"
kernels by itself, but the machines' environment sets ``OPENBLAS_CORETYPE=Haswell`` (AVX2 kernels): a
1024^3 float32 GEMM then runs at ~260 GFLOP/s instead of ~490, and an LSTM step's (64, 256) x (256, 1024)
product ~1.35x slower. rnnlab leaves that setting alone (it is the machine owner's choice, and the kernel set
changes float rounding); ``rnnlab bench`` reports which kernels ran so its numbers can be read correctly.
"""

from __future__ import annotations

import ctypes
from pathlib import Path


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
