"""The torch engine's devices and precisions (frameworks/torch.py): choosing a device, the one-line
refusals, losses read every N steps instead of every step, autocast -- and, on a machine with a GPU, the
same run on CUDA.

The CUDA tests are marked ``cuda`` and skipped where no GPU is visible. tests/conftest.py turns a skip
whose report mentions a framework ("torch", "keras", ...) into a CI failure, because a missing framework is
a broken install that must not pass quietly; a missing GPU is a property of the machine (CI's has none). So
these skips must not match those words: the reason names the GPU ("needs a CUDA GPU ..."), not PyTorch, and
this file is test_devices.py, not test_torch_devices.py (the report of a skip includes the file's path).
pytest's -ra summary still lists every skipped test with its reason, so nobody can take them for tests
that ran.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crosscheck import one_torch_thread  # noqa: E402,F401 (an autouse fixture: used by being imported)
from rnnlab.errors import RnnlabError, TrainingDiverged  # noqa: E402
from rnnlab.frameworks import torch as rtorch  # noqa: E402
from rnnlab.generate.sampling import sample  # noqa: E402
from rnnlab.training import distributed  # noqa: E402
from rnnlab.training.checkpoint import load_checkpoint  # noqa: E402
from rnnlab.training.config import resume_config  # noqa: E402
from rnnlab.training.trainer import TrainConfig, Trainer  # noqa: E402

pytestmark = pytest.mark.slow      # trains through the torch engine and starts processes

HAS_CUDA = torch.cuda.is_available()


def on_cuda(test):
    """Marked ``cuda`` (``pytest -m cuda`` runs just these) and skipped where no GPU is visible."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; none is visible here")(test))


SMALL = dict(dataset="dinos", cell="lstm", hidden_size=12, num_layers=2, batch_size=8, iterations=12,
             sample_every=4, engine="torch", device="cpu")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True, timeout=120)


def reports_of(trainer: Trainer) -> list[dict]:
    reports = []
    trainer.on_report = lambda report: reports.append(report.metrics())
    trainer.run()
    return [{k: r[k] for k in ("step", "train_loss", "smooth_loss", "val_loss")} for r in reports]


# ---- choosing a device -----------------------------------------------------------------------------------

def test_auto_is_cuda_when_there_is_a_gpu_else_the_cpu():
    assert rtorch.resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert rtorch.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("build, fragment", [(None, "built for the CPU only"), ("12.4", "sees no GPU")])
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_in_one_line_saying_why(monkeypatch, name, build, fragment):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    with pytest.raises(RnnlabError, match=fragment) as refused:
        rtorch.resolve_device(name)
    assert "--device cpu" in str(refused.value) and "\n" not in str(refused.value)


def test_mps_without_an_apple_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RnnlabError, match="no Apple GPU"):
        rtorch.resolve_device("mps")


def test_under_torchrun_each_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RnnlabError, match="give --device cuda"):
        rtorch.resolve_device("cuda:0", distributed.World(0, 2, 0))
    with pytest.raises(RnnlabError, match="one process per GPU"):
        rtorch.resolve_device("cuda", distributed.World(1, 2, 1))


@pytest.mark.parametrize("settings, fragment", [
    (dict(device="cuda"), "--device cuda needs the torch engine: add --engine torch"),
    (dict(device="cuda:1", engine="keras-tape"), "--device cuda:1 needs the torch engine: add --engine torch"),
    (dict(device="mps"), "the numpy engine computes on the CPU"),
    (dict(precision="bf16"), "--precision bf16 needs the torch engine: add --engine torch"),
    (dict(engine="torch", precision="fp16", dtype="float64"), "use --dtype float32"),
    (dict(engine="torch", device="gpu"), "--device must be auto, cpu, cuda, cuda:N or mps"),
    (dict(engine="torch", precision="fp8"), "--precision must be one of fp32, bf16, fp16"),
])
def test_the_config_refuses_what_its_engine_cannot_do(settings, fragment):
    with pytest.raises(RnnlabError, match=fragment.replace("(", r"\(")):
        TrainConfig(**settings)


