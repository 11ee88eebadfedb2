"""Issue 12, hostile inputs: a checkpoint folder, a file or a flag never hurts the user or loses their work.

What this file proves, in the order of the issue's "Done when":

1. ``test_hostile_input_ends_in_one_line_and_touches_nothing_else`` -- one table of hostile inputs -> the exit
   status and a fragment of the one line on stderr. Every row also proves that nothing in the test's folder
   changed except the folders the row names in ``may_change`` (a refused command changes nothing at all).
2. Property tests (hypothesis): mutated checkpoint JSON and mutated arrays, fed to the loader, to ``sample``
   and to ``train --resume``, end in exit 2 with one line or in a clean run -- never another exception -- and
   never touch a file outside the checkpoint folder.
3. ``rnnlab train`` stopped by SIGTERM / SIGINT / SIGHUP at random moments saves a loadable checkpoint, exits
   128 + N, and resumes to parameters bit-identical to an uninterrupted run; a closed stdout ends a run with
   141 after saving, and ``sample`` into a closed pipe ends without a traceback.
4. The leftovers of a killed save (temporary files, an arrays file no JSON names) are removed by the next run
   in that folder, and files of any other name are kept.

Commands run in-process through ``rnnlab.cli.main`` (fast); a real process is used only where one matters
(signals, pipes, FIFOs that could hang, non-UTF-8 bytes in argv, NumPy warnings that pytest would capture).
Models are tiny (8 units, a 10-line names file), so the whole file stays well under a minute.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab import files, memory
from rnnlab.cli import main
from rnnlab.data import corpus
from rnnlab.errors import RnnlabError, TrainingDiverged
from rnnlab.files import DirectoryLock
from rnnlab.nn import model as charmodel
from rnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from rnnlab.training.config import resume_config
from rnnlab.training.trainer import TrainConfig, Trainer

NAMES = ["anna", "bob", "carl", "dave", "erik", "fred", "gus", "hank", "ivan", "jon"]
NAMES_TEXT = "".join(name + "\n" for name in NAMES)
STEPS = 5                                   # steps of the checkpoint every test starts from
ARRAYS = f"latest-{STEPS:06d}.npz"          # ... and the name of its arrays file
TINY = ["--hidden_size", "8", "--iterations", "3", "--val_fraction", "0", "--quiet"]
SAMPLE = ["--num_samples", "2", "--length", "20"]
# A real process that should end in about a second gets 60 s: generous for a loaded 2-core CI machine, and a
# command that hangs (e.g. opening a FIFO for reading) fails the test instead of blocking the whole suite.
PROCESS_TIMEOUT_S = 60
ENV = {key: value for key, value in os.environ.items() if key != "RNNLAB_DEBUG"}   # no tracebacks on purpose
REAL_OS_OPEN = os.open                      # snapshots read with it: a test's deny_open patches os.open


# ---- running rnnlab ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    status: int
    out: str
    err: str


def run_in_process(argv: list[str]) -> Result:
    """``rnnlab ARGV`` through ``main``; argparse's usage errors arrive as SystemExit. Any other exception
    escapes (and fails the test): the promise is one line on stderr, never a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return Result(status, out.getvalue(), err.getvalue())


def run_process(argv: list, cwd, timeout: float = PROCESS_TIMEOUT_S, env: dict | None = None) -> Result:
    """``rnnlab ARGV`` as a real process (argv items may be bytes: names that are not UTF-8)."""
    done = subprocess.run([sys.executable, "-m", "rnnlab.cli", *argv], cwd=cwd, capture_output=True,
                          timeout=timeout, env={**ENV, **(env or {})}, check=False)
    return Result(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))


def assert_outcome(result: Result, status: int, fragment: str, stdout_empty: bool = True) -> None:
    """Exit 2: exactly one line on stderr, starting with 'rnnlab', naming the problem, and (unless the run had
    started) nothing on stdout. Exit 0: every stderr line is an rnnlab note. Never a traceback."""
    both = result.out + result.err
    assert "Traceback" not in both, both
    assert result.status == status, (result.status, result.err)
    lines = result.err.splitlines()
    assert all(line.startswith("rnnlab") for line in lines), result.err
    if status == 2:
        assert len(lines) == 1, result.err
        assert fragment in lines[0], (fragment, lines[0])
        if stdout_empty:
            assert result.out == "", result.out
    else:
        assert fragment in both, (fragment, both)


# ---- files ---------------------------------------------------------------------------------------------

def train_checkpoint(dataset: Path, directory: Path, iterations: int = STEPS, **fields) -> Path:
    """A real checkpoint, written by the library (nothing printed)."""
    config = {"dataset": str(dataset), "hidden_size": 8, "iterations": iterations, "val_fraction": 0.0,
              "checkpoint_dir": str(directory)}
    Trainer(TrainConfig(**{**config, **fields})).run()
    return directory


def snapshot(root: Path, skip=()) -> dict:
    """{relative path: what it is} for everything under ``root`` but the ``skip`` folders; files by SHA-256.
    Reads with os.open (so a test's patched ``open`` does not interfere) and never opens a FIFO."""
    root, seen = Path(root), {}
    skip = {str(Path(root, s)) for s in skip}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
        for name in dirs + names:
            path = os.path.join(folder, name)
            rel, st_ = os.path.relpath(path, root), os.lstat(path)
            if stat.S_ISLNK(st_.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st_.st_mode):
                seen[rel] = ("dir",)
            elif stat.S_ISREG(st_.st_mode):
                try:
                    fd = REAL_OS_OPEN(path, os.O_RDONLY)
                except PermissionError:
                    seen[rel] = ("unreadable", st_.st_size, st_.st_mtime_ns)
                    continue
                with os.fdopen(fd, "rb") as f:
                    seen[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
            else:
                seen[rel] = ("special", stat.S_IFMT(st_.st_mode))
    return seen


def assert_unchanged_outside(before: dict, after: dict, may_change=()) -> None:
    """Nothing was created, changed or deleted, except under the ``may_change`` folders."""
    def outside(snap):
        return {k: v for k, v in snap.items()
                if not any(k == m or k.startswith(m + os.sep) for m in may_change)}
    changed = sorted(set(outside(before).items()) ^ set(outside(after).items()))
    assert not changed, f"touched outside {list(may_change)}: {changed}"


def read_arrays(directory: Path) -> dict:
    meta = json.loads((directory / "latest.json").read_text())
    with np.load(directory / meta["arrays"]) as archive:
        return {name: archive[name] for name in archive.files}


def write_arrays_bytes(directory: Path, data: bytes) -> None:
    """Replace the arrays file's bytes and record their SHA-256, so the loader's deeper checks are reached."""
    json_path = directory / "latest.json"
    meta = json.loads(json_path.read_text())
    (directory / meta["arrays"]).write_bytes(data)
    meta["arrays_sha256"] = hashlib.sha256(data).hexdigest()
    json_path.write_text(json.dumps(meta))


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)             # allow_pickle is np.save's default: object arrays get pickled
    return buffer.getvalue()


def npy_claiming(shape: tuple, payload: bytes = b"\0" * 16) -> bytes:
    """An .npy member whose header claims ``shape`` (float32) but which holds only ``payload``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def replace_member_raw(directory: Path, member: str, content: bytes) -> None:
    source = io.BytesIO((directory / ARRAYS).read_bytes())
    target = io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, content if info.filename == member else old.read(info))
    write_arrays_bytes(directory, target.getvalue())


def deny_open(monkeypatch, *paths) -> None:
    """``open`` of these paths (or of anything inside them) raises PermissionError, as it would for a user
    without permission: the tests run as root, for whom chmod changes nothing (see the chmod variant below)."""
    targets = [os.path.abspath(p) for p in paths]
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(file))
            if any(full == t or full.startswith(t + os.sep) for t in targets):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    real_os_open = os.open

    def guarded_os_open(file, flags, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(file))
            if any(full == t or full.startswith(t + os.sep) for t in targets):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
        return real_os_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)   # open() in rnnlab's modules
    monkeypatch.setattr(io, "open", guarded_open)         # Path.open / read_bytes / write_text
    monkeypatch.setattr(os, "open", guarded_os_open)      # the output guard's descriptors (files.py)


@pytest.fixture
def ws(tmp_path):
    """The user's folder: a 10-name dataset, a file worth keeping, and a checkpoint ``run/`` of 5 steps."""
    (tmp_path / "names.txt").write_text(NAMES_TEXT)
    (tmp_path / "victim.txt").write_text("precious\n")
    train_checkpoint(tmp_path / "names.txt", tmp_path / "run")
    return tmp_path


# ---- 1. the table of hostile inputs -----------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    argv: list                               # after `rnnlab`; paths relative to the working folder
    status: int                              # the exit status
    message: str                             # a fragment of the one line on stderr (exit 0: of the output)
    setup: Callable | None = None            # (ws, monkeypatch) -> anything that must stay alive (a lock)
    check: Callable | None = None            # (ws, result) -> None: what else must hold afterwards
    may_change: tuple = ()                   # folders of ws the command may write; nothing else may change
    cwd: str = "."                           # the working folder, relative to ws
    process: bool = False                    # run as a real process (FIFOs, bytes argv, NumPy warnings)
    stdout_empty: bool = True                # an error must come before anything is printed
    env: dict = dataclasses.field(default_factory=dict)   # environment variables set for the command


