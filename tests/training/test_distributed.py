"""distributed.py and data-parallel training: real two-process runs on the CPU (torchrun, Gloo), compared
with one process.

Every run here is a tiny float64 model for a dozen steps; the cost is starting torchrun and its two
workers (a few seconds each), so the runs are shared between tests by module-scoped fixtures.
Tolerances: float64 with only the order of additions changed (the gradient and loss sums over processes)
agrees to ~1e-15; 1e-9 relative leaves room for a dozen steps of Adam, far below any real difference (a
wrong weighting of the two shares moves the loss in the third decimal).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crosscheck import one_torch_thread  # noqa: E402,F401 (an autouse fixture: used by being imported)
from rnnlab.cli import build_parser, config_from_args  # noqa: E402
from rnnlab.training.checkpoint import load_checkpoint  # noqa: E402
from rnnlab.training.distributed import World  # noqa: E402
from rnnlab.training.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.slow      # every test starts torchrun or several processes

RTOL = 1e-9
WORDS = ["the", "a", "king", "queen", "crown", "sword", "horse", "night", "day", "and", "of", "to", "my", "thy",
         "lord", "lady"]


def stream_text() -> str:
    """About 500 characters of words: 5 streams of 8-character windows wrap into a second epoch by step 12."""
    rng = np.random.default_rng(7)
    return " ".join(rng.choice(WORDS, 110)).replace(" lord", "\nlord")[:500]


def names_text() -> str:
    """12 names of different lengths: 11 train (batches of 5, 5 and 1), 1 held out."""
    return "\n".join(["ab", "abc", "bca", "cab", "aabbc", "cc", "abcabc", "ba", "bbb", "acba", "cabba", "bac"]) + "\n"


STREAM_RUN = ["--data_mode", "stream", "--cell", "lstm", "--num_layers", "2", "--hidden_size", "8",
              "--batch_size", "5", "--seq_length", "8", "--sample_every", "4", "--dtype", "float64",
              "--learning_rate", "0.01", "--clip_value", "none", "--clip_norm", "1", "--engine", "torch",
              "--device", "cpu", "--quiet"]
LINES_RUN = ["--data_mode", "lines", "--cell", "gru", "--hidden_size", "6", "--batch_size", "5",
             "--iterations", "7", "--sample_every", "3", "--dtype", "float64", "--learning_rate", "0.02",
             "--engine", "torch", "--device", "cpu", "--quiet"]


def torchrun(cwd: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={processes}", "-m", "rnnlab", "train", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=240)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_process(flags: list[str], **changes) -> list[dict]:
    """The same run in this process (one process, no torchrun), its flags read by the CLI's own parser:
    its reports' metrics."""
    config = config_from_args(build_parser().parse_args(["train", *flags])).replace(**changes)
    reports = []
    Trainer(config, on_report=lambda r: reports.append(r.metrics())).run()
    return reports


def assert_same_losses(got: list[dict], want: list[dict], rtol: float = RTOL) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for mine, theirs in zip(got, want, strict=True):
        for key in ("train_loss", "smooth_loss", "val_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=rtol), (mine["step"], key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two-process runs, once for the module: A, 12 steps; B, 6 steps then resumed to 12 (C)."""
    ws = tmp_path_factory.mktemp("ddp")
    (ws / "text.txt").write_text(stream_text(), encoding="utf-8")
    common = ["--dataset", "text.txt", *STREAM_RUN]
    done = {"ws": ws}
    done["A"] = torchrun(ws, *common, "--iterations", "12", "--checkpoint_dir", "A", "--metrics_file", "A.jsonl")
    done["B"] = torchrun(ws, *common, "--iterations", "6", "--checkpoint_dir", "B", "--metrics_file", "B.jsonl")
    shutil.copytree(ws / "B", ws / "B-at-6")
    done["C"] = torchrun(ws, "--resume", "B", "--iterations", "12", "--metrics_file", "C.jsonl", "--quiet")
    return done


# ---- the World -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 7, 32])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_columns_split_a_batch_into_contiguous_blocks_that_cover_it_once(n, size):
    blocks = [World(rank, size).columns(n) for rank in range(size)]
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in pairwise(blocks))
    widths = [b.stop - b.start for b in blocks]
    assert max(widths) - min(widths) <= 1


