"""The framework engines behind rnnlab's engine interface: lazy imports, training through the Trainer,
and one step of each engine agreeing with the NumPy engine."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from crosscheck import (
    one_torch_thread,  # noqa: F401 (an autouse fixture: used by being imported)
    random_params,
)
from rnnlab.data.batches import Batch
from rnnlab.errors import RnnlabError
from rnnlab.frameworks import engine_optimizer_options, reorder_gates
from rnnlab.nn import model as charmodel
from rnnlab.nn.optim import OPTIMIZERS, Adagrad, Adam, make_optimizer
from rnnlab.training.config import ENGINES
from rnnlab.training.engines import ENGINE_MODULES, NumpyEngine, engine_class
from rnnlab.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.slow      # imports TensorFlow (and trains through each engine)

FRAMEWORK_ENGINES = ["torch", "keras-fit", "keras-tape", "keras-class"]
PACKAGE = {"torch": "torch", "keras-fit": "tensorflow", "keras-tape": "tensorflow", "keras-class": "tensorflow"}
V, H, T, B = 7, 5, 6, 3          # this file's own sizes, not crosscheck's


def need(engine):
    pytest.importorskip(PACKAGE[engine])
    if PACKAGE[engine] == "tensorflow":
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")   # each test builds new tf.functions: retracing warnings are expected
    return engine_class(engine)


def two_windows():
    """A padded batch (a fresh start), then the next window of a stream (the state carried into it)."""
    rng = np.random.default_rng(1)
    mask = np.ones((T, B))
    mask[4:, 0] = 0.0
    first = Batch(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)), mask, True, 0)
    second = Batch(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)), None, False, 0)
    return first, second


def adam_for(engine):
    """Adam with the eps placement the engine's framework uses (torch: eps_hat False, Keras: True)."""
    return Adam(lr=0.01, eps_hat=engine.startswith("keras"))


# ---- without the frameworks ------------------------------------------------------------------------------

def test_reorder_gates_moves_whole_blocks():
    W = np.arange(12).reshape(2, 6)                                   # 3 gate blocks of width 2
    moved = reorder_gates(W, ("r", "z", "n"), ("z", "r", "n"))
    np.testing.assert_array_equal(moved, [[2, 3, 0, 1, 4, 5], [8, 9, 6, 7, 10, 11]])
    np.testing.assert_array_equal(reorder_gates(moved, ("z", "r", "n"), ("r", "z", "n")), W)


BLOCKED = """
import json, sys
for name in ("torch", "tensorflow", "keras"):
    sys.modules[name] = None                       # as if not installed
import rnnlab.frameworks
from rnnlab.training.engines import engine_class
from rnnlab.errors import RnnlabError
messages = {}
for name in ("torch", "keras-fit", "keras-tape", "keras-class"):
    try:
        engine_class(name)
    except RnnlabError as err:
        messages[name] = str(err)
for name in ("torch", "keras"):
    try:
        rnnlab.frameworks.load_framework(name)
    except RnnlabError as err:
        messages[name] = str(err)
print(json.dumps(messages))
"""


def test_without_torch_or_tensorflow_a_framework_engine_is_a_one_line_error_naming_the_extra():
    result = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    messages = json.loads(result.stdout)
    assert "pip install 'rnnlab[torch]'" in messages["torch"] == messages["torch"].strip()
    for name in ("keras-fit", "keras-tape", "keras-class", "keras"):
        assert "pip install 'rnnlab[tf]'" in messages[name] and "\n" not in messages[name]


def test_importing_the_frameworks_package_imports_no_framework():
    code = "import sys, rnnlab.frameworks; print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


# ---- through the Trainer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine, cell", [("torch", "lstm"), ("keras-fit", "gru"), ("keras-tape", "rnn"),
                                          ("keras-class", "lstm")])
def test_engine_trains_dinos_through_the_trainer(engine, cell):
    """25 steps of batch 8 from the same Trainer as the numpy engine (data, validation, samples): the loss
    falls from about ln 27 = 3.30 nats by well over step-to-step noise. Momentum: the optimizer every
    framework reproduces with rnnlab's default options."""
    need(engine)
    losses = []
    trainer = Trainer(TrainConfig(dataset="dinos", engine=engine, cell=cell, hidden_size=16, batch_size=8,
                                  optimizer="momentum", learning_rate=0.5, iterations=25, sample_every=25,
                                  num_samples=2),
                      on_progress=lambda progress: losses.append(progress.loss))
    report = trainer.run()
    assert losses[0] == pytest.approx(math.log(27), abs=0.15)
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.3, losses
    assert report.val_loss < losses[0] - 0.3
    assert len(report.samples) == 2
    assert set(trainer.params) == set(charmodel.init_params(trainer.model_config, np.random.default_rng(0)))


