"""Batch shards on threads (parallel.py) compute the unsplit step's numbers (float64).

The reference is ``model.loss_and_grads`` / ``model.evaluate_loss`` on the whole batch -- the readable path
that ``--threads 1`` runs. The shards compute the same sums split into per-shard partial sums and added in
shard order, so only float64 rounding separates them: rtol 1e-12 (atol 1e-15 for gradients that are zero
up to rounding)."""

import numpy as np
import pytest

from rnnlab.data.batches import Batch
from rnnlab.errors import RnnlabError
from rnnlab.nn.cells import CELLS
from rnnlab.nn.model import ModelConfig, evaluate_loss, init_params, loss_and_grads, zero_state
from rnnlab.nn.optim import make_optimizer
from rnnlab.training import parallel
from rnnlab.training.engines import NumpyEngine
from rnnlab.training.parallel import ShardedSteps, plan_shards
from rnnlab.training.trainer import TrainConfig

RTOL, ATOL = 1e-12, 1e-15


def random_setup(cell, dropout=0.0, batch=7, T=6, V=9, H=5, seed=0, block="plain"):
    """A 2-layer model with nonzero biases, a padded batch (different lengths, some all-padding positions)
    and a random carried state."""
    config = ModelConfig(vocab_size=V, cell=cell, hidden_size=H, num_layers=2, dropout=dropout, block=block)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(scale=0.1, size=v.shape) for k, v in init_params(config, rng, np.float64).items()}
    ids = rng.integers(0, V, size=(T + 1, batch))
    lengths = rng.integers(1, T + 1, size=batch)
    lengths[0] = T
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)    # (T, B) like pad_sequences
    state = [tuple(rng.normal(size=part.shape) for part in layer) for layer in zero_state(config, batch, np.float64)]
    return config, params, Batch(ids[:-1], ids[1:], mask, False, 0), state


def assert_same_step(reference, sharded):
    (loss_a, grads_a, state_a), (loss_b, grads_b, state_b) = reference, sharded
    assert loss_b == pytest.approx(loss_a, rel=RTOL)
    assert grads_b.keys() == grads_a.keys()
    for name in grads_a:
        np.testing.assert_allclose(grads_b[name], grads_a[name], rtol=RTOL, atol=ATOL, err_msg=name)
    for layer_a, layer_b in zip(state_a, state_b, strict=True):
        for part_a, part_b in zip(layer_a, layer_b, strict=True):
            np.testing.assert_allclose(part_b, part_a, rtol=RTOL)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("threads", [2, 3])
def test_sharded_step_equals_unsplit_step(cell, threads):
    """Every cell, 2 layers, a padded batch of 7 with masks (shards of 4/3 or 2/3/2 rows holding different
    numbers of real characters), a carried state: loss, every gradient and the final state are the unsplit
    step's, twice in a row (the shards' workspaces reused)."""
    config, params, batch, state = random_setup(cell)
    steps = ShardedSteps(threads, min_rows=1)
    assert len(steps.plan(7)) == threads
    for _ in range(2):
        reference = loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask)
        assert_same_step(reference, steps.loss_and_grads(params, config, batch, state))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sharded_step_with_dropout_uses_the_unsplit_masks(cell):
    """With dropout, equality means: the same Generator state in gives the same masks -- drawn once for the
    whole batch in the unsplit step's order, each shard taking its rows -- hence the same loss, gradients
    and final state, and the same Generator state out (a run resumes identically whatever --threads)."""
    config, params, batch, state = random_setup(cell, dropout=0.4, seed=1)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    reference = loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask, rng_a)
    sharded = ShardedSteps(2, min_rows=1).loss_and_grads(params, config, batch, state, rng_b)
    assert_same_step(reference, sharded)
    assert rng_b.bit_generator.state == rng_a.bit_generator.state


@pytest.mark.parametrize("cell", ["gru", "mingru", "minlstm"])
def test_sharded_residual_step_with_dropout_equals_the_unsplit_step(cell):
    """The residual block draws two masks per layer; the shards take their rows of the same masks."""
    config, params, batch, state = random_setup(cell, dropout=0.4, seed=5, block="residual")
    params = {k: v + np.random.default_rng(6).normal(scale=0.1, size=v.shape) for k, v in params.items()}  # Wy != 0
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    reference = loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask, rng_a)
    sharded = ShardedSteps(2, min_rows=1).loss_and_grads(params, config, batch, state, rng_b)
    assert_same_step(reference, sharded)
    assert rng_b.bit_generator.state == rng_a.bit_generator.state


