"""Files, safely: what rnnlab reads is checked before it is opened, and everything it writes goes through one
output guard.

Reading. A file the user names is checked before it is opened (:func:`regular_file`: a FIFO would block
forever, a device or a folder is no text), and every file read through this module is *noted* as an input of
the run (:func:`note_read`), so that no output can ever replace it. An OS error becomes an
:class:`RnnlabError` that names the file and what to do (:func:`os_error_message`).

Writing: the output guard. Every file rnnlab creates, appends to, replaces or deletes -- checkpoints,
metrics, pages, images, bench JSON, exports, cache entries, locks, temporary files -- goes through
:func:`write_file`, :func:`append_text`, :func:`remove_file` or :func:`prepare_folder`. Each checks the
target (:func:`check_output`) against what the run reads and what rnnlab owns, and refuses, in one line
naming the flag and the fix:

1. a file the run reads: every file read through this module, the dataset's folder or glob (a new file there
   would join the corpus) and rnnlab's own package (its code, shipped corpora, templates and models);
2. a name of rnnlab's own folders that is not the output's kind: in a checkpoint folder, ``latest.json``,
   ``best.json``, their arrays and the lock belong to checkpoints; in a cache folder (marked by a
   ``CACHEDIR.TAG``) everything belongs to the cache -- and the checkpoint a run reads belongs to no output
   at all, unless the run continues it (``--resume``);
3. an existing file that rnnlab did not write (each :class:`Kind` recognises its own files by their
   content; an empty file holds nothing to lose), unless ``overwrite`` (``--overwrite``);
4. a link where a file is replaced: a symbolic link (the rename would replace the link, not its target) or
   a file with several hard links (the other names would keep the old content);
5. a special file: a FIFO or a character device (a pipe, a terminal, /dev/null) is *written in place* when
   the output is one stream of bytes (a page, an image, a JSON file, metrics lines); any other kind of
   output, and a socket, a block device or a folder, is refused.

Replacing is atomic: a temporary file is created exclusively beside the target (``O_CREAT | O_EXCL |
O_NOFOLLOW``, so nothing at that name is followed or reused), written, fsynced and renamed over the target;
then the folder is fsynced. A temporary file's name carries its writer's pid (:data:`TEMP_NAME`), so the
next write of that file, or the next run that owns the folder, removes what a killed writer left
(:func:`remove_stale_temps`). What is checked and why: docs/reliability.md, "Outputs".
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RnnlabError, require
from .memory import require_memory

try:                                  # POSIX; elsewhere folders are not locked (said in docs/reliability.md)
    import fcntl
except ImportError:                   # pragma: no cover - Windows
    fcntl = None

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_NOCTTY = getattr(os, "O_NOCTTY", 0)
PACKAGE = Path(__file__).resolve().parent           # rnnlab's installed package: code and shipped data
GENERATOR = "rnnlab"                                # the mark rnnlab's pages, images and JSON files carry
TEMP_NAME = re.compile(r"\.(?P<target>.+)\.rnnlab-(?P<pid>\d{1,10})-[0-9a-f]{8}\.tmp")
LOCK_NAME = ".rnnlab.lock"
CACHE_TAG = "CACHEDIR.TAG"                          # https://bford.info/cachedir/: backup tools skip the folder
CACHE_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                  "# This file is a cache directory tag created by rnnlab (encoded corpora; safe to delete).\n")
CHECKPOINT_FILES = re.compile(r"(latest|best)\.json|(latest|best)-\d{6,}b?\.npz|" + re.escape(LOCK_NAME))
HEAD_BYTES = 1 << 16                                # what a Kind reads of an existing file to recognise it


# ---- errors and path texts -----------------------------------------------------------------------------

def os_error_message(err: OSError, what: str = "file") -> str:
    """'<what> <path>: <reason>' for an OSError, with a hint for the common reasons."""
    name = f" {err.filename}" if err.filename is not None else ""
    reason = err.strerror or str(err)
    hints = {PermissionError: "check its permissions", FileNotFoundError: "check the path",
             IsADirectoryError: "give a file, not a folder", NotADirectoryError: "a part of the path is a file"}
    hint = next((h for cls, h in hints.items() if isinstance(err, cls)), "check the path and the disk")
    if err.errno == errno.ENOSPC:
        hint = "free some disk space"
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
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISLNK, "a symbolic link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


# ---- what the run reads --------------------------------------------------------------------------------

@dataclass
class Reads:
    """Everything this process reads, which no output may replace (one per command: :func:`new_session`)."""

    files: dict = field(default_factory=dict)            # (st_dev, st_ino) -> what it is ("the dataset", ...)
    paths: dict = field(default_factory=dict)            # resolved path -> what it is (survives a replacement)
    trees: dict = field(default_factory=lambda: {PACKAGE: "rnnlab's installed package (its code and shipped data)"})
    patterns: dict = field(default_factory=dict)         # absolute glob pattern -> what it is
    checkpoint_folders: dict = field(default_factory=dict)  # folder a checkpoint is read from -> what
    continued: set = field(default_factory=set)          # of those, the folders this run continues (--resume)


_reads = Reads()


def new_session() -> None:
    """Forget the inputs noted so far: one command, one set of inputs (``rnnlab.cli.main`` calls this)."""
    global _reads
    _reads = Reads()


def resolved(path) -> Path:
    """The absolute path with the folder's links resolved and the last name kept as it is (a link there is
    the guard's business, not something to follow)."""
    path = Path(os.path.abspath(os.fspath(path)))
    return path.parent.resolve() / path.name if path.name else path.resolve()