def test_the_device_is_where_a_run_is_now_not_where_it_was():
    """A checkpoint trained on a GPU resumes on a CPU-only machine: --device is never taken from it."""
    config, _ = resume_config(TrainConfig(engine="torch", device="cuda").to_dict(), {"checkpoint_dir": "x"})
    assert config.device == "auto"
    config, _ = resume_config(TrainConfig(engine="torch", device="cuda").to_dict(), {"device": "cpu"})
    assert config.device == "cpu"


@pytest.mark.parametrize("args, fragment", [
    (["train", "--device", "cuda", "--iterations", "2"], "add --engine torch"),
    (["train", "--device", "gpu"], "invalid device 'gpu'"),
    (["train", "--engine", "torch", "--device", "cpu", "--precision", "fp16", "--iterations", "2"],
     "on the CPU use bf16 or fp32"),
    (["sample", "--checkpoint", "nowhere", "--device", "cuda"], "add --engine torch"),
    (["bench", "--device", "cuda", "--quick"], "give --engines torch"),
])
def test_command_line_refusals_are_one_line(args, fragment):
    run = cli(*args)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and run.stdout == "", run.stderr
    assert fragment is None or fragment in run.stderr, run.stderr


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is present here, so CUDA is not refused")
def test_the_torch_engine_on_a_machine_without_cuda_is_one_line():
    run = cli("train", "--engine", "torch", "--device", "cuda", "--iterations", "2")
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and "cannot use CUDA" in run.stderr


# ---- reading losses every N steps ------------------------------------------------------------------------

def test_losses_read_every_n_steps_give_the_same_reports_and_checkpoint(tmp_path):
    """On a GPU the engine hands over device scalars, read every loss_read_every steps. Forced here on the
    CPU: reports, smoothed loss and the saved run are exactly those of reading every step."""
    probe = Trainer(TrainConfig(**SMALL))
    probe.engine.loss_read_every = 5
    assert torch.is_tensor(probe.advance()[0]) and len(probe.losses.unread) == 1
    every_step = Trainer(TrainConfig(**SMALL, checkpoint_dir=str(tmp_path / "a")))
    deferred = Trainer(TrainConfig(**SMALL, checkpoint_dir=str(tmp_path / "b")))
    deferred.engine.loss_read_every = 5
    assert reports_of(deferred) == reports_of(every_step)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert (a.meta["loss_average"], a.meta["first_loss"]) == (b.meta["loss_average"], b.meta["first_loss"])


def test_a_divergence_is_caught_when_the_losses_are_read_and_nothing_diverged_is_saved(tmp_path):
    """With losses read every 4 steps the guard still sees every one of them (at the read), and names the
    step whose loss went wrong; the checkpoint module refuses the non-finite parameters."""
    config = TrainConfig(**{**SMALL, "optimizer": "sgd", "learning_rate": 1e6, "clip_value": None,
                            "iterations": 50, "checkpoint_dir": str(tmp_path)})
    trainer = Trainer(config)
    trainer.engine.loss_read_every = 4
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+") as diverged:
        trainer.run()
    step = int(str(diverged.value).split("at step ")[1].split(":")[0])
    assert step <= trainer.step and trainer.step % 4 == 0
    assert not (tmp_path / "latest.json").exists() or load_checkpoint(tmp_path).run_state.step < step


# ---- precision ---------------------------------------------------------------------------------------------

CPU_BF16 = rtorch.cpu_bf16_supported()
# A hardware feature, not a missing tool: tests/conftest.py's CI guard lets a skip starting "needs a CPU" pass.
needs_cpu_bf16 = pytest.mark.skipif(not CPU_BF16, reason="needs a CPU with AVX-512 for bf16 recurrent kernels; "
                                                         "this one has AVX2 at most")


@needs_cpu_bf16
def test_bf16_autocast_trains_float32_parameters_close_to_fp32():
    """bf16 has 8 bits of mantissa: after 12 steps the losses are within a few hundredths of fp32's, and
    parameters and optimizer state stay float32."""
    fp32 = reports_of(Trainer(TrainConfig(**SMALL)))
    trainer = Trainer(TrainConfig(**SMALL, precision="bf16"))
    bf16 = reports_of(trainer)
    assert all(p.dtype == torch.float32 for p in trainer.engine.model.parameters())
    for a, b in zip(bf16, fp32, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=0.05)
    assert bf16[-1]["train_loss"] < bf16[0]["train_loss"]