@pytest.mark.parametrize("engine", ["torch", "keras-tape"])
def test_cli_trains_a_framework_engine_and_writes_the_metrics_file(engine, tmp_path, capsys):
    """The same command line, flags and metrics file as the numpy engine."""
    need(engine)
    from rnnlab.cli import main
    metrics = tmp_path / "metrics.jsonl"
    code = main(["train", "--engine", engine, "--dataset", "dinos", "--cell", "gru", "--hidden_size", "8",
                 "--batch_size", "8", "--optimizer", "momentum", "--iterations", "4", "--sample_every", "2",
                 "--num_samples", "1", "--metrics_file", str(metrics), "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and all(math.isfinite(r["val_loss"]) for r in records)


@pytest.mark.parametrize("engine", ["torch", "keras-tape"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_engine_optimizer_options_make_every_optimizer_runnable(engine, optimizer):
    """With the options from engine_optimizer_options, every optimizer runs on every framework -- except
    Keras' Adagrad until rnnlab's Adagrad has eps_inside_sqrt, which the engine names."""
    cls = need(engine)
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    rnnlab_optimizer = make_optimizer(optimizer, None, **engine_optimizer_options(engine, optimizer))
    if engine.startswith("keras") and optimizer == "adagrad" and "eps_inside_sqrt" not in Adagrad.__dataclass_fields__:
        with pytest.raises(RnnlabError, match="eps_inside_sqrt"):
            cls(config, random_params(config), rnnlab_optimizer, TrainConfig(), np.random.default_rng(0))
        return
    cls(config, random_params(config), rnnlab_optimizer, TrainConfig(), np.random.default_rng(0))


def test_keras_fit_cannot_clip_by_value_and_by_norm_together():
    need("keras-fit")
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    params = charmodel.init_params(config, np.random.default_rng(0), np.float64)
    with pytest.raises(RnnlabError, match="--clip_norm"):
        engine_class("keras-fit")(config, params, Adam(eps_hat=True), TrainConfig(clip_value=1.0, clip_norm=1.0),
                                  np.random.default_rng(0))


# ---- one step, every engine against numpy ----------------------------------------------------------------

@pytest.mark.parametrize("engine", FRAMEWORK_ENGINES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_engine_step_equals_the_numpy_engine_step(engine, cell):
    """The same params, batch and optimizer: the same loss, final state and updated params, for two steps
    (the second starts from the carried state). Both clips on (keras-fit: Keras allows only one).
    float64; keras-fit reports its loss through a float32 metric, hence rel 1e-6 for it."""
    cls = need(engine)
    config = charmodel.ModelConfig(V, cell, H, 2)
    clip = (TrainConfig(clip_value=0.02, clip_norm=None) if engine == "keras-fit"
            else TrainConfig(clip_value=0.02, clip_norm=0.1))
    optimizer = adam_for(engine)
    params = random_params(config)
    framework = cls(config, params, optimizer, clip, np.random.default_rng(0))
    numpy = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, optimizer, clip, None)
    state, ref_state = framework.zero_state(B), numpy.zero_state(B)
    for batch in two_windows():
        loss, state = framework.train_step(batch, state)
        ref_loss, ref_state = numpy.train_step(batch, ref_state)
        assert loss == pytest.approx(ref_loss, rel=1e-6 if engine == "keras-fit" else 1e-10)
        for layer, ref_layer in zip(framework.state_to_numpy(state), ref_state, strict=True):
            for part, ref_part in zip(layer, ref_layer, strict=True):
                np.testing.assert_allclose(part, ref_part, rtol=1e-10, atol=1e-12)
        for name, value in framework.numpy_params().items():
            np.testing.assert_allclose(value, numpy.params[name], rtol=1e-9, atol=1e-12, err_msg=name)
    loss, _ = framework.evaluate(two_windows()[0], framework.zero_state(B))
    assert loss == pytest.approx(numpy.evaluate(two_windows()[0], numpy.zero_state(B))[0], rel=1e-10)


@pytest.mark.parametrize("engine", FRAMEWORK_ENGINES)
def test_dropout_between_layers_is_seeded_from_the_dropout_generator(engine):
    """Dropout 0.5 between 2 layers: two engines with equally seeded Generators train identically, the
    training loss differs from the dropout-free one, and evaluation runs without dropout."""
    cls = need(engine)
    config = charmodel.ModelConfig(V, "gru", H, 2, dropout=0.5)
    optimizer, params, batch = adam_for(engine), random_params(config), two_windows()[1]
    reference = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, optimizer, TrainConfig(), None)
    no_dropout = reference.evaluate(batch, reference.zero_state(B))[0]
    runs = []
    for _ in range(2):
        framework = cls(config, {k: v.copy() for k, v in params.items()}, optimizer, TrainConfig(),
                        np.random.default_rng(7))
        assert framework.evaluate(batch, framework.zero_state(B))[0] == pytest.approx(no_dropout, rel=1e-10)
        runs.append([framework.train_step(batch, framework.zero_state(B))[0] for _ in range(3)])
    assert runs[0] == runs[1]
    assert abs(runs[0][0] - no_dropout) > 1e-4


def test_every_engine_is_listed():
    assert set(FRAMEWORK_ENGINES) | {"numpy"} == set(ENGINES) == set(ENGINE_MODULES)   # --engine's choices