def write(name: str, content: str | bytes):
    def setup(ws, mp):
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return setup


def steps(*setups):
    def setup(ws, mp):
        return [s(ws, mp) for s in setups]
    return setup


def edit_json(change: Callable[[dict, Path], object], folder: str = "run"):
    """Edit ``<folder>/latest.json`` with ``change(meta, ws)`` (which may also return a whole new document)."""
    def setup(ws, mp):
        path = ws / folder / "latest.json"
        meta = json.loads(path.read_text())
        new = change(meta, ws)
        path.write_text(json.dumps(meta if new is None else new))
    return setup


def delete_key(*keys):
    def change(meta, ws):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit_json(change)


def set_key(*keys, value):
    def change(meta, ws):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(ws) if callable(value) else value
    return edit_json(change)


def change_arrays(change: Callable[[dict], dict]):
    def setup(ws, mp):
        write_arrays_bytes(ws / "run", npz_bytes(change(read_arrays(ws / "run"))))
    return setup


def with_param(name: str, value: Callable[[np.ndarray], np.ndarray]):
    return change_arrays(lambda arrays: {**arrays, f"param/{name}": value(arrays[f"param/{name}"])})


def poison(bad: float):
    def value(a):
        a = a.copy()
        a.flat[0] = bad
        return a
    return value


def mkfifo(name: str):
    def setup(ws, mp):
        path = ws / name
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    return setup


def mkdir(name: str):
    return lambda ws, mp: (ws / name).mkdir(parents=True, exist_ok=True)


def copy_run(name: str):
    return lambda ws, mp: shutil.copytree(ws / "run", ws / name)


def hold_lock(ws, mp):
    """Another writer: the folder's lock taken through another open file (flock conflicts across files)."""
    lock = DirectoryLock(ws / "run")
    lock.acquire()
    return lock


def deny(*names):
    return lambda ws, mp: deny_open(mp, *(ws / name for name in names))


def arrays_symlink_outside(ws, mp):
    """The arrays file is a link to a copy outside the folder (which a save or a cleanup could delete)."""
    shutil.move(ws / "run" / ARRAYS, ws / "outside.npz")
    (ws / "run" / ARRAYS).symlink_to(ws / "outside.npz")


def json_symlink_outside(ws, mp):
    shutil.move(ws / "run" / "latest.json", ws / "outside.json")
    (ws / "run" / "latest.json").symlink_to(ws / "outside.json")


def stream_checkpoint(ws, mp):
    play = ws / "play.txt"
    play.write_text("".join(f"KING: line {i} of the play we make.\n\n" for i in range(20)))
    train_checkpoint(play, ws / "stream", iterations=3, seq_length=8)


def non_utf8(name: bytes) -> str:
    return os.fsdecode(name)


def non_utf8_files(ws, mp):
    """Files and a checkpoint whose names are not UTF-8, so a refusal cannot be a 'not found'."""
    (ws / non_utf8(b"n\xff.txt")).write_text(NAMES_TEXT)
    (ws / non_utf8(b"m\xff.jsonl")).write_text('{"step": 1, "train_loss": 2.0}\n')
    shutil.copytree(ws / "run", ws / non_utf8(b"r\xff"))


def step_of(folder: str, expected: int):
    def check(ws, result):
        assert load_checkpoint(ws / folder).meta["step"] == expected
    return check


def unchanged_text(name: str, text: str):
    def check(ws, result):
        assert (ws / name).read_text() == text
    return check


def no_word(word: str):
    def check(ws, result):
        assert word not in result.err, result.err
    return check