def note_read(path, what: str) -> None:
    """``path`` is an input of this run: no output may replace it (nor, if it is a folder, anything in it).
    ``what`` names it in messages ("the dataset", "the checkpoint")."""
    what = what if what.startswith(("the ", "a ", "an ")) else f"the {what}"
    full = resolved(path)
    try:
        st = os.stat(full)
    except OSError:
        _reads.paths.setdefault(full, what)
        return
    if stat.S_ISDIR(st.st_mode):
        _reads.trees.setdefault(full.resolve(), what)
        return
    _reads.files.setdefault((st.st_dev, st.st_ino), what)
    _reads.paths.setdefault(full, what)
    _reads.paths.setdefault(full.resolve(), what)


def note_read_pattern(pattern: str, what: str) -> None:
    """Every file matching the glob ``pattern``, now or later, is an input (a new match would join it)."""
    _reads.patterns.setdefault(os.path.abspath(pattern), what)


def note_checkpoint_read(folder, what: str, continued: bool = False) -> None:
    """A checkpoint is read from ``folder``: its files belong to no output, unless this run ``continued`` it
    (``--resume`` into the same folder: then its own saves replace them, under the folder's lock)."""
    full = resolved(folder).resolve()
    _reads.checkpoint_folders.setdefault(full, what)
    if continued:
        _reads.continued.add(full)


def input_named(full: Path, st: os.stat_result | None) -> str | None:
    """What the run reads at ``full`` (a noted file, a member of a noted folder or pattern), or None."""
    if st is not None and (st.st_dev, st.st_ino) in _reads.files:
        return _reads.files[(st.st_dev, st.st_ino)]
    for candidate in {full, full.parent.resolve() / full.name}:
        if candidate in _reads.paths:
            return _reads.paths[candidate]
        for tree, what in _reads.trees.items():
            if candidate == tree:
                return what
            if tree in candidate.parents:
                return f"inside {what}"
        for pattern, what in _reads.patterns.items():
            if fnmatch.fnmatchcase(str(candidate), pattern):
                return f"matched by {what}"
    return None


