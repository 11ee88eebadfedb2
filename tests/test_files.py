"""The output guard (files.py): every rule of its docstring, one test each, on the library functions.

The command-level rows (each output flag of each command against each class of target) are in the hostile
table of tests/test_reliability.py; these tests pin the mechanism itself. All targets live in tmp_path.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rnnlab import files
from rnnlab.errors import RnnlabError

PAGE_TEXT = b'<!DOCTYPE html><meta name="generator" content="rnnlab">page'


def test_a_new_file_is_written_atomically_and_no_temporary_file_stays(tmp_path):
    path = files.write_file(tmp_path / "p.html", PAGE_TEXT, files.PAGE, "--out")
    assert path.read_bytes() == PAGE_TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]


def test_chunks_are_written_in_order(tmp_path):
    files.write_file(tmp_path / "ids", (bytes([i]) * 3 for i in range(4)), files.BENCH, "--json")
    assert (tmp_path / "ids").read_bytes() == b"\0\0\0\1\1\1\2\2\2\3\3\3"


def test_a_file_the_run_read_is_never_written_whatever_its_path(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("text")
    files.read_bytes(data, "dataset")
    (tmp_path / "other").symlink_to(data)
    os.link(data, tmp_path / "hard")
    for path in (data, tmp_path / "." / "data.txt", tmp_path / "other", tmp_path / "hard"):
        with pytest.raises(RnnlabError, match="the dataset, which this run reads|hard links|symbolic link"):
            files.write_file(path, b"x", files.METRICS, "--metrics_file", overwrite=True)
    assert data.read_text() == "text"


def test_nothing_is_written_inside_a_folder_or_pattern_the_run_reads(tmp_path):
    (tmp_path / "books").mkdir()
    files.note_read(tmp_path / "books", "the dataset folder")
    files.note_read_pattern(str(tmp_path / "glob" / "*.txt"), "the dataset pattern")
    for path in (tmp_path / "books" / "new.jsonl", tmp_path / "books" / "sub" / "x", tmp_path / "glob" / "n.txt"):
        with pytest.raises(RnnlabError, match="which this run reads"):
            files.write_file(path, b"{}", files.METRICS, "--metrics_file")
    with pytest.raises(RnnlabError, match="its files would become part of the input"):
        files.prepare_folder(tmp_path / "books" / "run", files.CHECKPOINT, "--checkpoint_dir")
    files.write_file(tmp_path / "glob" / "n.jsonl", b"", files.METRICS, "--metrics_file")   # not a match: fine


def test_rnnlabs_own_package_is_never_written():
    target = files.PACKAGE / "corpora" / "dinos.txt"
    before = target.read_bytes()
    with pytest.raises(RnnlabError, match="rnnlab's installed package"):
        files.write_file(target, b"{}", files.METRICS, "--metrics_file", overwrite=True)
    with pytest.raises(RnnlabError, match="rnnlab's installed package"):
        files.write_file(files.PACKAGE / "new.html", PAGE_TEXT, files.PAGE, "--out")
    assert target.read_bytes() == before


def test_an_existing_file_rnnlab_did_not_write_needs_overwrite(tmp_path):
    victim = tmp_path / "notes.html"
    victim.write_text("my notes")
    with pytest.raises(RnnlabError, match="is not a page written by rnnlab: rnnlab did not write it; give "
                                          "another name, or add --overwrite"):
        files.write_file(victim, PAGE_TEXT, files.PAGE, "--out")
    assert victim.read_text() == "my notes"
    files.write_file(victim, PAGE_TEXT, files.PAGE, "--out", overwrite=True)
    files.write_file(victim, PAGE_TEXT + b"2", files.PAGE, "--out")      # now it is rnnlab's: replaced freely
    assert victim.read_bytes() == PAGE_TEXT + b"2"
    (tmp_path / "empty.html").touch()                                  # nothing in it to lose
    files.write_file(tmp_path / "empty.html", PAGE_TEXT, files.PAGE, "--out")


@pytest.mark.parametrize("kind, own", [(files.METRICS, b'{"step": 3, "train_loss": 2.0}\n'),
                                       (files.BENCH, b'{\n "generator": "rnnlab bench", "rows": []}'),
                                       (files.IMAGE, b"\x89PNG....tEXtSoftware\0rnnlab...")])
def test_each_kind_recognises_its_own_files_and_no_other(tmp_path, kind, own):
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.write_bytes(own)
    other.write_bytes(b"\x00\x01binary data of someone else")
    files.write_file(mine, own, kind, "--out")
    with pytest.raises(RnnlabError, match="rnnlab did not write it"):
        files.write_file(other, own, kind, "--out")


def test_checkpoint_files_belong_to_checkpoints_and_the_cache_to_the_cache(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".rnnlab.lock").touch()
    for name in ("latest.json", "best.json", "best-000200.npz", ".rnnlab.lock"):
        with pytest.raises(RnnlabError, match="is a file of the checkpoint"):
            files.write_file(run / name, PAGE_TEXT, files.PAGE, "--out", overwrite=True)
    files.write_file(run / "metrics.jsonl", b"", files.METRICS, "--metrics_file")   # another name: fine
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / files.CACHE_TAG).write_text(files.CACHE_TAG_TEXT)
    with pytest.raises(RnnlabError, match="inside rnnlab's corpus cache"):
        files.write_file(cache / "page.html", PAGE_TEXT, files.PAGE, "--out")
    with pytest.raises(RnnlabError, match="is rnnlab's corpus cache"):
        files.prepare_folder(cache, files.CHECKPOINT, "--checkpoint_dir")


def test_a_checkpoint_the_run_reads_is_replaced_only_by_the_run_that_continues_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest.json").write_text('{"format_version": 2}')
    files.note_checkpoint_read(run, "the checkpoint run/latest.json")
    files.read_bytes(run / "latest.json", "checkpoint")
    with pytest.raises(RnnlabError, match="which this run reads"):
        files.write_file(run / "latest.json", b"{}", files.CHECKPOINT, "--out", overwrite=True)
    with pytest.raises(RnnlabError, match="is in the folder of the checkpoint"):
        files.write_file(run / "best.json", b"{}", files.CHECKPOINT, "--out", overwrite=True)
    files.note_checkpoint_read(run, "the checkpoint run/latest.json", continued=True)      # --resume
    files.write_file(run / "latest.json", b'{"format_version": 2}', files.CHECKPOINT, "--checkpoint_dir")


def test_links_are_never_replaced(tmp_path):
    target = tmp_path / "target.html"
    target.write_bytes(PAGE_TEXT)
    (tmp_path / "soft.html").symlink_to(target)
    os.link(target, tmp_path / "hard.html")
    with pytest.raises(RnnlabError, match="is a symbolic link"):
        files.write_file(tmp_path / "soft.html", b"x", files.PAGE, "--out", overwrite=True)
    with pytest.raises(RnnlabError, match="has 2 hard links"):
        files.write_file(tmp_path / "hard.html", b"x", files.PAGE, "--out", overwrite=True)
    assert target.read_bytes() == PAGE_TEXT and (tmp_path / "soft.html").is_symlink()


def test_a_fifo_is_written_in_place_and_one_nobody_reads_is_an_error(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RnnlabError, match="is a FIFO that nobody reads"):
        files.write_file(fifo, PAGE_TEXT, files.PAGE, "--out")
    got = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    while not got and reader.is_alive():
        try:
            files.write_file(fifo, PAGE_TEXT, files.PAGE, "--out")
            break
        except RnnlabError:                                       # the reader has not opened it yet
            continue
    reader.join(10)
    assert got == [PAGE_TEXT] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(RnnlabError, match="rnnlab writes a folder of files here"):
        files.write_file(fifo, b"x", files.CHECKPOINT, "--checkpoint_dir")


def test_a_character_device_is_written_in_place_never_replaced():
    before = os.lstat("/dev/null")
    files.write_file("/dev/null", PAGE_TEXT, files.PAGE, "--out")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (before.st_ino, before.st_rdev) == (after.st_ino, after.st_rdev)


@pytest.mark.slow
def test_a_link_to_this_process_output_is_a_stream_written_in_place(tmp_path):
    """``--out`` a link to /proc/self/fd/1 whose stdout is a pipe: the page goes down the pipe, the link stays."""
    (tmp_path / "out.html").symlink_to("/proc/self/fd/1")
    code = ("import sys; from rnnlab import files; "
            "files.write_file(sys.argv[1], b'<meta name=\"generator\" content=\"rnnlab\">x', files.PAGE, '--out')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.html")], capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'<meta name="generator" content="rnnlab">x'
    assert (tmp_path / "out.html").is_symlink()


def test_sockets_and_folders_are_refused(tmp_path):
    import socket
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(RnnlabError, match="is a socket"):
            files.write_file(tmp_path / "sock", b"x", files.PAGE, "--out")
    finally:
        server.close()
    (tmp_path / "dir").mkdir()
    with pytest.raises(RnnlabError, match="is a directory"):
        files.write_file(tmp_path / "dir", b"x", files.PAGE, "--out")


def test_a_link_at_the_temporary_name_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    monkeypatch.setattr(files, "temp_name", lambda target: ".fixed.tmp")
    (tmp_path / ".fixed.tmp").symlink_to(victim)
    with pytest.raises(RnnlabError, match="cannot be written"):
        files.write_file(tmp_path / "out.jsonl", b"{}", files.METRICS, "--metrics_file")
    assert victim.read_text() == "precious" and not (tmp_path / "out.jsonl").exists()


def test_a_killed_writers_temporary_files_are_removed_by_the_next_writer(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale = tmp_path / f".page.html.rnnlab-{dead}-0123abcd.tmp"
    live = tmp_path / f".page.html.rnnlab-{os.getpid()}-89abcdef.tmp"       # a write in progress: kept
    other = tmp_path / f".other.html.rnnlab-{dead}-00000000.tmp"             # another target's: kept here
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    files.write_file(tmp_path / "page.html", PAGE_TEXT, files.PAGE, "--out")
    assert not stale.exists() and live.exists() and other.exists()
    assert files.remove_stale_temps(tmp_path) == [other.name]                 # the folder's owner: all dead ones


def test_a_lock_file_hard_linked_elsewhere_is_refused_never_truncated(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "run").mkdir()
    os.link(victim, tmp_path / "run" / ".rnnlab.lock")
    with pytest.raises(RnnlabError, match="has 2 hard links, not a lock file of its own"):
        files.DirectoryLock(tmp_path / "run").acquire()
    assert victim.read_text() == "precious"


def test_appended_lines_go_through_one_guarded_descriptor(tmp_path):
    out = files.Appender(tmp_path / "m.jsonl", files.METRICS, "--metrics_file")
    out.write('{"step": 1}\n')
    out.write('{"step": 2}\n')
    assert (tmp_path / "m.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    (tmp_path / "m.jsonl").unlink()
    os.symlink(tmp_path / "elsewhere", tmp_path / "m.jsonl")                 # swapped for a link mid-run
    with pytest.raises(RnnlabError, match="cannot be written"):
        out.write('{"step": 3}\n')
    assert not (tmp_path / "elsewhere").exists()


def test_a_missing_folder_is_created_only_for_kinds_that_create_it(tmp_path):
    files.write_file(tmp_path / "a" / "b" / "m.jsonl", b"", files.METRICS, "--metrics_file")
    with pytest.raises(RnnlabError, match="does not exist"):
        files.write_file(tmp_path / "c" / "p.html", PAGE_TEXT, files.PAGE, "--out")
    assert not Path(tmp_path / "c").exists()
