"""The ``rnnlab`` command (also ``python -m rnnlab``): pick NumPy's BLAS kernels, then run the CLI.

:func:`rnnlab.blas.prefer_avx512_kernels` has to run before NumPy is imported, so this entry point imports
nothing else first; everything else is in :mod:`rnnlab.cli`.
"""

import sys

from .blas import prefer_avx512_kernels


def main(argv=None) -> int:
    prefer_avx512_kernels()
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