def is_under(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both resolved)."""
    path, folder = resolved(path).resolve(), resolved(folder).resolve()
    return path == folder or folder in path.parents


# ---- reading -------------------------------------------------------------------------------------------

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


def read_bytes(path, what: str, max_bytes: int | None = None, follow_links: bool = True, note: bool = True) -> bytes:
    """The whole of a regular file, or one RnnlabError (missing, not a file, unreadable, too big). The file
    is noted as an input of the run, unless ``note`` is False: a file its owner reads to replace it (the
    previous checkpoint JSON when saving, a cache entry)."""
    path = regular_file(path, what, follow_links)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise RnnlabError(f"{what} {path} is larger than {max_bytes:,} bytes: it is not what rnnlab "
                                  "expects here")
            require_memory(size, f"reading {what} {path}", "give a smaller file")
            data = f.read()
    except OSError as err:
        raise RnnlabError(os_error_message(err, what)) from None
    if note:
        note_read(path, what)
    return data


def same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def read_head(path: Path, n: int = HEAD_BYTES, tail: bool = False) -> bytes:
    """The first (or last) ``n`` bytes of a regular file, without following a link; b"" if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        if tail:
            os.lseek(fd, max(os.fstat(fd).st_size - n, 0), os.SEEK_SET)
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)


# ---- what rnnlab writes: kinds of output ---------------------------------------------------------------

def _json_head(path: Path) -> dict | None:
    """The first line of a file as a JSON object, or None."""
    line = read_head(path).split(b"\n", 1)[0]
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_metrics(path: Path) -> bool:
    record = _json_head(path)
    return record is not None and type(record.get("step")) is int


def _marked(path: Path, marks: tuple) -> bool:
    head = read_head(path) + read_head(path, tail=True)
    return any(mark in head for mark in marks)


def _is_json_by_rnnlab(path: Path) -> bool:
    return re.match(rb'\s*\{\s*"generator"\s*:\s*"rnnlab', read_head(path, 256)) is not None


def _is_checkpoint_file(path: Path) -> bool:
    """A checkpoint JSON (it names its format version) or arrays file (a zip archive) of rnnlab's names."""
    if not CHECKPOINT_FILES.fullmatch(path.name):
        return False
    if path.suffix == ".npz":
        return read_head(path, 4) == b"PK\x03\x04"
    return b'"format_version"' in read_head(path) + read_head(path, tail=True)


def _is_cache_file(path: Path) -> bool:
    return path.parent.joinpath(CACHE_TAG).is_file()


@dataclass(frozen=True)
class Kind:
    """A kind of file rnnlab writes: how it recognises one it wrote, and how it may be written."""

    what: str                                   # "an rnnlab metrics file", for messages
    recognise: Callable[[Path], bool]           # an existing file of this kind, written by rnnlab
    stream: bool = True                         # one stream of bytes: may go to a FIFO or a device in place
    zone: str | None = None                     # the rnnlab folder it lives in: "checkpoint", "cache" or None
    make_folders: bool = False                  # create a missing folder (else: the folder must exist)
    outside_checkpoints: bool = False           # never into a checkpoint folder, whatever the name (exports)


METRICS = Kind("an rnnlab metrics file (JSON lines from rnnlab train --metrics_file)", _is_metrics,
               make_folders=True)
PAGE_MARK = b'<meta name="generator" content="rnnlab'          # in every page's head (templates/head.html)
PAGE = Kind("a page written by rnnlab", lambda p: _marked(p, (PAGE_MARK,)))
IMAGE = Kind("an image drawn by rnnlab", lambda p: _marked(p, (GENERATOR.encode(),)))
BENCH = Kind("a JSON file written by rnnlab", _is_json_by_rnnlab, make_folders=True)
CHECKPOINT = Kind("an rnnlab checkpoint file", _is_checkpoint_file, stream=False, zone="checkpoint", make_folders=True)
CACHE = Kind("a file of rnnlab's corpus cache", _is_cache_file, stream=False, zone="cache", make_folders=True)


def export_kind(what: str, marks: tuple) -> Kind:
    """The kind of a one-file export (a page, an ONNX graph, safetensors): recognised by ``marks``, its folder
    made if missing, never inside a checkpoint folder (a model shared from there could be taken for the run)."""
    return Kind(what, lambda p: _marked(p, marks), make_folders=True, outside_checkpoints=True)


# ---- the guard -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """An output path that passed the guard."""

    path: Path                 # absolute, the folder's links resolved
    stream: bool = False       # a FIFO or a character device: written in place, never replaced
    exists: bool = False


