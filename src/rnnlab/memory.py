"""Budgets for sizes rnnlab did not choose: every size read from a file or a flag is checked against the
memory it implies *before* anything is allocated.

A flag (``--hidden_size``, ``--beam_size``, ``--max_chars``) or a file (a checkpoint's shapes, a translator's
maximum output length, an archive member's declared size) can ask for any amount of memory. NumPy would
fail deep inside a computation, after minutes, with a MemoryError -- or the operating system would start
swapping and never come back. So each such place estimates the bytes it is about to need and calls
:func:`require_memory`, which refuses, in one line with the number, whatever exceeds the budget: the memory
available now (Linux' MemAvailable), times a share for the work at hand.
"""

from __future__ import annotations

import os

from .errors import RnnlabError

DEFAULT_SHARE = 0.8        # leave a fifth of what is free to the rest of the machine


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable; else physical memory), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    """1.5 GiB, 830 MiB; absurd sizes in powers of ten (2.4e+29 bytes)."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if size <= n < 1024 * 2 ** 40:
            return f"{n / size:,.1f} {unit}"
    return f"{n:.2g} bytes" if n >= 1024 * 2 ** 40 else f"{n / 2 ** 20:.2f} MiB"


def memory_budget(share: float = DEFAULT_SHARE) -> int | None:
    """The bytes one piece of work may take: ``share`` of the memory available now (None: unknown)."""
    have = available_memory()
    return None if have is None else int(have * share)


def require_memory(need: float, what: str, fix: str, share: float = DEFAULT_SHARE) -> None:
    """Refuse ``what`` if it needs more than ``share`` of the available memory: one line with both sizes and
    ``fix`` (what the user can change)."""
    budget = memory_budget(share)
    if budget is not None and need > budget:
        raise RnnlabError(f"{what} needs about {format_bytes(need)}, more than the {format_bytes(budget)} of "
                          f"memory it may use here: {fix}")
