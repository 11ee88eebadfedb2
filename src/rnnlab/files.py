"""Writing files so that a crash never leaves a half-written one: temporary file, flush, fsync, rename."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import RnnlabError, require


def atomic_write_bytes(path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a part.

    The temporary file sits beside the target (same filesystem, so ``os.replace`` is atomic) and is created
    by ``open`` with the usual umask permissions (``mkstemp`` would make it private, mode 0600)."""
    path = Path(path)
    require(path.parent.is_dir(), f"{what} {path}: directory {path.parent} does not exist; create it first")
    require(not path.is_dir(), f"{what} {path} is a directory: give a file name")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RnnlabError(f"{what} {path} cannot be written ({err.strerror}): give a writable path") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