def is_checkpoint_folder(folder: Path) -> bool:
    """A folder rnnlab writes checkpoints into: it holds the lock file or a checkpoint JSON (and is not the
    corpus cache, which has a lock file too)."""
    return not is_cache_folder(folder) and any((folder / name).exists() or (folder / name).is_symlink()
                                               for name in (LOCK_NAME, "latest.json", "best.json"))


def is_cache_folder(folder: Path) -> bool:
    return (folder / CACHE_TAG).is_file()


def check_output(path, kind: Kind, flag: str, overwrite: bool = False) -> Target:
    """The guard: ``path`` may be written as ``kind`` by this run, or one RnnlabError says why not and what
    to do (the rules are in the module docstring). Nothing is created or changed here."""
    text = check_path_text(os.fspath(path), flag)
    full = resolved(text)
    require(full.name not in ("", ".", ".."), f"{flag} {text} names a folder: give a file name")
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise RnnlabError(f"{flag} {text} cannot be written ({err.strerror}): give a writable path") from None
    followed = st
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            followed = os.stat(full)
        except OSError:
            followed = None
    reads = input_named(full, followed)
    if reads is not None and not (kind.zone == "checkpoint" and full.parent.resolve() in _reads.continued):
        raise RnnlabError(f"{flag} {text} is {reads}, which this run reads: writing it would destroy its "
                          "input; give another path")
    folder = full.parent
    if kind.zone != "cache" and is_cache_folder(folder):
        raise RnnlabError(f"{flag} {text} is inside rnnlab's corpus cache {folder}: give a path outside it")
    if kind.zone != "checkpoint" and CHECKPOINT_FILES.fullmatch(full.name) and is_checkpoint_folder(folder):
        raise RnnlabError(f"{flag} {text} is a file of the checkpoint in {folder}: writing it would damage "
                          "that checkpoint; give another file name")
    if kind.outside_checkpoints and is_checkpoint_folder(folder):
        raise RnnlabError(f"{flag} {text} is inside the checkpoint folder {folder}, which holds nothing but its "
                          "checkpoint: write it elsewhere")
    read_from = _reads.checkpoint_folders.get(folder.resolve())
    if (read_from is not None and CHECKPOINT_FILES.fullmatch(full.name)
            and folder.resolve() not in _reads.continued):
        raise RnnlabError(f"{flag} {text} is in the folder of {read_from}, which this run reads: give another "
                          "folder")
    if st is None:
        return Target(full)
    if stat.S_ISLNK(st.st_mode):
        if followed is not None and (stat.S_ISFIFO(followed.st_mode) or stat.S_ISCHR(followed.st_mode)):
            return _stream_target(full, followed, kind, flag, text)
        raise RnnlabError(f"{flag} {text} is a symbolic link: rnnlab replaces a file atomically, which would "
                          f"replace the link and not its target; give the target's path "
                          f"({os.path.realpath(full)}) or another name")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return _stream_target(full, st, kind, flag, text)
    if not stat.S_ISREG(st.st_mode):
        raise RnnlabError(f"{flag} {text} is {file_kind(st.st_mode)}: give the path of a regular file")
    if st.st_nlink > 1:
        raise RnnlabError(f"{flag} {text} has {st.st_nlink} hard links: replacing it would leave the other names "
                          "with the old content; give a path of its own")
    if not overwrite and st.st_size > 0:
        try:                                                     # recognising it means reading it
            os.close(os.open(full, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC))
        except OSError as err:
            raise RnnlabError(f"{flag} {text} cannot be written or read ({err.strerror}): check its permissions, "
                              "or give another path") from None
    if not (overwrite or st.st_size == 0 or kind.recognise(full)):
        raise RnnlabError(f"{flag} {text} exists and is not {kind.what}: rnnlab did not write it; give another "
                          "name, or add --overwrite to replace it")
    return Target(full, exists=True)


def _stream_target(full: Path, st: os.stat_result, kind: Kind, flag: str, text: str) -> Target:
    require(kind.stream, f"{flag} {text} is {file_kind(st.st_mode)}: rnnlab writes a folder of files here; "
                         "give the path of a folder")
    return Target(full, stream=True, exists=True)