def test_one_process_needs_no_process_group():
    world = World()
    assert world.writes and world.any(True) and not world.any(False)
    assert world.columns(5) == slice(0, 5)


# ---- two processes follow one ----------------------------------------------------------------------------

def test_two_processes_follow_the_one_process_losses(runs):
    """Stream corpus, batch 5 over 2 processes (3 and 2 streams: unequal shares, so the gradient must be
    weighted by characters), hidden state carried, an epoch boundary at step 12: the reported training,
    smoothed and validation losses are the one-process run's."""
    assert runs["A"].returncode == 0, runs["A"].stderr
    ws = runs["ws"]
    want = one_process((["--dataset", str(ws / "text.txt"), *STREAM_RUN]), iterations=12)
    assert_same_losses(records(ws / "A.jsonl"), want)


def test_only_rank_0_prints_and_writes_one_metrics_file_and_one_checkpoint(runs):
    ws, run = runs["ws"], runs["A"]
    assert [r["step"] for r in records(ws / "A.jsonl")] == [4, 8, 12]          # not two copies of each line
    assert run.stdout.count("step      12") == 1 and run.stdout.count("rnnlab: lstm") == 1
    assert "rnnlab: checkpoint" in run.stdout and run.stdout.count("rnnlab: checkpoint") == 1
    assert sorted(p.name for p in (ws / "A").iterdir()) == sorted(
        [".rnnlab.lock", "latest.json", "latest-000012.npz", "best.json", f"best-{best_step(ws / 'A'):06d}.npz"])


def best_step(directory: Path) -> int:
    return json.loads((directory / "best.json").read_text())["step"]


