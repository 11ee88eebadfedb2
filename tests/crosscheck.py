"""Shared helpers for the framework cross-checks (tests/frameworks/test_vs_torch.py, test_vs_keras.py and
test_frameworks_engines.py): the small model sizes, tolerances and configs they compare at, the
random parameters, padded batch and nonzero initial state fed to both sides, the NumPy reference
gradients, the dict comparison, and the engine-against-NumpyEngine comparisons (step by step, optimizer
state, resuming from a NumPy checkpoint).

Not a test module (pytest does not collect it); tests/ is on sys.path under pytest's default rootdir /
prepend import mode, so the test files ``from crosscheck import ...``. It imports neither torch nor
TensorFlow: each test file does its own ``pytest.importorskip`` first, and the one fixture that touches
torch imports it lazily and only if it is installed.
"""

import numpy as np
import pytest

from rnnlab.data.batches import Batch
from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.nn.cells import CELLS
from rnnlab.nn.output import output_layer_grads, project_logit_grad_to_hidden
from rnnlab.training.engines import NumpyEngine
from rnnlab.training.trainer import TrainConfig

V, H, T, B = 7, 4, 5, 3
TOL = dict(rtol=1e-10, atol=1e-12)
CONFIGS = [charmodel.ModelConfig(V, cell, H, layers) for cell in sorted(CELLS) for layers in (1, 2)]
# the residual block (block.py) around every cell, both normalisations, two layers, a feed-forward of 2H
BLOCK_CONFIGS = [charmodel.ModelConfig(V, cell, H, 2, block="residual", norm=norm, ffn_mult=2)
                 for cell in sorted(CELLS) for norm in ("rms", "layer")]
NO_CLIP = TrainConfig(clip_value=None, clip_norm=None)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Models this small gain nothing from threads, and on a shared 2-core machine torch's waiting
    threads can make a step 10-50x slower; restored after each test. A no-op without torch.

    autouse in every test module that imports it (``from crosscheck import one_torch_thread``)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_id(config):
    block = f"-residual-{config.norm}" if config.block == "residual" else ""
    return f"{config.cell}-{config.num_layers}layer{block}"


def random_params(config, seed=0):
    """init_params plus N(0, 0.3) noise on every array: every bias nonzero (zero biases hide bias bugs)."""
    rng = np.random.default_rng(seed)
    params = charmodel.init_params(config, rng, np.float64)
    return {name: value + 0.3 * rng.standard_normal(value.shape) for name, value in params.items()}


def random_batch(seed=1):
    """(T, B) ids and targets, and a mask with padding at the end of columns 0 and 1 (as pad_sequences makes)."""
    rng = np.random.default_rng(seed)
    mask = np.ones((T, B))
    mask[3:, 0] = 0.0
    mask[4:, 1] = 0.0
    return Batch(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)), mask, False, 0)


def random_state(config, seed=2):
    """A nonzero initial state: per layer a tuple of (B, H) arrays, (h,) or (h, c)."""
    rng = np.random.default_rng(seed)
    return [tuple(0.5 * rng.standard_normal((B, H)) for _ in range(CELLS[config.cell].n_states))
            for _ in range(config.num_layers)]


def numpy_grads(params, config, ids, state, dy):
    """rnnlab's gradients for an arbitrary upstream gradient dy = dL/dlogits (T, B, V)."""
    _, _, cache = charmodel.forward(params, config, ids, state)
    grads = charmodel.backward(project_logit_grad_to_hidden(dy, params["Wy"]), cache, params, config)
    grads.update(output_layer_grads(dy, cache.top_hidden))
    return grads


def assert_dicts_close(actual, expected, **tol):
    """The same keys, and every array close: ``tol`` (rtol/atol) if given, else TOL."""
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], err_msg=name, **(tol or TOL))


def run_both(engine, reference, batch, steps):
    """``steps`` training steps of both engines on ``batch``, carrying each one's state; compares the
    parameters after every step."""
    state, ref_state = engine.zero_state(B), reference.zero_state(B)
    for step in range(steps):
        loss, state = engine.train_step(batch, state)
        ref_loss, ref_state = reference.train_step(batch, ref_state)
        assert loss == pytest.approx(ref_loss, rel=1e-10), step
        # A few ulps per step on each side, compounded over 10 steps and amplified on small entries by the
        # adaptive optimizers' division by sqrt(v): observed ~1e-14 relative, 2e-12 at worst; 1e-9 keeps a
        # margin of 500 and still catches a float32-rounded hyper-parameter (~1e-8, see keras.py).
        assert_dicts_close(engine.numpy_params(), reference.params, rtol=1e-9, atol=1e-12)


def assert_optimizer_trajectories_match(engine_class, config, optimizer, steps):
    """``steps`` steps of ``engine_class`` and NumpyEngine from the same random_params on random_batch():
    the same parameters after every step (run_both), and the same optimizer state at the end."""
    params = random_params(config)
    engine = engine_class(config, params, optimizer, NO_CLIP, np.random.default_rng(0))
    reference = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, optimizer, NO_CLIP, None)
    run_both(engine, reference, random_batch(), steps)
    state, expected = engine.optimizer_state(), reference.optimizer_state()
    assert state.keys() == expected.keys() and state["step"] == expected["step"] == steps
    for slot in set(expected) - {"step"}:
        assert_dicts_close(state[slot], expected[slot], rtol=1e-9, atol=1e-12)


def assert_resumes_numpy_trajectory(engine_class, config, optimizer):
    """3 NumpyEngine steps, then an ``engine_class`` engine built from other weights load_state()s NumPy's
    parameters, optimizer moments and step count (a checkpoint resume): its next step equals NumPy's."""
    batch = random_batch()
    reference = NumpyEngine(config, random_params(config), optimizer, NO_CLIP, None)
    state = reference.zero_state(B)
    for _ in range(3):
        _, state = reference.train_step(batch, state)
    engine = engine_class(config, random_params(config, seed=9), optimizer, NO_CLIP, np.random.default_rng(0))
    saved = {k: v if k == "step" else {n: a.copy() for n, a in v.items()} for k, v in reference.opt_state.items()}
    engine.load_state({k: v.copy() for k, v in reference.params.items()}, saved)
    loss, _ = engine.train_step(batch, engine.state_from_numpy(state))
    ref_loss, _ = reference.train_step(batch, state)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert_dicts_close(engine.numpy_params(), reference.params, rtol=1e-9, atol=1e-12)


def assert_option_refused_in_one_line(engine_class, optimizer, option):
    """A framework engine that cannot reproduce an rnnlab optimizer option says so, in one line naming it."""
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    with pytest.raises(RnnlabError, match=option) as err:
        engine_class(config, random_params(config), optimizer, NO_CLIP, np.random.default_rng(0))
    assert "\n" not in str(err.value)