def flip_a_byte_keeping_the_checksum(ws, mp):
    data = bytearray((ws / "run" / ARRAYS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ws / "run" / ARRAYS).write_bytes(bytes(data))


def divergence_kept_a_finite_checkpoint(ws, result):
    assert "Warning" not in result.err, result.err               # no NumPy RuntimeWarning text reaches the user
    if (ws / "div" / "latest.json").exists():                    # the last good checkpoint: loads, so finite
        assert all(np.isfinite(v).all() for v in load_checkpoint(ws / "div").params.values())


def names_a_size(ws, result):
    assert re.search(r"needs about \d[\d.,e+]* ?(bytes|[KMGT]iB)", result.err), result.err


METRICS = '{"step": 1, "train_loss": 2.0, "smooth_loss": 2.0}\n'
RESUME = ["train", "--resume", "run", "--iterations", str(STEPS + 2), "--quiet"]
NEEDS_MATPLOTLIB = pytest.mark.skipif(not __import__("importlib").util.find_spec("matplotlib"),
                                      reason="rnnlab plot needs matplotlib")
FLOAT_FLAGS = ["--learning_rate", "--min_learning_rate", "--dropout", "--temperature", "--val_fraction",
               "--clip_value", "--clip_norm"]

CASES = {
    # 1. an arrays name in a checkpoint JSON never reaches outside the folder
    "arrays ../victim.txt: fresh run refused": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "ck"], 2, "already holds a run's checkpoint",
        write("ck/latest.json", '{"arrays": "../victim.txt"}')),
    "arrays ../victim.txt: --overwrite keeps the victim": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "ck", "--overwrite"], 0, "checkpoint ck",
        write("ck/latest.json", '{"arrays": "../victim.txt"}'), unchanged_text("victim.txt", "precious\n"),
        may_change=("ck",), stdout_empty=False),
    "arrays ../victim.txt: resume refused": Case(
        ["train", "--resume", "ck"], 2, "not an rnnlab checkpoint",
        write("ck/latest.json", '{"arrays": "../victim.txt"}')),
    "arrays ../victim.txt in a full checkpoint: resume": Case(
        RESUME, 2, "field arrays has an unexpected form", set_key("arrays", value="../victim.txt")),
    "arrays ../victim.txt in a full checkpoint: sample": Case(
        ["sample", "--checkpoint", "run"], 2, "field arrays has an unexpected form",
        set_key("arrays", value="../victim.txt")),
    "arrays absolute path: resume": Case(
        RESUME, 2, "field arrays", set_key("arrays", value=lambda ws: str(ws / "victim.txt"))),
    "arrays file a symlink outside: resume": Case(RESUME, 2, "symbolic link", arrays_symlink_outside),
    "arrays file a symlink outside: sample": Case(["sample", "--checkpoint", "run"], 2, "symbolic link",
                                                  arrays_symlink_outside),
    "arrays file a symlink outside: --overwrite keeps its target": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "run", "--overwrite"], 0, "checkpoint run",
        arrays_symlink_outside, may_change=("run",), stdout_empty=False),
    "checkpoint JSON a symlink outside: sample": Case(["sample", "--checkpoint", "run"], 2, "symbolic link",
                                                      json_symlink_outside),
    # 2. resume writes where it is told
    "resume a backup copy: the original is untouched": Case(
        ["train", "--resume", "backup", "--iterations", str(STEPS + 2), "--quiet"], 0, "saving to backup",
        copy_run("backup"), step_of("backup", STEPS + 2), may_change=("backup",), stdout_empty=False),
    "resume ../run from another folder: nothing created there": Case(
        ["train", "--resume", "../run", "--iterations", str(STEPS + 2), "--quiet"], 0, "saving to ../run",
        mkdir("other"), step_of("run", STEPS + 2), may_change=("run",), cwd="other", stdout_empty=False),
    "resume with --checkpoint_dir: continues there": Case(
        [*RESUME, "--checkpoint_dir", "fork"], 0, "saving to fork", None, step_of("fork", STEPS + 2),
        may_change=("fork",), stdout_empty=False),
    "resume into another run's folder": Case(
        [*RESUME, "--checkpoint_dir", "other_run"], 2, "already holds a run's checkpoint", copy_run("other_run")),
    # 3. abbreviations are refused; the model must match
    "abbreviated --iter on resume": Case(["train", "--resume", "run", "--iter", "40"], 2,
                                         "unrecognized arguments: --iter"),
    "abbreviated --hidden on train": Case(["train", "--dataset", "names.txt", "--hidden", "8"], 2,
                                          "unrecognized arguments: --hidden"),
    "abbreviated --num on sample": Case(["sample", "--checkpoint", "run", "--num", "3"], 2,
                                        "unrecognized arguments: --num"),
    "hidden size changed on resume": Case([*RESUME, "--hidden_size", "16"], 2, "--hidden_size 16 differs"),
    "JSON claims 16 units, arrays hold 8": Case(
        RESUME, 2, "has shape", steps(set_key("model", "hidden_size", value=16),
                                      set_key("train", "hidden_size", value=16))),
    # 6. the data must be the checkpoint's
    "resume on other text, same characters": Case(
        [*RESUME, "--dataset", "reversed.txt"], 2, "is not the text checkpoint",
        write("reversed.txt", "".join(n + "\n" for n in reversed(NAMES)))),
    "resume on fewer lines, same characters": Case(
        [*RESUME, "--dataset", "pairs.txt"], 2, "is not the text checkpoint",
        write("pairs.txt", "".join(a + b + "\n" for a, b in zip(NAMES[::2], NAMES[1::2], strict=True)))),
    "resume on fewer lines with --new_data": Case(
        [*RESUME, "--dataset", "pairs.txt", "--new_data"], 0, "continuing on new data",
        write("pairs.txt", "".join(a + b + "\n" for a, b in zip(NAMES[::2], NAMES[1::2], strict=True))),
        step_of("run", STEPS + 2), may_change=("run",), stdout_empty=False),
    "the recorded dataset edited since": Case(
        RESUME, 2, "is not the text checkpoint", write("names.txt", "".join(n + "\n" for n in sorted(NAMES)[::-1]))),
    "--new_data without --resume": Case(["train", "--dataset", "names.txt", "--new_data", *TINY], 2,
                                        "--new_data only applies with --resume"),
    # 7. non-finite weights are refused on load
    "NaN weight: resume": Case(RESUME, 2, "inf or NaN", with_param("Wy", poison(np.nan))),
    "inf weight: sample": Case(["sample", "--checkpoint", "run"], 2, "inf or NaN", with_param("Wy", poison(np.inf))),
    "NaN weight: visualize": Case(["visualize", "--checkpoint", "run", "--text", "anna", "--out", "v.html"], 2,
                                  "inf or NaN", with_param("by", poison(np.nan))),
    # 8. one writer per folder
    "second writer: resume": Case(RESUME, 2, "in use by another rnnlab run", hold_lock),
    "second writer: --overwrite deletes nothing": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "run", "--overwrite"], 2,
        "in use by another rnnlab run", hold_lock),
    "fresh run into another run's folder": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "run"], 2, "already holds a run's checkpoint"),
    # 9. absurd numbers
    "train --seed -1": Case(["train", "--dataset", "names.txt", *TINY, "--seed", "-1"], 2, "--seed must be"),
    "sample --seed -1": Case(["sample", "--checkpoint", "run", "--seed", "-1"], 2, "--seed must be"),
    "--hidden_size 10**20": Case(["train", "--dataset", "names.txt", "--hidden_size", str(10 ** 20)], 2,
                                 f"--hidden_size must be at most {2 ** 63 - 1}"),
    "--hidden_size 10**8": Case(  # refused up front, before any allocation, with the memory it would need
        ["train", "--dataset", "names.txt", "--hidden_size", str(10 ** 8)], 2, "needs about", check=names_a_size),
    # 9. unreadable files (simulated: root ignores chmod; see test_unreadable_file_by_chmod)
    "unreadable dataset": Case(["train", "--dataset", "names.txt", *TINY], 2, "Permission denied", deny("names.txt")),
    "unreadable --text file": Case(["visualize", "--checkpoint", "run", "--text", "names.txt", "--out", "v.html"], 2,
                                   "Permission denied", deny("names.txt")),
    "unreadable checkpoint arrays: sample": Case(["sample", "--checkpoint", "run"], 2, "Permission denied",
                                                 deny(f"run/{ARRAYS}")),
    "unreadable checkpoint arrays: resume": Case(RESUME, 2, "Permission denied", deny(f"run/{ARRAYS}")),
    "unreadable checkpoint JSON": Case(["sample", "--checkpoint", "run"], 2, "Permission denied",
                                       deny("run/latest.json")),
    "unreadable metrics file: plot": pytest.param(
        Case(["plot", "m.jsonl", "--out", "p.png"], 2, "Permission denied",
             steps(write("m.jsonl", METRICS), deny("m.jsonl"))), marks=NEEDS_MATPLOTLIB),
    "unwritable --metrics_file": Case(["train", "--dataset", "names.txt", *TINY, "--metrics_file", "m.jsonl"], 2,
                                      "cannot be written", steps(write("m.jsonl", METRICS), deny("m.jsonl"))),
    # 5. --checkpoint_dir is proven writable before the first step
    "read-only --checkpoint_dir": Case(["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "ro"], 2,
                                       "cannot be written", steps(mkdir("ro"), deny("ro"))),
    "--checkpoint_dir is a file": Case(["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "victim.txt"],
                                       2, "a file of that name is in the way"),
    "--checkpoint_dir is the dataset": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "names.txt"], 2, "in the way"),
    "--checkpoint_dir under a file": Case(
        ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "victim.txt/sub"], 2, "is in the way"),
    "--checkpoint_dir is a FIFO": Case(["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "fifo"], 2,
                                       "in the way", mkfifo("fifo"), process=True),
    # 9. non-UTF-8 names (bytes in argv need a real process)
    "non-UTF-8 --dataset": Case(["train", b"--dataset", b"n\xff.txt", *TINY], 2, "not valid UTF-8",
                                non_utf8_files, process=True),
    "non-UTF-8 --checkpoint_dir": Case(["train", "--dataset", "names.txt", *TINY, b"--checkpoint_dir", b"c\xff"], 2,
                                       "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 --resume": Case(["train", b"--resume", b"r\xff"], 2, "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 --metrics_file": Case(["train", "--dataset", "names.txt", *TINY, b"--metrics_file", b"m\xff.jsonl"],
                                     2, "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 sample --checkpoint": Case(["sample", b"--checkpoint", b"r\xff"], 2, "not valid UTF-8",
                                          non_utf8_files, process=True),
    "non-UTF-8 visualize --text file": Case(["visualize", "--checkpoint", "run", b"--text", b"n\xff.txt",
                                             "--out", "v.html"], 2, "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 visualize --out": Case(["visualize", "--checkpoint", "run", "--text", "anna", b"--out", b"v\xff.html"],
                                      2, "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 plot metrics": Case(["plot", b"m\xff.jsonl"], 2, "not valid UTF-8", non_utf8_files, process=True),
    "non-UTF-8 plot --title": pytest.param(
        Case(["plot", "m.jsonl", "--out", "p.png", b"--title", b"loss \xff"], 2, "not valid UTF-8",
             write("m.jsonl", METRICS), may_change=("p.png",), process=True),
        marks=[NEEDS_MATPLOTLIB]),
    # 9. checkpoint JSON of the wrong shape
    **{f"JSON without {key}": Case(["sample", "--checkpoint", "run"], 2, f"field {key} is missing", delete_key(key))
       for key in ("model", "tokenizer", "corpus", "data_position", "train", "rng", "arrays_sha256")},
    "JSON without model.cell": Case(["sample", "--checkpoint", "run"], 2, "field model.cell is missing",
                                    delete_key("model", "cell")),
    "JSON hidden_size a string": Case(["sample", "--checkpoint", "run"], 2, "model.hidden_size must be an integer",
                                      set_key("model", "hidden_size", value="8")),
    "JSON hidden_size a float": Case(["sample", "--checkpoint", "run"], 2, "model.hidden_size must be an integer",
                                     set_key("model", "hidden_size", value=8.0)),
    "JSON tokenizer a list": Case(["sample", "--checkpoint", "run"], 2, "field tokenizer must be an object",
                                  set_key("tokenizer", value=["a", "b"])),
    "JSON chars a string": Case(["sample", "--checkpoint", "run"], 2, "field tokenizer.chars must be a list",
                                set_key("tokenizer", "chars", value="abc")),
    "JSON data_position negative": Case(RESUME, 2, "data_position.position must be at least 0",
                                        set_key("data_position", "position", value=-1)),
    "JSON step a boolean": Case(RESUME, 2, "field step must be an integer", set_key("step", value=True)),
    "JSON corpus null": Case(RESUME, 2, "field corpus must be an object", set_key("corpus", value=None)),
    "JSON unknown top-level key": Case(["sample", "--checkpoint", "run"], 2, "field extra is not a known field",
                                       set_key("extra", value=1)),
    "JSON unknown nested key": Case(["sample", "--checkpoint", "run"], 2, "field model.extra is not a known field",
                                    set_key("model", "extra", value={"x": 1})),
    "JSON a list": Case(["sample", "--checkpoint", "run"], 2, "not an rnnlab checkpoint",
                        edit_json(lambda meta, ws: [meta])),
    "JSON another format version": Case(["sample", "--checkpoint", "run"], 2, "format version 99",
                                        set_key("format_version", value=99)),
    "JSON with NaN": Case(["sample", "--checkpoint", "run"], 2, "not readable JSON",
                          set_key("loss_average", value=math.nan)),
    "JSON truncated": Case(["sample", "--checkpoint", "run"], 2, "not readable JSON",
                           write("run/latest.json", '{"ste')),
    "JSON nested 100000 deep": Case(["sample", "--checkpoint", "run"], 2, "not readable JSON",
                                    write("run/latest.json", "[" * 100_000 + "]" * 100_000)),
    "JSON not UTF-8": Case(["sample", "--checkpoint", "run"], 2, "not readable JSON",
                           write("run/latest.json", b'{"step": "\xff"}')),
    # 9. arrays of the wrong shape or type
    ".npy header claims a huge shape": Case(["sample", "--checkpoint", "run"], 2, "has shape (1000000000, 1000000000)",
                                            lambda ws, mp: replace_member_raw(ws / "run", "param/Wy.npy",
                                                                              npy_claiming((10 ** 9, 10 ** 9)))),
    ".npy state header claims a huge shape": Case(
        ["sample", "--checkpoint", "run"], 2, "a carried state holds at most the run's 1 rows",
        lambda ws, mp: replace_member_raw(ws / "run", "state/0/0.npy", npy_claiming((10 ** 9, 8)))),
    "integer weights": Case(["sample", "--checkpoint", "run"], 2, "has dtype int64",
                            with_param("Wy", lambda a: a.astype(np.int64))),
    "string weights": Case(["sample", "--checkpoint", "run"], 2, "has dtype <U",
                           with_param("Wy", lambda a: a.astype(str))),
    "pickled weights": Case(["sample", "--checkpoint", "run"], 2, "pickled Python objects",
                            with_param("Wy", lambda a: a.astype(object))),
    "an array missing": Case(["sample", "--checkpoint", "run"], 2, "lacks 1 array",
                             change_arrays(lambda arrays: {k: v for k, v in arrays.items() if k != "param/by"})),
    "an unexpected array": Case(["sample", "--checkpoint", "run"], 2, "unexpected array",
                                change_arrays(lambda arrays: {**arrays, "param/evil": np.zeros(2, np.float32)})),
    "arrays changed, checksum not": Case(["sample", "--checkpoint", "run"], 2, "checksum mismatch",
                                         flip_a_byte_keeping_the_checksum),
    "arrays truncated, checksum recomputed": Case(["sample", "--checkpoint", "run"], 2, "truncated or corrupt",
                                                  lambda ws, mp: write_arrays_bytes(
                                                      ws / "run", (ws / "run" / ARRAYS).read_bytes()[:500])),
    # 9. plot
    "plot: metrics not UTF-8": pytest.param(Case(["plot", "m.jsonl", "--out", "p.png"], 2, "is not UTF-8 text",
                                                 write("m.jsonl", METRICS.encode() + b"\xff\xfe\n")),
                                            marks=NEEDS_MATPLOTLIB),
    "plot: metrics not objects": pytest.param(Case(["plot", "m.jsonl", "--out", "p.png"], 2, "is not a JSON object",
                                                   write("m.jsonl", "[1, 2]\n")), marks=NEEDS_MATPLOTLIB),
    "plot: metrics not numbers": pytest.param(Case(["plot", "m.jsonl", "--out", "p.png"], 2, "not a finite number",
                                                   write("m.jsonl", '{"step": 1, "train_loss": "low"}\n')),
                                              marks=NEEDS_MATPLOTLIB),
    "plot: metrics not JSON": pytest.param(Case(["plot", "m.jsonl", "--out", "p.png"], 2, "is not JSON",
                                                write("m.jsonl", "step 1 loss 2\n")), marks=NEEDS_MATPLOTLIB),
    "plot --out loss.txt": pytest.param(Case(["plot", "m.jsonl", "--out", "loss.txt"], 2, "give a file name with one",
                                             write("m.jsonl", METRICS)), marks=NEEDS_MATPLOTLIB),
    # 10. special files and empty names are named for what they are; a FIFO never hangs
    "--dataset a FIFO": Case(["train", "--dataset", "fifo", *TINY], 2, "is a FIFO", mkfifo("fifo"), process=True),
    "--dataset /dev/null": Case(["train", "--dataset", "/dev/null", *TINY], 2, "is a character device"),
    "--dataset empty": Case(["train", "--dataset", "", *TINY], 2, "is empty", check=no_word("directory")),
    "sample --checkpoint a FIFO": Case(["sample", "--checkpoint", "fifo"], 2, "is a FIFO", mkfifo("fifo"),
                                       process=True),
    "--resume a FIFO": Case(["train", "--resume", "fifo"], 2, "is a FIFO", mkfifo("fifo"), process=True),
    "--metrics_file a FIFO": Case(["train", "--dataset", "names.txt", *TINY, "--metrics_file", "fifo"], 2,
                                  "is a FIFO", mkfifo("fifo"), process=True),
    "checkpoint JSON a FIFO": Case(["sample", "--checkpoint", "run"], 2, "is a FIFO", mkfifo("run/latest.json"),
                                   process=True),
    "checkpoint arrays a FIFO": Case(RESUME, 2, "is a FIFO", mkfifo(f"run/{ARRAYS}"), process=True),
    "visualize --text a FIFO": Case(["visualize", "--checkpoint", "run", "--text", "fifo", "--out", "v.html"], 2,
                                    "is a FIFO", mkfifo("fifo"), process=True),
    "plot a FIFO": Case(["plot", "fifo"], 2, "is a FIFO", mkfifo("fifo"), process=True),
    "--val_fraction 0.99 on 10 lines": Case(["train", "--dataset", "names.txt", *TINY, "--val_fraction", "0.99"], 2,
                                            "use a smaller --val_fraction", check=no_word("larger")),
    **{f"{flag} {value}": Case(["train", "--dataset", "names.txt", *TINY, f"{flag}={value}"], 2, f"value: '{value}'")
       for flag, value in [("--learning_rate", "inf"), ("--learning_rate", "nan"), ("--learning_rate", "-inf"),
                           ("--learning_rate", "1e999"), *((f, "nan") for f in FLOAT_FLAGS[1:])]},
    "sample --temperature inf": Case(["sample", "--checkpoint", "run", "--temperature", "inf"], 2,
                                     "invalid finite number"),
    "diverging run (adam, lr 1e30)": Case(  # a real process: pytest would swallow NumPy's RuntimeWarnings
        ["train", "--dataset", "names.txt", "--hidden_size", "8", "--iterations", "50", "--learning_rate", "1e30",
         "--clip_value", "none", "--val_fraction", "0", "--quiet", "--checkpoint_dir", "div", "--save_every", "1"],
        2, "diverged", check=divergence_kept_a_finite_checkpoint, may_change=("div",), process=True,
        stdout_empty=False),
    "diverging run (sgd, lr 1e300)": Case(
        ["train", "--dataset", "names.txt", "--hidden_size", "8", "--iterations", "50", "--learning_rate", "1e300",
         "--optimizer", "sgd", "--clip_value", "none", "--val_fraction", "0", "--quiet"],
        2, "not finite", check=divergence_kept_a_finite_checkpoint, process=True, stdout_empty=False),
    "sample --novelty on a stream checkpoint": Case(
        ["sample", "--checkpoint", "stream", "--novelty"], 2, "--novelty needs a one-name-per-line corpus",
        stream_checkpoint),
    "sample --novelty after the text changed": Case(
        ["sample", "--checkpoint", "run", "--novelty"], 2, "has changed since training", write("names.txt", "anna\n")),
    "sample --novelty from another folder": Case(
        ["sample", "--checkpoint", "../run", "--novelty", "--num_samples", "3"], 0, "novelty: ", mkdir("other"),
        cwd="other", stdout_empty=False),
    "--clip_value 0": Case(["train", "--dataset", "names.txt", *TINY, "--clip_value", "0"], 2, "use 'none'"),
    "--clip_value 0.0": Case(["train", "--dataset", "names.txt", *TINY, "--clip_value", "0.0"], 2, "use 'none'"),
    "--clip_norm 0": Case(["train", "--dataset", "names.txt", *TINY, "--clip_norm", "0"], 2, "use 'none'"),
    "--dropout with one layer": Case(["train", "--dataset", "names.txt", *TINY, "--dropout", "0.3"], 0,
                                     "does nothing with one layer", stdout_empty=False),
    "--metrics_file is the dataset": Case(["train", "--dataset", "names.txt", *TINY, "--metrics_file", "names.txt"],
                                          2, "is the dataset, which this run reads",
                                          check=unchanged_text("names.txt", NAMES_TEXT)),
    "--metrics_file is the dataset by another path": Case(
        ["train", "--dataset", "names.txt", *TINY, "--metrics_file", "link.txt"], 2,
        "is the dataset, which this run reads",
        lambda ws, mp: (ws / "link.txt").symlink_to(ws / "names.txt")),
    "--metrics_file is the checkpoint": Case([*RESUME, "--metrics_file", "run/latest.json"], 2,
                                             "is the checkpoint, which this run reads"),
}


def table(cases: dict) -> list:
    """pytest params named by the table's keys (a row may already be a pytest.param carrying marks)."""
    return [pytest.param(*row.values, id=name, marks=[*row.marks, *slow_if_process(row.values[0])])
            if not isinstance(row, Case) else pytest.param(row, id=name, marks=slow_if_process(row))
            for name, row in cases.items()]


def slow_if_process(case: Case) -> list:
    """A row that runs rnnlab as a real process belongs to the slow tier (a second each)."""
    return [pytest.mark.slow] if case.process else []


def release(kept) -> None:
    for item in kept if isinstance(kept, list) else [kept]:
        if isinstance(item, DirectoryLock):
            item.release()


# ---- issue 21: outputs, caches, budgets, the distributed environment ------------------------------------

def books(ws, mp):
    """A dataset folder (and a glob over it) of two name files."""
    (ws / "books").mkdir()
    (ws / "books" / "a.txt").write_text(NAMES_TEXT)
    (ws / "books" / "b.txt").write_text(NAMES_TEXT[::-1].strip() + "\n")


def cache_folder(ws, mp):
    (ws / "cache").mkdir()
    (ws / "cache" / "CACHEDIR.TAG").write_text(files.CACHE_TAG_TEXT)


def cache_every_text(ws, mp):
    mp.setattr(corpus, "CACHE_MIN_BYTES", 1)                  # even 10 names go through the cache


def best_behind_latest(ws, mp):
    """best.json at step 3 beside latest.json at step 5 (as a run whose validation stopped improving)."""
    meta = json.loads((ws / "run" / "latest.json").read_text())
    (ws / "run" / "best.json").write_text(json.dumps({**meta, "step": 3, "optimizer_step": 3}))


def link(name: str, target):
    def setup(ws, mp):
        (ws / name).symlink_to(target(ws) if callable(target) else target)
    return setup


def hard_link(name: str, target: str):
    def setup(ws, mp):
        (ws / name).unlink(missing_ok=True)
        os.link(ws / target, ws / name)
    return setup


def deflated_state(rows: int):
    """The carried state replaced by ``rows`` rows of zeros, deflated (a few KB claiming megabytes)."""
    def setup(ws, mp):
        arrays = {**read_arrays(ws / "run"), "state/0/0": np.zeros((rows, 8), np.float32)}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_arrays_bytes(ws / "run", buffer.getvalue())
    return setup


def little_memory(ws, mp):
    mp.setattr(memory, "available_memory", lambda: 2_000)     # 1.6 KB may be used: less than a checkpoint


def still_a_device(path: str):
    def check(ws, result):
        assert stat.S_ISCHR(os.lstat(path).st_mode)
    return check


def still_a_link(name: str):
    def check(ws, result):
        assert (ws / name).is_symlink()
    return check


def package_untouched(ws, result):
    assert (files.PACKAGE / "corpora" / "dinos.txt").read_bytes() == DINOS_BEFORE


DINOS_BEFORE = (files.PACKAGE / "corpora" / "dinos.txt").read_bytes()
# finite float32 weights of 3e38: every unit saturates at h = 1, so h @ Wy = 8 x 3e38 = inf
HUGE_WEIGHTS = change_arrays(lambda arrays: {k: np.full_like(v, 3e38) if k.startswith("param/") else v
                                             for k, v in arrays.items()})
VIS = ["visualize", "--checkpoint", "run", "--text", "anna", "--out"]
FRESH = ["train", "--dataset", "names.txt", *TINY]
BENCH = ["bench", "--quick", "--engines", "numpy", "--cells", "rnn", "--shapes", "8/1/4", "--rounds", "1"]
PEERS = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"}

OUTPUT_CASES = {
    # an output is never what the run reads
    "visualize --out the checkpoint's arrays": Case([*VIS, f"run/{ARRAYS}"], 2, "which this run reads"),
    "visualize --out the checkpoint's JSON": Case([*VIS, "run/latest.json"], 2, "which this run reads"),
    "visualize --out best.json beside it": Case([*VIS, "run/best.json"], 2, "is a file of the checkpoint"),
    "visualize --out the training corpus": Case([*VIS, "names.txt"], 2, "is the training corpus"),
    "plot --out its own metrics file": pytest.param(
        Case(["plot", "m.png", "--out", "m.png"], 2, "is the metrics file, which this run reads",
             write("m.png", METRICS)), marks=NEEDS_MATPLOTLIB),
    "bench --json a checkpoint's latest.json": Case([*BENCH, "--json", "run/latest.json"], 2,
                                                    "is a file of the checkpoint"),
    "--metrics_file another run's latest.json": Case([*FRESH, "--checkpoint_dir", "new", "--metrics_file",
                                                      "run/latest.json"], 2, "is a file of the checkpoint"),
    "--metrics_file a resumed run's arrays": Case([*RESUME, "--metrics_file", f"run/{ARRAYS}"], 2,
                                                  "which this run reads"),
    "--metrics_file a best-*.npz of the resumed run": Case(
        [*RESUME, "--metrics_file", "run/best-000003.npz"], 2, "is a file of the checkpoint"),
    "--metrics_file inside the --dataset folder": Case(
        ["train", "--dataset", "books", *TINY, "--metrics_file", "books/m.jsonl"], 2,
        "is inside the dataset folder books, which this run reads", books),
    "--metrics_file a new match of the --dataset glob": Case(
        ["train", "--dataset", "books/*.txt", *TINY, "--metrics_file", "books/new.txt"], 2,
        "is matched by the dataset pattern", books),
    "--metrics_file the package's dinos.txt": Case(
        ["train", "--dataset", "dinos", *TINY, "--metrics_file", str(files.PACKAGE / "corpora" / "dinos.txt")], 2,
        "rnnlab's installed package", check=package_untouched),
    "--checkpoint_dir inside the --dataset folder": Case(
        ["train", "--dataset", "books", *TINY, "--checkpoint_dir", "books/run"], 2,
        "its files would become part of the input", books),
    "--cache_dir is the --dataset folder": Case(
        ["train", "--dataset", "books", *TINY, "--cache_dir", "books"], 2, "is the dataset folder books",
        steps(books, cache_every_text)),
    "export --overwrite into its own --checkpoint folder": Case(
        ["export", "--checkpoint", "run", "--out", "run", "--overwrite"], 2, "which this run reads"),
    "export --out another run's folder": Case(["export", "--checkpoint", "run", "--out", "other"], 2,
                                              "already holds a run's checkpoint", copy_run("other")),
    "resume from best.json over a later latest.json": Case(
        ["train", "--resume", "run/best.json", "--iterations", "9", "--quiet"], 2, "a later point of the run",
        best_behind_latest),
    "resume from best.json over it with --overwrite": Case(
        ["train", "--resume", "run/best.json", "--iterations", "9", "--quiet", "--overwrite"], 0, "checkpoint",
        best_behind_latest, step_of("run", 9), may_change=("run",), stdout_empty=False),
    # an existing file that rnnlab did not write
    "visualize --out a file rnnlab did not write": Case([*VIS, "victim.txt"], 2, "is not a page written by rnnlab"),
    "visualize --out it with --overwrite": Case([*VIS, "victim.txt", "--overwrite"], 0, "wrote",
                                                may_change=("victim.txt",), stdout_empty=False),
    "plot --out an image rnnlab did not write": pytest.param(
        Case(["plot", "m.jsonl", "--out", "photo.png"], 2, "is not an image drawn by rnnlab",
             steps(write("m.jsonl", METRICS), write("photo.png", b"\x89PNG my photo"))), marks=NEEDS_MATPLOTLIB),
    "bench --json a file rnnlab did not write": Case([*BENCH, "--json", "victim.txt"], 2,
                                                     "is not a JSON file written by rnnlab"),
    "--metrics_file a binary file": Case([*FRESH, "--metrics_file", "blob.bin"], 2,
                                         "is not an rnnlab metrics file", write("blob.bin", b"\0\1\2 binary")),
    # special files and links
    "visualize --out a FIFO nobody reads": Case([*VIS, "fifo"], 2, "is a FIFO that nobody reads", mkfifo("fifo")),
    "visualize --out /dev/null": Case([*VIS, "/dev/null"], 0, "wrote /dev/null", check=still_a_device("/dev/null"),
                                      stdout_empty=False),
    "visualize --out a link to this process' stdout": Case(
        [*VIS, "out.html"], 0, 'content="rnnlab"', link("out.html", "/proc/self/fd/1"), still_a_link("out.html"),
        process=True, stdout_empty=False),
    "visualize --out a link to a file": Case([*VIS, "page.html"], 2, "is a symbolic link",
                                             link("page.html", lambda ws: ws / "victim.txt")),
    "visualize --out a hard link": Case([*VIS, "page.html"], 2, "has 2 hard links",
                                        hard_link("page.html", "victim.txt")),
    "--metrics_file a link to a file": Case([*FRESH, "--metrics_file", "m.jsonl"], 2, "is a symbolic link",
                                            link("m.jsonl", lambda ws: ws / "victim.txt")),
    "lock file hard-linked to a file outside": Case(RESUME, 2, "has 2 hard links, not a lock file of its own",
                                                    hard_link("run/.rnnlab.lock", "victim.txt")),
    "lock file a symbolic link": Case(
        RESUME, 2, "lock file", steps(lambda ws, mp: (ws / "run" / ".rnnlab.lock").unlink(missing_ok=True),
                                      link("run/.rnnlab.lock", lambda ws: ws / "victim.txt"))),
    # rnnlab's own folders
    "visualize --out inside the cache": Case([*VIS, "cache/page.html"], 2, "inside rnnlab's corpus cache",
                                             cache_folder),
    "--checkpoint_dir is the cache": Case([*FRESH, "--checkpoint_dir", "cache"], 2, "is rnnlab's corpus cache",
                                          cache_folder),
    "--cache_dir holds other files": Case([*FRESH, "--cache_dir", "stuff"], 2, "holds files that are not rnnlab's",
                                          steps(write("stuff/notes.txt", "mine"), cache_every_text)),
    "--cache_dir is a checkpoint folder": Case([*FRESH, "--cache_dir", "run"], 2, "holds a checkpoint",
                                               cache_every_text),
    # budgets
    "sample --novelty over 10**9 samples": Case(["sample", "--checkpoint", "run", "--novelty",
                                                 "--num_samples", str(10 ** 9)], 2, "needs about"),
    "sample --beam_size 10**8": Case(["sample", "--checkpoint", "run", "--beam_size", str(10 ** 8)], 2, "needs about"),
    "a deflated state of 10**6 rows": Case(["sample", "--checkpoint", "run"], 2, "a carried state holds at most",
                                           deflated_state(10 ** 6)),
    "arrays beyond the memory available": Case(["sample", "--checkpoint", "run"], 2, "needs about", little_memory),
    # values that overflow: refused where they would first become inf or NaN
    "weights of 3e38: sample": Case(["sample", "--checkpoint", "run"], 2, "overflow", HUGE_WEIGHTS),
    "weights of 3e38: visualize": Case([*VIS, "v.html"], 2, "overflow", HUGE_WEIGHTS),
    "weights of 3e38: beam search": Case(["sample", "--checkpoint", "run", "--beam_size", "3"], 2, "overflow",
                                         HUGE_WEIGHTS),
    "metrics of 1e308: plot": pytest.param(
        Case(["plot", "m.jsonl", "--out", "p.png"], 2, "outside [0, 1e+06]",
             write("m.jsonl", '{"step": 1, "train_loss": 1e308, "smooth_loss": 2.0}\n')), marks=NEEDS_MATPLOTLIB),
    "a negative loss: plot": pytest.param(
        Case(["plot", "m.jsonl", "--out", "p.png"], 2, "outside [0, 1e+06]",
             write("m.jsonl", '{"step": 1, "train_loss": -3.0}\n')), marks=NEEDS_MATPLOTLIB),
    # smaller: one line whatever the input
    "bench --cells ''": Case(["bench", "--cells", "", "--quick"], 2, "names no cell"),
    "bench --engines ','": Case(["bench", "--engines", ",", "--quick"], 2, "names no engine"),
    "a checkpoint name with a newline": Case(["sample", "--checkpoint", "bad\nname"], 2, "bad\\nname"),
    "a checkpoint name with an escape sequence": Case(["sample", "--checkpoint", "x\x1b[31mred"], 2,
                                                      "x\\x1b[31mred"),
    "--dist_timeout 0": Case([*FRESH, "--dist_timeout", "0"], 2, "--dist_timeout must be between"),
    # the distributed environment
    "WORLD_SIZE garbage": Case(FRESH, 2, "WORLD_SIZE='two' is not a whole number", env={"WORLD_SIZE": "two"}),
    "RANK >= WORLD_SIZE": Case(FRESH, 2, "RANK=2 must be between 0 and 1",
                               env={"WORLD_SIZE": "2", "RANK": "2", **PEERS}),
    "LOCAL_RANK negative": Case(FRESH, 2, "LOCAL_RANK=-1 must be between", env={"LOCAL_RANK": "-1"}),
    "MASTER_PORT garbage": Case(FRESH, 2, "MASTER_PORT='http'",
                                env={**PEERS, "WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "http"}),
    "WORLD_SIZE=2 without MASTER_ADDR": Case(FRESH, 2, "MASTER_ADDR is not set",
                                             env={"WORLD_SIZE": "2", "RANK": "1"}),
    "RANK garbage in a real process": Case(FRESH, 2, "RANK='0.5' is not a whole number",
                                           env={"WORLD_SIZE": "2", "RANK": "0.5", **PEERS}, process=True),
}


@pytest.mark.parametrize("case", table({**CASES, **OUTPUT_CASES}))
def test_hostile_input_ends_in_one_line_and_touches_nothing_else(case: Case, ws, monkeypatch):
    """Each hostile input ends with the expected exit status and one line naming the problem, and touches
    nothing outside the folders the row allows (a refused command writes nothing at all)."""
    kept = case.setup(ws, monkeypatch) if case.setup else None
    try:
        before = snapshot(ws)
        if case.process:
            result = run_process(case.argv, ws / case.cwd, env=case.env)
        else:
            monkeypatch.chdir(ws / case.cwd)
            for name, value in case.env.items():
                monkeypatch.setenv(name, value)
            result = run_in_process(case.argv)
    finally:
        release(kept)                                            # the other writer's lock
        monkeypatch.undo()                                       # open() is honest again for the checks
    assert_outcome(result, case.status, case.message, case.stdout_empty)
    assert_unchanged_outside(before, snapshot(ws), case.may_change)
    if case.check:
        case.check(ws, result)


def modes_are_enforced() -> bool:
    """False for root (or anyone with CAP_DAC_OVERRIDE), who reads a mode-000 file anyway: the case in CI."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder, "probe")
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


@pytest.mark.slow
@pytest.mark.skipif(not modes_are_enforced(), reason="root reads any file whatever its mode: see the deny_open rows")
@pytest.mark.parametrize("what", ["dataset", "text", "arrays", "metrics"])
def test_unreadable_file_by_chmod_is_one_line_and_exit_2(what, ws):
    """The same refusals as the 'unreadable ...' rows, with real file modes (only meaningful for a non-root user)."""
    (ws / "m.jsonl").write_text(METRICS)
    target, argv = {
        "dataset": ("names.txt", ["train", "--dataset", "names.txt", *TINY]),
        "text": ("names.txt", ["visualize", "--checkpoint", "run", "--text", "names.txt", "--out", "v.html"]),
        "arrays": (f"run/{ARRAYS}", ["sample", "--checkpoint", "run"]),
        "metrics": ("m.jsonl", ["plot", "m.jsonl", "--out", "p.png"]),
    }[what]
    (ws / target).chmod(0)
    try:
        result = run_process(argv, ws)
    finally:
        (ws / target).chmod(0o644)
    assert_outcome(result, 2, "Permission denied")


# ---- the library side of the resume policy and of saving ------------------------------------------------

def test_restore_refuses_a_checkpoint_of_another_model_size_before_any_matmul(ws):
    """An 8-unit checkpoint restored into a 16-unit Trainer is a RnnlabError naming the difference (it used to
    fail later, inside a NumPy matmul)."""
    checkpoint = load_checkpoint(ws / "run")
    trainer = Trainer(TrainConfig(dataset=str(ws / "names.txt"), hidden_size=16, iterations=10, val_fraction=0.0))
    with pytest.raises(RnnlabError, match="holds another model: hidden_size 8"):
        trainer.restore(checkpoint)
    params = dict(checkpoint.params, Wy=checkpoint.params["Wy"][:4])
    with pytest.raises(RnnlabError, match="parameter Wy has shape"):
        charmodel.check_params(checkpoint.model_config, params)


def test_resume_policy_lives_in_the_library_and_locks_the_model_shape(ws):
    saved = load_checkpoint(ws / "run").meta["train"]
    with pytest.raises(RnnlabError, match="--hidden_size 16 differs from the checkpoint's 8"):
        resume_config(saved, {"hidden_size": 16})
    config, notes = resume_config(saved, {"iterations": 40, "checkpoint_dir": "elsewhere"})
    assert (config.iterations, config.checkpoint_dir) == (40, "elsewhere")
    assert notes == ["iterations changed from 5 to 40"]
    config, _ = resume_config({**saved, "checkpoint_dir": "/somewhere/recorded"}, {})
    assert config.checkpoint_dir is None               # never the folder recorded inside the checkpoint


def test_non_finite_parameters_are_never_saved(ws):
    """A NaN in any array raises TrainingDiverged and leaves the folder exactly as it was."""
    checkpoint = load_checkpoint(ws / "run")
    before = snapshot(ws)
    params = dict(checkpoint.params, by=poison(np.nan)(checkpoint.params["by"]))
    with pytest.raises(TrainingDiverged, match="param/by is not finite"):
        save_checkpoint(ws / "run", "latest", {**checkpoint.meta, "step": STEPS + 1}, params,
                        checkpoint.optimizer_state, checkpoint.hidden_state)
    assert_unchanged_outside(before, snapshot(ws))


# ---- 2. property tests: mutated checkpoints -------------------------------------------------------------

# derandomize: the same examples on every run (the suite is deterministic); no database written to the repo.
# 60 examples per property: each runs the loader, `sample` and `train --resume` (~50 ms), a few seconds in all.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VICTIM = "@victim@"                        # replaced by the absolute path of a file outside the folder
HOSTILE_STRINGS = ["../victim.txt", VICTIM, "../sibling/latest.json", f"../sibling/{ARRAYS}", "latest-000001.npz",
                   f"best-{STEPS:06d}.npz", ARRAYS, "", "\x00", "/dev/zero", "NaN", "lstm", "stream", "lines", "adam"]
JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(-3, 20) | st.floats()
               | st.text(max_size=8) | st.sampled_from(HOSTILE_STRINGS))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
# A mutated checkpoint may legitimately ask for a long run (e.g. train.epochs = 10**9): a command still
# running after this many seconds fails the property with the example, instead of hanging the suite.
COMMAND_LIMIT_S = 20


class TookTooLong(BaseException):
    """Raised by SIGALRM inside a command; a BaseException so that rnnlab's own handlers cannot catch it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise TookTooLong
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The user's folder for the property tests: a dataset, a file worth keeping, a sibling run, and a
    pristine checkpoint that each example copies to ``ex/`` before mutating it."""
    home = tmp_path_factory.mktemp("home")
    (home / "names.txt").write_text(NAMES_TEXT)
    (home / "victim.txt").write_text("precious\n")
    train_checkpoint(home / "names.txt", home / "pristine")
    shutil.copytree(home / "pristine", home / "sibling")
    return home


def json_paths(value, prefix=()):
    """Every path into a JSON document, the document itself first."""
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from json_paths(child, prefix + (key,))


def resolve_value(value, home: Path):
    if value == VICTIM:
        return str(home / "victim.txt")
    if isinstance(value, list):
        return [resolve_value(v, home) for v in value]
    if isinstance(value, dict):
        return {k: resolve_value(v, home) for k, v in value.items()}
    return value


def retype(value):
    """The same information in another JSON type."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return float(value) if abs(value) < 2 ** 53 else str(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return False


def tweak(old, same_type: dict):
    """Another value of the same JSON type (so the schema's type checks pass and deeper checks are reached)."""
    kind = "bool" if isinstance(old, bool) else type(old).__name__
    return not old if kind == "bool" else same_type.get(kind, old)


def mutate(document, path: tuple, action: str, value, key: str, same_type: dict):
    """The document with one change at ``path``: delete, replace (by any JSON, or by a value of the same
    type), add a key, nest, or retype."""
    if not path:
        added = {**document, key: value} if isinstance(document, dict) else {key: value, "value": document}
        return {"delete": {}, "replace": value, "tweak": value, "add": added, "nest": [document],
                "retype": retype(document)}[action]
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last, old = path[-1], parent[path[-1]]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "tweak":
        parent[last] = tweak(old, same_type)
    elif action == "add":
        if isinstance(old, dict):
            old[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            parent[last] = {key: value, "value": old}
    elif action == "nest":
        parent[last] = [old] if len(key) % 2 else {key: old}
    else:
        parent[last] = retype(old)
    return document


def run_all_readers(home: Path, folder: Path) -> None:
    """The loader, `sample` and `train --resume` on a hostile folder: a clean result or one RnnlabError / one
    line and exit 2; any other exception, exit 1 ('internal error') or a hang fails. Nothing outside the
    folder may be created, changed or deleted."""
    before = snapshot(home, skip=[folder.name])
    steps_now = STEPS + 2
    commands = [["sample", "--checkpoint", str(folder), *SAMPLE],
                ["train", "--resume", str(folder), "--iterations", str(steps_now), "--sample_every", "1000",
                 "--num_samples", "1", "--sample_length", "10", "--eval_every", "1000", "--save_every", "1000",
                 "--quiet"]]
    try:
        with time_limit(COMMAND_LIMIT_S):
            with contextlib.suppress(RnnlabError):
                load_checkpoint(folder)
            for argv in commands:
                result = run_in_process(argv)
                assert "Traceback" not in result.err
                assert result.status in (0, 2), (argv[0], result.status, result.err)
                if result.status == 2:   # one error line; a resumed run's notes may precede a later failure (a
                    # crafted first_loss far below the real losses makes the next steps look diverged)
                    errors = [line for line in result.err.splitlines() if not line.startswith("rnnlab: note: ")]
                    assert len(errors) == 1 and errors[0].startswith("rnnlab"), result.err
    except TookTooLong:
        pytest.fail(f"a command on the mutated checkpoint ran for more than {COMMAND_LIMIT_S} s")
    assert_unchanged_outside(before, snapshot(home, skip=[folder.name]))


def fresh_copy(home: Path) -> Path:
    folder = home / "ex"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(home / "pristine", folder)
    return folder


@pytest.mark.slow
@PROPERTY
@given(data=st.data())
def test_mutated_checkpoint_json_is_refused_in_one_line_or_loads_and_never_touches_other_files(home, data):
    folder = fresh_copy(home)
    document = json.loads((folder / "latest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(json_paths(document))
        # the whole document is one path among ~150: give it a fair chance, and leaves the rest
        whole = len(paths) == 1 or data.draw(st.integers(0, 9), label="whole document if 9") == 9
        path = data.draw(st.just(()) if whole else st.sampled_from(paths[1:]), label="path")
        action = data.draw(st.sampled_from(["delete", "replace", "tweak", "tweak", "add", "nest", "retype"]),
                           label="action")
        value = resolve_value(data.draw(JSON_VALUES, label="value"), home)
        key = data.draw(st.text(max_size=6) | st.sampled_from(["arrays", "model", "chars", "step"]), label="key")
        same_type = {"int": data.draw(st.integers(-2, 40) | st.integers(), label="int"),
                     "float": data.draw(st.floats(), label="float"),
                     "str": resolve_value(data.draw(st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=4),
                                                    label="str"), home),
                     "list": data.draw(st.lists(JSON_LEAVES, max_size=3), label="list"),
                     "dict": data.draw(st.dictionaries(st.text(max_size=4), JSON_LEAVES, max_size=2), label="dict")}
        document = mutate(document, path, action, value, key, same_type)
    (folder / "latest.json").write_text(json.dumps(document))
    run_all_readers(home, folder)


def leaf_paths(document) -> list:
    return [p for p in json_paths(document) if p and not isinstance(value_at(document, p), (dict, list))]


def value_at(document, path):
    for part in path:
        document = document[part]
    return document


@pytest.mark.slow
@PROPERTY
@given(data=st.data())
def test_checkpoint_json_with_other_plausible_values_is_refused_in_one_line_or_runs_cleanly(home, data):
    """Values of the right JSON type (so the schema's type checks pass): counters, sizes, positions, names and
    RNG states changed -- the checks behind the schema (configs, the model, the data position) must hold."""
    folder = fresh_copy(home)
    document = json.loads((folder / "latest.json").read_text())
    leaves = leaf_paths(document)
    for path in data.draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=3, unique=True), label="paths"):
        old = value_at(document, path)
        if isinstance(old, bool):
            new = not old
        elif isinstance(old, int):
            new = data.draw(st.integers(-2, 64) | st.sampled_from([old + 1, old - 1, 2 ** 31, 2 ** 63 - 1, 2 ** 64]),
                            label=f"int at {path}")
        elif isinstance(old, float):
            new = data.draw(st.floats(allow_nan=False) | st.sampled_from([0.0, -1.0, 1e308]), label=f"float at {path}")
        elif isinstance(old, str):
            new = resolve_value(data.draw(st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=3),
                                          label=f"str at {path}"), home)
        else:                                            # null: a value where the default was none
            new = data.draw(JSON_LEAVES, label=f"value at {path}")
        value_at(document, path[:-1])[path[-1]] = new
    (folder / "latest.json").write_text(json.dumps(document))
    run_all_readers(home, folder)


DTYPES = ["int8", "int64", "float16", "float32", "float64", ">f4", "complex64", "bool", "<U3", "object"]


def array_of(dtype: str, shape: tuple, fill: float) -> np.ndarray:
    if dtype == "object":
        values = np.empty(shape, dtype=object)
        values[...] = fill
        return values
    with np.errstate(all="ignore"):
        return np.full(shape, fill).astype(dtype) if dtype != "<U3" else np.full(shape, "abc")


@pytest.mark.slow
@PROPERTY
@given(data=st.data())
def test_mutated_checkpoint_arrays_are_refused_in_one_line_or_load_and_never_touch_other_files(home, data):
    """Bytes flipped (checksum recomputed, so the archive and .npy checks are reached), members replaced by
    arrays of another dtype or shape, dropped or added, the file truncated."""
    folder = fresh_copy(home)
    original = read_arrays(folder)
    action = data.draw(st.sampled_from(["flip", "replace", "drop", "add", "truncate"]), label="action")
    raw = (folder / ARRAYS).read_bytes()
    if action == "flip":
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1,
                                   max_size=4), label="flips")
        changed = bytearray(raw)
        for position, mask in flips:
            changed[position] ^= mask
        write_arrays_bytes(folder, bytes(changed))
    elif action == "truncate":
        write_arrays_bytes(folder, raw[:data.draw(st.integers(0, len(raw) - 1), label="length")])
    else:
        name = data.draw(st.sampled_from(sorted(original)) if action != "add" else
                         st.sampled_from(["param/evil", "state/0/0", "state/0/1", "state/7/0", "opt/m/Wy", "x"]),
                         label="member")
        arrays = dict(original)
        if action == "drop":
            del arrays[name]
        else:
            expected = original.get(name, np.zeros((1, 8))).shape
            shape = data.draw(st.sampled_from([expected, expected[::-1], (), (0,), (1, 8), (3, 3, 3)])
                              | st.lists(st.integers(0, 9), max_size=3).map(tuple), label="shape")
            dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
            fill = data.draw(st.sampled_from([0.0, 1.5, -2.0, math.nan, math.inf, 1e38]), label="fill")
            arrays[name] = array_of(dtype, shape, fill)
        write_arrays_bytes(folder, npz_bytes(arrays))
    run_all_readers(home, folder)


# ---- 3. signals and closed pipes ---------------------------------------------------------------------------

SIGNAL_TOTAL_STEPS = 1200
# A stop lands at a random moment of the first ~0.3 s of training. With --save_every 1 a step takes 1.5-4 ms
# here (each step saves: write, fsync, rename), so the 1,200-step run lasts >= ~1.8 s and is always still
# running when the signal comes, even on a machine several times faster.
MAX_STOP_DELAY_S = 0.3
SIGNAL_RUNS = [("SIGTERM", 143)] * 3 + [("SIGINT", 130)] * 3 + [("SIGHUP", 129)]


def start_training(names: Path, directory: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "train", "--dataset", str(names), "--hidden_size", "8",
                             "--iterations", str(SIGNAL_TOTAL_STEPS), "--val_fraction", "0", "--checkpoint_dir",
                             str(directory), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def wait_for(path: Path, timeout: float = PROCESS_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


@pytest.fixture
def names(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text(NAMES_TEXT)
    return path


@pytest.mark.slow
def test_a_run_stopped_by_a_signal_at_a_random_moment_saves_and_resumes_bit_identically(names, tmp_path):
    """SIGTERM / SIGINT (3 each, at random moments; seeded) and SIGHUP: exit 128 + N, one 'interrupted' line,
    a checkpoint that loads, and resuming it to the full step count gives exactly the parameters of a run that
    was never stopped (the data order, RNG streams and optimizer moments were all saved)."""
    common = ["--dataset", str(names), "--hidden_size", "8", "--iterations", str(SIGNAL_TOTAL_STEPS),
              "--val_fraction", "0", "--quiet"]
    assert run_in_process(["train", *common, "--checkpoint_dir", str(tmp_path / "never-stopped")]).status == 0
    reference = load_checkpoint(tmp_path / "never-stopped").params
    rng = np.random.default_rng(12)
    stopped_at = []
    for i, (name, status) in enumerate(SIGNAL_RUNS):
        directory = tmp_path / f"stopped-{i}"
        proc = start_training(names, directory, "--quiet", "--save_every", "1")
        try:
            assert proc.stdout.readline().startswith(b"rnnlab: rnn 1x8")   # the header: signals are handled now
            wait_for(directory / "latest.json")   # a stop before the first step ends saves nothing, by design
            time.sleep(rng.uniform(0, MAX_STOP_DELAY_S))
            proc.send_signal(getattr(signal, name))
            _, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
        finally:
            proc.kill()
            proc.communicate()
        err = err.decode()
        assert proc.returncode == status, (name, proc.returncode, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith(f"rnnlab: interrupted by {name} at step ") and f"--resume {directory}" in err, err
        step = load_checkpoint(directory).meta["step"]
        assert 1 <= step < SIGNAL_TOTAL_STEPS
        stopped_at.append(step)
        resumed = run_in_process(["train", "--resume", str(directory), "--save_every", "100000", "--quiet"])
        assert resumed.status == 0, resumed.err
        final = load_checkpoint(directory)
        assert final.meta["step"] == SIGNAL_TOTAL_STEPS
        for key, value in reference.items():
            np.testing.assert_array_equal(final.params[key], value, err_msg=f"{name} at step {step}: {key}")
    assert len(set(stopped_at)) > 1, stopped_at                   # the moments really differed


@pytest.mark.slow
def test_a_second_writer_is_refused_while_a_run_holds_the_folder(names, tmp_path):
    """Two real processes: while one trains into a folder, another `train` there is refused in one line and
    the first one's work is intact (it then stops cleanly on SIGTERM)."""
    directory = tmp_path / "shared"
    first = start_training(names, directory, "--quiet", "--save_every", "1")
    try:
        assert first.stdout.readline().startswith(b"rnnlab:")
        wait_for(directory / "latest.json")
        for argv in (["train", "--resume", str(directory), "--quiet"],
                     ["train", "--dataset", str(names), *TINY, "--checkpoint_dir", str(directory), "--overwrite"]):
            second = run_in_process(argv)
            assert_outcome(second, 2, "is in use by another rnnlab run (pid and host: " + str(first.pid))
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == 143
    assert 1 <= load_checkpoint(directory).meta["step"] < SIGNAL_TOTAL_STEPS


@pytest.mark.slow
def test_train_into_a_closed_pipe_saves_and_exits_141(names, tmp_path):
    """`rnnlab train ... | head -1`: the reader takes the header and goes away; the next report cannot be
    written, so the run stops after its step, saves `latest` and exits 141 (128 + SIGPIPE), no traceback.
    (A report every step and 1,200 steps: the run cannot end before it writes to the closed pipe.)"""
    directory = tmp_path / "piped"
    proc = start_training(names, directory, "--sample_every", "1", "--num_samples", "1")
    try:
        assert proc.stdout.readline().startswith(b"rnnlab: rnn 1x8")
        proc.stdout.close()                                          # head -1 exits
        err = proc.stderr.read().decode()
        proc.wait(timeout=PROCESS_TIMEOUT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and err.startswith("rnnlab: interrupted by a closed output at step "), err
    assert 1 <= load_checkpoint(directory).meta["step"] < SIGNAL_TOTAL_STEPS


@pytest.mark.slow
def test_sample_into_a_closed_pipe_ends_without_a_traceback(ws):
    """`rnnlab sample ... | head -1` where head has already gone: the write fails with EPIPE. (A pipe whose
    reader is closed before the command starts makes this deterministic; with a live reader it would depend
    on the output outgrowing the 64 KiB pipe buffer.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "rnnlab.cli", "sample", "--checkpoint", "run", *SAMPLE],
                              cwd=ws, stdout=write_end, stderr=subprocess.PIPE, timeout=PROCESS_TIMEOUT_S, env=ENV,
                              check=False)
    finally:
        os.close(write_end)
    err = done.stderr.decode()
    assert "Traceback" not in err and "Error" not in err, err
    assert done.returncode == 141, (done.returncode, err)


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sample_streams_an_endless_text_and_stops_on_a_signal(ws, signum, status):
    """`sample --length 10**12` prints as it draws (the first characters arrive long before the end, nothing
    is held), and a signal ends it between two characters: one line, 128 + N."""
    stream_checkpoint(ws, None)
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "sample", "--checkpoint", "stream",
                             "--length", str(10 ** 12)], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV)
    try:
        first = proc.stdout.read(200)                       # arrives while the sample goes on
        assert len(first) == 200
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        proc.kill()
    err = err.decode()
    assert proc.returncode == status, err
    assert err.splitlines() == [f"rnnlab: interrupted by {signal.Signals(signum).name} after 0 of 1 samples"], err


@pytest.mark.slow
def test_translate_answers_each_window_before_its_input_ends(tmp_path):
    """`translate --input -` prints the translations of the first 256 lines while stdin is still open: the
    input is read as it comes, never whole; SIGTERM then ends it in one line."""
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{a}\t{a.upper()}\n" for a in ["ab", "ba", "abc", "cab", "bca", "aab"] * 5))
    assert main(["train", "--dataset", str(pairs), "--hidden_size", "8", "--iterations", "3", "--quiet",
                 "--checkpoint_dir", str(tmp_path / "ck")]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "translate", "--checkpoint", "ck", "--input", "-"],
                            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV)
    try:
        proc.stdin.write(b"ab\n" * 256)
        proc.stdin.flush()
        answers = [proc.stdout.readline() for _ in range(256)]   # before any more input is given
        assert all(line.endswith(b"\n") for line in answers)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.decode().splitlines() == ["rnnlab: interrupted by SIGTERM after 256 inputs"], err


# ---- 4. what a killed save leaves behind -----------------------------------------------------------------

LEFTOVERS = [".latest-000004.npz.0123abcd.tmp", ".latest.json.89abcdef.tmp", ".best-000003b.npz.00ff00ff.tmp",
             "latest-000004.npz", "best-000002.npz", "latest-000003b.npz"]      # temporaries; arrays no JSON names
NOT_OURS = ["notes.txt", "latest-5.npz", "latest-000004.npz.bak", ".latest.json.tmp", "my.npz", "LATEST-000004.npz",
            ".latest-000004.npz.0123abcd.tmp.keep", ".latest.json.xyz.tmp", "best.json.orig"]


@pytest.mark.parametrize("how", ["resume", "fresh run"])
def test_the_next_run_removes_what_a_killed_save_left_and_nothing_else(ws, how, monkeypatch):
    """After `kill -9` during a save: `.latest-*.tmp` files and arrays files that no JSON names are removed by
    the next run that takes the folder; a file of any other name is kept, and a leftover that is a link to a
    file outside the folder is removed as a link (its target stays)."""
    run = ws / "run"
    if how == "fresh run":                              # only the debris is left: no JSON, so no --overwrite
        for path in run.iterdir():
            path.unlink()
    for name in LEFTOVERS + NOT_OURS:
        (run / name).write_bytes(b"debris")
    (run / "latest-000002.npz").symlink_to(ws / "victim.txt")
    (run / "best-000009.npz").mkdir()                   # a folder with an rnnlab name is not ours either
    argv = (["train", "--resume", "run", "--iterations", str(STEPS + 2), "--quiet"] if how == "resume" else
            ["train", "--dataset", "names.txt", *TINY, "--checkpoint_dir", "run"])
    monkeypatch.chdir(ws)
    result = run_in_process(argv)
    assert result.status == 0, result.err
    left = {p.name for p in run.iterdir()}
    assert not left & set(LEFTOVERS + ["latest-000002.npz"]), sorted(left)
    assert set(NOT_OURS) | {"best-000009.npz"} <= left, sorted(left)
    assert (ws / "victim.txt").read_text() == "precious\n"
    assert load_checkpoint(run).meta["step"] == (STEPS + 2 if how == "resume" else 3)