def test_the_checkpoint_is_the_one_process_checkpoint_and_numpy_samples_from_it(runs, tmp_path):
    """Parameters, optimizer moments and the carried hidden state of all 5 streams (gathered from both
    processes) equal a one-process run's; the NumPy engine samples from it."""
    ws = runs["ws"]
    flags = (["--dataset", str(ws / "text.txt"), *STREAM_RUN])
    one_process(flags, iterations=12, checkpoint_dir=str(tmp_path))
    mine, theirs = load_checkpoint(ws / "A" / "latest.json"), load_checkpoint(tmp_path / "latest.json")
    for name, value in theirs.params.items():
        np.testing.assert_allclose(mine.params[name], value, rtol=RTOL, atol=1e-12)
    for slot in ("m", "v"):
        for name, value in theirs.optimizer_state[slot].items():
            np.testing.assert_allclose(mine.optimizer_state[slot][name], value, rtol=RTOL, atol=1e-15)
    for mine_layer, their_layer in zip(mine.hidden_state, theirs.hidden_state, strict=True):
        for part, want in zip(mine_layer, their_layer, strict=True):
            assert part.shape == (5, 8)
            np.testing.assert_allclose(part, want, rtol=RTOL, atol=1e-12)
    sampled = subprocess.run([sys.executable, "-m", "rnnlab", "sample", "--checkpoint", str(ws / "A"),
                              "--length", "30"],
                             capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0 and len(sampled.stdout) > 0, sampled.stderr


def test_resuming_a_two_process_run_on_two_processes_is_exact(runs):
    """6 steps, saved, resumed to 12 on two processes: the losses of steps 8 and 12 and the final parameters
    are bit-identical to the uninterrupted run (same data position, optimizer moments, hidden state and
    reduction order)."""
    ws = runs["ws"]
    assert runs["B"].returncode == 0 and runs["C"].returncode == 0, runs["C"].stderr
    whole = {r["step"]: r for r in records(ws / "A.jsonl")}
    for r in records(ws / "C.jsonl"):
        for key in ("train_loss", "smooth_loss", "val_loss"):
            assert r[key] == whole[r["step"]][key], (r["step"], key)
    resumed, uninterrupted = load_checkpoint(ws / "B"), load_checkpoint(ws / "A")
    for name, value in uninterrupted.params.items():
        np.testing.assert_array_equal(resumed.params[name], value)


def test_a_two_process_checkpoint_resumes_on_one_process(runs):
    """Every data position maps across world sizes: the data position is the global batch's, and the
    hidden state is saved for all 5 streams. One process continues the two-process run's trajectory."""
    ws = runs["ws"]
    reports = []
    trainer = Trainer.resume(load_checkpoint(ws / "B-at-6"), {"iterations": 12, "checkpoint_dir": str(ws / "one")},
                             on_report=lambda r: reports.append(r.metrics()))
    trainer.run()
    assert_same_losses(reports, records(ws / "A.jsonl")[1:])


def test_padded_line_batches_narrower_than_the_processes_still_follow_one_process(tmp_path):
    """Line corpus: batches of 5, 5 and then 1 name -- rank 0's share of the last is empty, so it computes
    a fully masked column (adding exact zeros) and still joins the all-reduce; validation has 1 name."""
    (tmp_path / "names.txt").write_text(names_text(), encoding="utf-8")
    run = torchrun(tmp_path, "--dataset", "names.txt", *LINES_RUN, "--metrics_file", "m.jsonl")
    assert run.returncode == 0, run.stderr
    want = one_process(["--dataset", str(tmp_path / "names.txt"), *LINES_RUN])
    assert_same_losses(records(tmp_path / "m.jsonl"), want)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs; fewer are visible here")
def test_two_gpus_with_nccl_follow_one_gpu(tmp_path):
    """The same comparison on CUDA: NCCL all-reduces, cuDNN computes (float64)."""
    (tmp_path / "text.txt").write_text(stream_text(), encoding="utf-8")
    flags = ["--dataset", str(tmp_path / "text.txt"), *STREAM_RUN, "--iterations", "8", "--device", "cuda"]
    run = torchrun(tmp_path, *flags, "--metrics_file", "m.jsonl")
    assert run.returncode == 0, run.stderr
    assert_same_losses(records(tmp_path / "m.jsonl"), one_process(flags))


# ---- one error, one line; signals --------------------------------------------------------------------------

@pytest.mark.parametrize("flags, fragment", [
    (["--checkpoint_dir", "afile/run"], "--checkpoint_dir afile/run: a file of that name is in the way"),  # rank 0
    (["--engine", "numpy"], "runs on the torch engine: add --engine torch"),                 # every rank fails
])
def test_an_error_on_one_or_all_processes_is_one_line(tmp_path, flags, fragment):
    """Rank 0 failing alone (its folder check) ends rank 1 in its next collective, silently; a refusal that
    every process meets is printed once. (torchrun adds its own failure summary, which is not rnnlab's.)"""
    (tmp_path / "text.txt").write_text(stream_text(), encoding="utf-8")
    (tmp_path / "afile").write_text("in the way")
    run = torchrun(tmp_path, "--dataset", "text.txt", *STREAM_RUN, "--iterations", "3", *flags)
    assert run.returncode != 0
    ours = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("rnnlab:", "[rank"))]
    assert len(ours) == 1 and fragment in ours[0], run.stdout + run.stderr


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_process(cwd: Path, rank: int, size: int, port: int, *flags: str, **env: str) -> subprocess.Popen:
    """One process of a run launched by hand (as a job script would), with torchrun's variables."""
    variables = {**os.environ, "WORLD_SIZE": str(size), "RANK": str(rank), "LOCAL_RANK": str(rank),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **env}
    variables.pop("RNNLAB_DEBUG", None)
    (cwd / "text.txt").write_text(stream_text(), encoding="utf-8")
    return subprocess.Popen([sys.executable, "-m", "rnnlab", "train", "--dataset", "text.txt", *STREAM_RUN,
                             "--iterations", "3", *flags], cwd=cwd, env=variables, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def default_sigint() -> None:
    """The child's SIGINT as in a terminal: a test run started in the background by a shell (``cmd &``)
    inherits SIGINT *ignored*, and a process that ignores it cannot show what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finished(process: subprocess.Popen, within_s: float) -> tuple[int, list[str]]:
    try:
        out, err = process.communicate(timeout=within_s)
    finally:
        process.kill()
    return process.returncode, (out + err).splitlines()


def test_a_process_alone_names_the_ranks_that_never_joined(tmp_path):
    """WORLD_SIZE=3 with only rank 0 started: after --dist_timeout, one line naming ranks 1 and 2 (not
    PyTorch's 30 minutes, not a traceback)."""
    started = time.monotonic()
    status, lines = finished(rank_process(tmp_path, 0, 3, free_port(), "--dist_timeout", "2"), 60)
    assert status == 2 and lines == ["rnnlab: error: 2 of 3 processes never joined within 2 s (rank 1, 2): start "
                                     "every process (torchrun --nproc_per_node=N starts them all), or raise "
                                     "--dist_timeout"], lines
    assert time.monotonic() - started < 30


def test_a_rank_that_cannot_reach_rank_0_says_so_itself(tmp_path):
    status, lines = finished(rank_process(tmp_path, 1, 2, free_port(), "--dist_timeout", "2"), 60)
    assert status == 2 and len(lines) == 1 and "process 1 of 2 could not reach the rendezvous" in lines[0], lines


def serving(port: int, process: subprocess.Popen, within_s: float) -> None:
    """Wait until rank 0 serves the rendezvous store on ``port`` (torch imported, the wait for the others
    begun): a fixed sleep is too short where importing torch is slow (a fresh virtual environment, cold
    caches)."""
    import socket
    deadline = time.monotonic() + within_s
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "rank 0 never served the store"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)


def test_ctrl_c_while_waiting_for_the_others_ends_at_once(tmp_path):
    port = free_port()
    process = rank_process(tmp_path, 0, 2, port, "--dist_timeout", "600")
    serving(port, process, 120)
    time.sleep(0.5)                                           # inside the wait loop for the other rank
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    status, lines = finished(process, 30)
    assert status == 130 and lines == ["rnnlab: interrupted"], lines
    assert time.monotonic() - started < 10


def test_an_error_only_one_rank_meets_is_printed_by_that_rank(tmp_path):
    """Rank 1's own environment is broken: rank 1 says so; rank 0, left waiting, names rank 1. One line each,
    each about its own process."""
    port = free_port()
    zero = rank_process(tmp_path, 0, 2, port, "--dist_timeout", "3")
    one = rank_process(tmp_path, 1, 2, port, "--dist_timeout", "3", LOCAL_RANK="7", LOCAL_WORLD_SIZE="2")
    status_one, lines_one = finished(one, 60)
    status_zero, lines_zero = finished(zero, 60)
    assert status_one == 2 and lines_one == ["rnnlab: error: environment variable LOCAL_RANK=7 must be between 0 "
                                             "and 1: launch with torchrun, which sets it (or unset it for one "
                                             "process)"], lines_one
    assert status_zero == 2 and len(lines_zero) == 1 and "(rank 1)" in lines_zero[0], lines_zero


def test_a_stop_signal_stops_every_process_after_the_same_step_and_rank_0_saves(tmp_path):
    """SIGTERM to torchrun (as Slurm or ``kill`` send it) reaches both processes, maybe a step apart; they
    agree on the step to stop after (else one would wait for the other in a collective and fail), rank 0
    saves and says so once. (Resuming such a checkpoint exactly: the tests above.)"""
    (tmp_path / "text.txt").write_text(stream_text(), encoding="utf-8")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rnnlab",
               "train", "--dataset", "text.txt", *(STREAM_RUN), "--iterations", "1000000",
               "--sample_every", "2", "--checkpoint_dir", "run", "--metrics_file", "m.jsonl"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "m.jsonl").exists() or not (tmp_path / "m.jsonl").read_text():
            assert time.monotonic() < deadline and launcher.poll() is None, launcher.communicate()
            time.sleep(0.2)
        launcher.send_signal(signal.SIGTERM)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    ours = [line for line in (out + err).splitlines() if line.startswith(("rnnlab:", "[rank"))]
    said = [line for line in ours if line.startswith("rnnlab: interrupted")]
    assert len(said) == 1 and "by SIGTERM" in said[0] and "checkpoint saved" in said[0], out + err
    assert not any(line.startswith(("rnnlab: error", "[rank")) for line in ours), out + err  # none hung or failed
    saved = load_checkpoint(tmp_path / "run")
    assert f"at step {saved.run_state.step:,};" in said[0]
    assert [len(layer[0]) for layer in saved.hidden_state] == [5, 5]      # both processes' streams