def test_sharded_step_without_mask_and_with_an_all_padding_shard():
    """No mask (every position real), and a mask whose last shard is all padding (it adds zero)."""
    config, params, batch, state = random_setup("lstm", seed=2)
    unmasked = Batch(batch.ids, batch.targets, None, False, 0)
    steps = ShardedSteps(2, min_rows=1)
    assert_same_step(loss_and_grads(params, config, unmasked.ids, unmasked.targets, state),
                     steps.loss_and_grads(params, config, unmasked, state))
    mask = batch.mask.copy()
    mask[:, 4:] = 0.0
    padded = Batch(batch.ids, batch.targets, mask, False, 0)
    assert_same_step(loss_and_grads(params, config, padded.ids, padded.targets, state, mask),
                     steps.loss_and_grads(params, config, padded, state))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sharded_validation_equals_unsplit(cell):
    config, params, batch, state = random_setup(cell, seed=3)
    loss_a, state_a = evaluate_loss(params, config, batch.ids, batch.targets, state, batch.mask)
    loss_b, state_b = ShardedSteps(3, min_rows=2).evaluate(params, config, batch, state)
    assert loss_b == pytest.approx(loss_a, rel=RTOL)
    for layer_a, layer_b in zip(state_a, state_b, strict=True):
        for part_a, part_b in zip(layer_a, layer_b, strict=True):
            np.testing.assert_allclose(part_b, part_a, rtol=RTOL)


def test_engine_with_threads_trains_like_one_thread():
    """Five NumpyEngine steps (Adam, clip-norm, dropout, carried state) with 2 threads and sharding forced
    end where the --threads 1 engine ends: the same parameters up to float64 rounding."""
    config, params, batch, state = random_setup("lstm", dropout=0.3, seed=4)
    engines = []
    for threads in (1, 2):
        train_config = TrainConfig(threads=threads, clip_value=None, clip_norm=1.0)
        engine = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, make_optimizer("adam", 1e-2),
                             train_config, np.random.default_rng(5), shard_rows=1)
        carried = state
        for _ in range(5):
            _, carried = engine.train_step(batch, carried)
        engines.append(engine)
    assert len(engines[0].shards.plan(7)) == 1 and len(engines[1].shards.plan(7)) == 2
    for name in params:
        np.testing.assert_allclose(engines[1].params[name], engines[0].params[name], rtol=1e-10, err_msg=name)


def test_plan_shards_splits_evenly_and_only_big_enough_batches():
    assert parallel.min_shard_rows(256) == 32 and parallel.min_shard_rows(512) == 16
    assert parallel.min_shard_rows(100_000) == 1
    assert plan_shards(64, 2, 8) == [slice(0, 32), slice(32, 64)]
    assert plan_shards(7, 3, 1) == [slice(0, 2), slice(2, 5), slice(5, 7)]
    assert plan_shards(15, 2, 8) == [slice(0, 15)]                 # two shards would have 7 rows < 8
    assert plan_shards(64, 1, 8) == [slice(0, 64)]
    assert plan_shards(1, 16, 8) == [slice(0, 1)]


def test_without_threadpoolctl_the_step_is_never_split(monkeypatch):
    """BLAS threads cannot be limited without threadpoolctl: shards would fight BLAS's own threads."""
    monkeypatch.setattr(parallel, "_controller", False)
    assert plan_shards(64, 2, 8) == [slice(0, 64)]


def test_threads_default_is_the_cores_available_and_must_be_positive():
    assert parallel.resolve_threads(None) == parallel.available_cores() >= 1
    assert parallel.resolve_threads(3) == 3
    with pytest.raises(RnnlabError, match="--threads must be > 0"):
        TrainConfig(threads=0)


@pytest.mark.slow
def test_threads_flag_is_validated_on_the_command_line():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "--threads", "0", "--iterations", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--threads must be > 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
