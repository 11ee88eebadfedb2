"""Files, safely: the one place where operating-system errors become one-line messages.

* :func:`atomic_write_bytes` -- temporary file, flush, fsync, rename: a crash never leaves half a file.
* :func:`check_path_text`, :func:`regular_file`, :func:`read_bytes` -- reading a file the user named:
  a FIFO, a device or a directory is refused *before* opening it (opening a FIFO would wait forever), and
  a permission or I/O error becomes an :class:`RnnlabError` that names the file and what to do.
* :func:`prepare_directory` -- an output folder is created and proven writable (a probe file is written
  and removed) before any work starts, not after an hour of training.
* :class:`DirectoryLock` -- one writer per folder: an advisory lock (``flock``) on a lock file holding the
  owner's pid. The kernel releases it when its process dies, however it dies, so a stale lock can never
  block a later run.
* :func:`os_error_message` -- every ``OSError`` rnnlab does not handle more specifically ends here.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
from pathlib import Path

from .errors import RnnlabError, require

try:                                  # POSIX; elsewhere folders are not locked (said in docs/reliability.md)
    import fcntl
except ImportError:                   # pragma: no cover - Windows
    fcntl = None

TMP_SUFFIX = ".tmp"                   # atomic_write_bytes' temporary files: .<name>.<8 hex digits>.tmp


def os_error_message(err: OSError, what: str = "file") -> str:
    """'<what> <path>: <reason>' for an OSError, with a hint for the common reasons."""
    name = f" {err.filename}" if err.filename is not None else ""
    reason = err.strerror or str(err)
    hints = {PermissionError: "check its permissions", FileNotFoundError: "check the path",
             IsADirectoryError: "give a file, not a folder", NotADirectoryError: "a part of the path is a file"}
    hint = next((h for cls, h in hints.items() if isinstance(err, cls)), "check the path and the disk")
    return f"{what}{name}: {reason} ({hint})"


def check_path_text(path: str, what: str) -> str:
    """Refuse path *strings* that cannot name a file: empty, with a NUL byte, or not valid UTF-8 (Python
    keeps undecodable bytes of argv as lone surrogates, which could not be printed or saved as JSON)."""
    require(isinstance(path, str) and path != "", f"{what} is empty: give a path")
    require("\0" not in path, f"{what} {path!r} contains a NUL byte: give a real path")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise RnnlabError(f"{what} {shown!r} is not valid UTF-8: rename it with UTF-8 characters only") from None
    return path


def file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def regular_file(path, what: str, follow_links: bool = True) -> Path:
    """``path`` as a Path if it is an existing regular file; otherwise one clear RnnlabError.
    With ``follow_links=False`` a symbolic link is refused too (files inside a checkpoint folder)."""
    path = Path(check_path_text(os.fspath(path), what))
    try:
        st = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError:
        raise RnnlabError(f"{what} {path} not found: check the path") from None
    except OSError as err:
        raise RnnlabError(os_error_message(err, what)) from None
    if stat.S_ISLNK(st.st_mode):
        raise RnnlabError(f"{what} {path} is a symbolic link, which rnnlab does not follow here: "
                          "copy the file itself into the folder")
    if not stat.S_ISREG(st.st_mode):
        raise RnnlabError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file: give a file")
    return path


def read_bytes(path, what: str, max_bytes: int | None = None, follow_links: bool = True) -> bytes:
    """The whole of a regular file, or one RnnlabError (missing, not a file, unreadable, too big)."""
    path = regular_file(path, what, follow_links)
    try:
        with open(path, "rb") as f:
            if max_bytes is not None and os.fstat(f.fileno()).st_size > max_bytes:
                raise RnnlabError(f"{what} {path} is larger than {max_bytes:,} bytes: it is not what rnnlab "
                                  "expects here")
            return f.read()
    except OSError as err:
        raise RnnlabError(os_error_message(err, what)) from None


def same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_overwriting_inputs(output, what: str, inputs: dict) -> None:
    """An output path must not be one of the inputs (e.g. ``--metrics_file`` naming the dataset)."""
    for name, path in inputs.items():
        require(path is None or not same_file(output, path),
                f"{what} {output} is the same file as {name}: writing it would destroy that input; "
                "give another file name")


def atomic_write_bytes(path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a part.

    The temporary file sits beside the target (same filesystem, so ``os.replace`` is atomic) and is created
    by ``open`` with the usual umask permissions (``mkstemp`` would make it private, mode 0600)."""
    path = Path(check_path_text(os.fspath(path), what))
    require(path.parent.is_dir(), f"{what} {path}: directory {path.parent} does not exist; create it first")
    require(not path.is_dir(), f"{what} {path} is a directory: give a file name")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
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


def prepare_directory(directory, what: str) -> Path:
    """Create ``directory`` (and its parents) and prove it writable with a probe file, or fail now."""
    directory = Path(check_path_text(os.fspath(directory), what))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".rnnlab-probe-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
        with open(probe, "xb") as f:
            f.write(b"probe")
        probe.unlink()
    except FileExistsError:
        raise RnnlabError(f"{what} {directory}: a file of that name is in the way; give a folder name") from None
    except OSError as err:
        raise RnnlabError(f"{what} {directory} cannot be written ({err.strerror}): give a writable folder") from None
    return directory


class DirectoryLock:
    """Exclusive right to write a folder, held from :meth:`acquire` to :meth:`release` (or process exit).

    The lock file ``.rnnlab.lock`` records ``<pid> <host>`` of its holder, for the message a second writer
    gets. The lock itself is ``flock`` on that file: the kernel drops it when the holder exits or is killed,
    so a lock file left behind by a dead run is stale by construction and simply taken over."""

    NAME = ".rnnlab.lock"

    def __init__(self, directory, what: str = "--checkpoint_dir"):
        self.path, self.what, self.fd = Path(directory) / self.NAME, what, None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        if self.fd is not None or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as err:
            raise RnnlabError(os_error_message(err, f"{self.what} lock file")) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise RnnlabError(f"{self.what} {self.path.parent} is in use by another rnnlab run (pid and host: "
                              f"{owner}): wait for it to end, or give another {self.what}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)                                    # closing drops the flock
            self.fd = None

    __del__ = release