def temp_name(target: str) -> str:
    """A temporary file's name beside ``target``: hidden, with this process' pid and a random part."""
    return f".{target}.rnnlab-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True                   # someone else's live process (or a pid we cannot ask about): keep it
    return True


def remove_stale_temps(folder, target: str | None = None) -> list[str]:
    """Remove the temporary files that killed writers left in ``folder`` (of ``target`` only, if given):
    rnnlab's temporary names whose writer is no longer running; regular files only. -> the names removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.fullmatch(entry.name)
        if not match or (target is not None and match["target"] != target) or pid_alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass
    return removed


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | Iterable[bytes]) -> None:
    for part in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
        view = memoryview(part).cast("B")
        while view:
            view = view[os.write(fd, view):]


def _open_stream(target: Target, flag: str, append: bool = False) -> int:
    """Open a FIFO or character device for writing in place (no creation, no truncation). A FIFO nobody
    reads is an error at once instead of a wait."""
    try:
        fd = os.open(target.path, os.O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (os.O_APPEND if append else 0))
    except OSError as err:
        if err.errno == errno.ENXIO:
            raise RnnlabError(f"{flag} {target.path} is a FIFO that nobody reads: start its reader first") from None
        raise RnnlabError(os_error_message(err, flag)) from None
    os.set_blocking(fd, True)
    return fd


def make_parent(target: Target, kind: Kind, flag: str) -> None:
    """Create the target's folder if the kind does (metrics, JSON, checkpoints); else it must exist."""
    if not kind.make_folders:
        require(target.path.parent.is_dir(), f"{flag} {target.path}: directory {target.path.parent} does not "
                                             "exist; create it first")
        return
    try:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RnnlabError(f"{flag} {target.path}: a file is in the way of its folder; give another path") from None
    except OSError as err:
        raise RnnlabError(f"{flag} {target.path}: its folder cannot be created ({err.strerror}); give a writable "
                          "path") from None