@pytest.mark.skipif(CPU_BF16, reason="this CPU runs bf16 recurrent kernels, so bf16 is not refused here")
def test_bf16_on_a_cpu_without_avx512_is_one_clear_refusal():
    with pytest.raises(RnnlabError, match="--precision bf16 on the CPU needs a CPU with AVX-512"):
        Trainer(TrainConfig(**SMALL, precision="bf16"))


def test_bf16_refusal_follows_the_cpu_features(monkeypatch):
    """Whatever this machine has: without the feature, bf16 on the CPU is refused before any step."""
    monkeypatch.setattr(rtorch, "cpu_bf16_supported", lambda: False)
    with pytest.raises(RnnlabError, match="use --precision fp32 here, or a GPU"):
        Trainer(TrainConfig(**SMALL, precision="bf16"))


# ---- sampling on the device --------------------------------------------------------------------------------

def test_sampling_with_the_torch_model_draws_the_numpy_text(tmp_path):
    trainer = Trainer(TrainConfig(**{**SMALL, "dtype": "float64", "checkpoint_dir": str(tmp_path)}))
    trainer.run()
    checkpoint = load_checkpoint(tmp_path)
    args = (checkpoint.params, checkpoint.model_config, checkpoint.tokenizer)
    forward = rtorch.device_forward(checkpoint.params, checkpoint.model_config, "cpu")
    for seed in range(3):
        assert (sample(*args, np.random.default_rng(seed), length=60, prime="a", forward=forward)
                == sample(*args, np.random.default_rng(seed), length=60, prime="a"))
    run = cli("sample", "--checkpoint", str(tmp_path), "--engine", "torch", "--device", "cpu", "--seed", "4")
    assert run.returncode == 0 and run.stdout == cli("sample", "--checkpoint", str(tmp_path), "--seed", "4").stdout


# ---- on a GPU ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
@on_cuda
def test_cuda_follows_the_cpu_run_in_float64(cell):
    """cuDNN in float64 against the CPU: the same reports to 1e-9 (only summation orders differ)."""
    settings = {**SMALL, "cell": cell, "dtype": "float64"}
    on_cpu = reports_of(Trainer(TrainConfig(**settings)))
    on_gpu = reports_of(Trainer(TrainConfig(**{**settings, "device": "cuda"})))
    for a, b in zip(on_gpu, on_cpu, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-9)


@on_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_step_never_waits_for_the_device_and_keeps_everything_there(precision):
    """torch.cuda.set_sync_debug_mode("error") raises on any host-device synchronisation: 20 steps between
    two loss reads make none. Parameters, optimizer moments and the carried state are on the GPU."""
    trainer = Trainer(TrainConfig(**{**SMALL, "dataset": "shakespeare", "device": "cuda", "precision": precision,
                                     "iterations": 100}))
    trainer.advance()                                   # the first step allocates the optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(20):
            trainer.advance()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    engine = trainer.engine
    assert all(p.is_cuda for p in engine.model.parameters()) and all(s.is_cuda for s in trainer.state)
    assert all(t.is_cuda for state in engine.optimizer.state.values() for k, t in state.items() if k != "step")
    trainer.read_losses()
    assert np.isfinite(trainer.smooth_loss)


@on_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_trains_close_to_fp32(precision):
    fp32 = reports_of(Trainer(TrainConfig(**{**SMALL, "device": "cuda"})))
    mixed = reports_of(Trainer(TrainConfig(**{**SMALL, "device": "cuda", "precision": precision})))
    for a, b in zip(mixed, fp32, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=0.05)


@on_cuda
def test_a_cuda_index_beyond_the_machine_is_refused():
    with pytest.raises(RnnlabError, match="this machine has"):
        rtorch.resolve_device(f"cuda:{torch.cuda.device_count()}")