def write_file(path, data: bytes | Iterable[bytes], kind: Kind, flag: str, overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or an iterable of byte chunks for a large file) to ``path`` as ``kind``: checked
    by the guard, then replaced atomically (or written in place to a FIFO or a device). -> the path."""
    target = check_output(path, kind, flag, overwrite)
    if target.stream:
        fd = _open_stream(target, flag)
        try:
            _write_all(fd, data)
        except OSError as err:
            raise RnnlabError(os_error_message(err, flag)) from None
        finally:
            os.close(fd)
        return target.path
    make_parent(target, kind, flag)
    folder, name = target.path.parent, target.path.name
    remove_stale_temps(folder, name)
    tmp = folder / temp_name(name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target.path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        reason = "disk full: free some space" if err.errno == errno.ENOSPC else f"{err.strerror}: give a writable path"
        raise RnnlabError(f"{flag} {target.path} cannot be written ({reason})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return target.path


class Appender:
    """Lines appended to one output (``--metrics_file``): the guard checks it once, when it is opened (so a
    bad path fails before an hour of training), and every line is one ``write`` of the whole line -- to a
    regular file through a descriptor that follows no link, or to a FIFO / device opened once, in place (a
    FIFO nobody reads is an error at once)."""

    def __init__(self, path, kind: Kind, flag: str, overwrite: bool = False):
        self.flag, self.fd = flag, None
        self.target = check_output(path, kind, flag, overwrite)
        if self.target.stream:
            self.fd = _open_stream(self.target, flag, append=True)
            return
        make_parent(self.target, kind, flag)
        if overwrite and self.target.exists and not kind.recognise(self.target.path):
            os.close(self._open(os.O_TRUNC))                     # not rnnlab's, and --overwrite: start it afresh
        os.close(self._open(0))                                  # fail now, not at the first report

    def _open(self, extra: int = 0) -> int:
        try:
            fd = os.open(self.target.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC | extra,
                         0o666)
        except OSError as err:
            raise RnnlabError(f"{self.flag} {self.target.path} cannot be written ({err.strerror}); give the path of "
                              "a writable file") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            raise RnnlabError(f"{self.flag} {self.target.path} was replaced by {file_kind(st.st_mode)} or a hard "
                              "link: nothing more is written to it")
        return fd

    def write(self, text: str) -> None:
        fd = self.fd if self.fd is not None else self._open()
        try:
            _write_all(fd, text.encode("utf-8"))
        except OSError as err:
            raise RnnlabError(os_error_message(err, self.flag)) from None
        finally:
            if fd != self.fd:
                os.close(fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    __del__ = close


def remove_file(path, kind: Kind, flag: str) -> bool:
    """Delete a file rnnlab wrote as ``kind`` (an old checkpoint's arrays, another run's checkpoint with
    --overwrite, a stale cache entry): only a regular file, not a link, that the guard would let this run
    replace. -> whether something was removed."""
    full = resolved(path)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise RnnlabError(os_error_message(err, flag)) from None
    if stat.S_ISLNK(st.st_mode):
        if input_named(full, None) is not None:                  # (unlinking a link never touches its target)
            return False
    elif not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        return False
    else:
        check_output(full, kind, flag, overwrite=True)
    try:
        os.unlink(full)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise RnnlabError(os_error_message(err, flag)) from None
    return True


def check_folder(directory, kind: Kind, flag: str) -> Path:
    """The guard for an output folder (``--checkpoint_dir``, ``--cache_dir``, export's ``--out``): not something
    the run reads (a new file there would join the input), not another kind's rnnlab folder, not a link, not
    a file. Nothing is created here. -> the folder, absolute."""
    text = check_path_text(os.fspath(directory), flag)
    full = resolved(text)
    reads = input_named(full, None)
    if reads is not None:
        raise RnnlabError(f"{flag} {text} is {reads}, which this run reads: its files would become part of the "
                          "input; give a folder outside it")
    if kind.zone != "cache" and (is_cache_folder(full) or is_cache_folder(full.parent)):
        raise RnnlabError(f"{flag} {text} is rnnlab's corpus cache: give another folder")
    if kind.zone == "cache" and any((full / f"{tag}.json").exists() for tag in ("latest", "best")):
        raise RnnlabError(f"{flag} {text} holds a checkpoint: give a folder of its own for the cache")
    if os.path.islink(full):
        raise RnnlabError(f"{flag} {text} is a symbolic link: give the folder it points to")
    for folder in (full, *full.parents):
        if folder.exists() and not folder.is_dir():
            raise RnnlabError(f"{flag} {text}: a file of that name is in the way ({folder}); give a folder name")
    return full


def prepare_folder(directory, kind: Kind, flag: str) -> Path:
    """Create the output folder ``directory`` (and its parents) after :func:`check_folder`, and prove it
    writable with a probe file, or fail now -- not after an hour of training."""
    full = check_folder(directory, kind, flag)
    try:
        full.mkdir(parents=True, exist_ok=True)
        probe = full / temp_name("probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise RnnlabError(f"{flag} {directory}: a file of that name is in the way; give a folder name") from None
    except OSError as err:
        raise RnnlabError(f"{flag} {directory} cannot be written ({err.strerror}): give a writable folder") from None
    return full


class DirectoryLock:
    """Exclusive right to write a folder, held from :meth:`acquire` to :meth:`release` (or process exit).

    The lock file ``.rnnlab.lock`` records ``<pid> <host>`` of its holder, for the message a second writer
    gets. The lock itself is ``flock`` on that file: the kernel drops it when the holder exits or is killed,
    so a lock file left behind by a dead run is stale by construction and simply taken over. The file is
    opened without following a link and must be a regular file with one name: a lock file hard-linked to a
    file elsewhere is refused, never truncated."""

    NAME = LOCK_NAME

    def __init__(self, directory, what: str = "--checkpoint_dir"):
        self.path, self.what, self.fd = Path(directory) / self.NAME, what, None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        if self.fd is not None or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise RnnlabError(f"{self.what} lock file {self.path} is a symbolic link: remove it") from None
            raise RnnlabError(os_error_message(err, f"{self.what} lock file")) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            raise RnnlabError(f"{self.what} lock file {self.path} is {file_kind(st.st_mode)} or has "
                              f"{st.st_nlink} hard links, not a lock file of its own: remove it")
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
