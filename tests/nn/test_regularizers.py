"""The regularisers (nn/regularizers.py and where model.py / recurrence.py apply them): each gradient against
finite differences in float64, the masks' shapes and meaning, evaluation, batch shards, and that a default
step draws nothing new.

Finite differences: central, eps = 1e-6 (finite_differences.EPS), relative error < 1e-6 (BOUND), float64,
random nonzero parameters and biases, a padded batch and a random carried state. The random draws of the
step are made once (``draw_masks``) and handed to both the analytic gradient and every evaluation of the
objective, so the function being differentiated is deterministic."""

import numpy as np
import pytest

from finite_differences import BOUND, EPS, nonzero_like
from rnnlab.data.batches import Batch
from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.nn.cells import CELLS
from rnnlab.nn.gradcheck import numerical_gradient, relative_error
from rnnlab.nn.recurrence import sequence_backward, sequence_forward
from rnnlab.nn.regularizers import activation_penalty, zoneout_mix, zoneout_mix_backward
from rnnlab.training.parallel import ShardedSteps

# every regulariser alone, then all of them together
REGULARIZERS = {
    "dropout_input": dict(dropout_input=0.4),
    "dropout_output": dict(dropout_output=0.4),
    "locked_dropout": dict(dropout=0.4, locked_dropout=True),
    "weight_drop": dict(weight_drop=0.4),
    "zoneout": dict(zoneout=0.3),
    "zoneout_cell": dict(zoneout=0.2, zoneout_cell=0.5),
    "ar": dict(ar=2.0),
    "tar": dict(tar=1.5),
    "all": dict(dropout_input=0.3, dropout_output=0.3, dropout=0.3, locked_dropout=True, weight_drop=0.3,
                zoneout=0.2, zoneout_cell=0.4, ar=2.0, tar=1.0),
}
STEPPED = ("rnn", "lstm", "gru")          # zoneout needs a cell stepped one character at a time


def settings_for(cell: str, name: str) -> dict:
    """The regulariser's settings, without zoneout for the min cells (refused: see the last tests)."""
    settings = dict(REGULARIZERS[name])
    if cell not in STEPPED:
        settings.pop("zoneout", None)
        settings.pop("zoneout_cell", None)
    return settings


def setup(cell, block="plain", T=4, B=3, V=6, H=3, seed=0, **settings):
    config = charmodel.ModelConfig(vocab_size=V, cell=cell, hidden_size=H, num_layers=2, block=block, **settings)
    rng = np.random.default_rng(seed)
    params = nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)
    ids, targets = rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))
    mask = np.ones((T, B))
    mask[2:, 1] = 0.0                                            # the second sequence is 2 characters long
    state = [tuple(rng.normal(size=(B, H)) for _ in range(CELLS[cell].n_states)) for _ in range(2)]
    return config, params, ids, targets, mask, state


def assert_gradient_matches_finite_differences(config, params, ids, targets, mask, state, masks):
    def objective():
        return charmodel.regularized_loss(params, config, ids, targets, state, mask, masks)

    _, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, state, mask, masks=masks)
    assert grads.keys() == params.keys()
    for name, value in params.items():
        assert relative_error(grads[name], numerical_gradient(objective, value, EPS)) < BOUND, name


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_regularizer_gradient_matches_finite_differences(cell, name):
    """loss_and_grads under each regulariser (and all together), 2 plain layers, with the step's masks:
    every parameter's gradient is that of L + L_AR + L_TAR (regularized_loss)."""
    config, params, ids, targets, mask, state = setup(cell, **settings_for(cell, name))
    masks = charmodel.draw_masks(config, ids.shape, np.random.default_rng(11), np.float64)
    draws = name not in ("ar", "tar") and (cell in STEPPED or not name.startswith(("zoneout", "weight")))
    assert (masks is not None) == draws             # the min cells have no W_h to drop and refuse zoneout
    assert_gradient_matches_finite_differences(config, params, ids, targets, mask, state, masks)


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
def test_every_regularizer_in_the_residual_block_matches_finite_differences(cell):
    """The residual block with all of them: character dropout on the embedding's rows, locked dropout on the
    branches, weight drop, zoneout (stepped cells), AR and TAR on the last layer's recurrent output, output
    dropout after the final norm."""
    config, params, ids, targets, mask, state = setup(cell, block="residual", **settings_for(cell, "all"))
    masks = charmodel.draw_masks(config, ids.shape, np.random.default_rng(12), np.float64)
    assert_gradient_matches_finite_differences(config, params, ids, targets, mask, state, masks)


@pytest.mark.parametrize("cell", STEPPED)
def test_zoneouts_expectation_at_evaluation_has_the_right_gradient(cell):
    """Without masks (evaluation, or a step called without a Generator) zoneout mixes with the rate itself,
    Z = p: a deterministic function whose gradient the same loop computes."""
    config, params, ids, targets, mask, state = setup(cell, zoneout=0.3, zoneout_cell=0.6, ar=1.0, tar=1.0)
    assert_gradient_matches_finite_differences(config, params, ids, targets, mask, state, None)


def test_activation_penalty_value_and_gradient():
    """L_AR + L_TAR by its definition (the mean over the M real characters and H units; TAR within the
    window, t >= 2), and its gradient against finite differences."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=(5, 3, 4))
    mask = np.ones((5, 3))
    mask[3:, 2] = 0.0
    M = mask.sum()
    ar = sum(mask[t, b] * (h[t, b] ** 2).sum() for t in range(5) for b in range(3)) / (M * 4)
    tar = sum(mask[t, b] * ((h[t, b] - h[t - 1, b]) ** 2).sum() for t in range(1, 5) for b in range(3)) / (M * 4)
    value, dh = activation_penalty(h, mask, M, 2.0, 0.5)
    assert value == pytest.approx(2.0 * ar + 0.5 * tar, rel=1e-12)
    numeric = numerical_gradient(lambda: activation_penalty(h, mask, M, 2.0, 0.5)[0], h, EPS)
    assert relative_error(dh, numeric) < BOUND


def test_zoneout_mix_and_its_backward():
    """s = Z s_prev + (1 - Z) s_new; its backward splits ds into (1 - Z) ds and Z ds; Z = 1 keeps the previous
    value exactly, Z = 0 takes the new one."""
    rng = np.random.default_rng(1)
    prev, new, ds = rng.normal(size=(3, 2, 4))
    z = rng.random((2, 4)) < 0.5
    out = zoneout_mix(prev, new, z, np.empty_like(prev))
    np.testing.assert_array_equal(out, np.where(z, prev, new))
    d_new, d_prev = zoneout_mix_backward(ds, z)
    np.testing.assert_array_equal(d_new, ds * (1 - z))
    np.testing.assert_array_equal(d_prev, ds * z)
    expectation = zoneout_mix(prev, new, 0.3, np.empty_like(prev))      # rounding of two forms: atol 1e-15
    np.testing.assert_allclose(expectation, 0.3 * prev + 0.7 * new, rtol=0, atol=1e-15)


@pytest.mark.parametrize("cell", STEPPED)
def test_a_unit_zoned_out_at_every_step_keeps_its_state(cell):
    """Z true for a unit at every step: that unit of every state part stays at its initial value through the
    whole sequence. Z true everywhere: the state never changes, no gradient reaches the cells' steps (dzx = 0)
    and each step's upstream gradient passes straight back to the initial state."""
    rng = np.random.default_rng(2)
    c = CELLS[cell]
    p = nonzero_like(c.init(4, 3, rng), rng)
    T, B, H = 5, 2, 3
    zx = rng.normal(size=(T, B, c.n_gates * H))
    state0 = tuple(rng.normal(size=(B, H)) for _ in range(c.n_states))
    z = np.zeros((T, B, H), dtype=bool)
    z[:, :, 1] = True                                            # unit 1 never changes
    hs, final, cache = sequence_forward(c, zx.copy(), state0, p, zoneout=(z,) * c.n_states)
    np.testing.assert_array_equal(hs[:, :, 1], np.broadcast_to(state0[0][:, 1], (T, B)))
    for part, start in zip(final, state0, strict=True):
        np.testing.assert_array_equal(part[:, 1], start[:, 1])
    z[:] = True
    _, _, cache = sequence_forward(c, zx.copy(), state0, p, zoneout=(z,) * c.n_states)
    dzx, _, dstate0 = sequence_backward(c, np.ones((T, B, H)), cache, p)
    assert not dzx.any()
    np.testing.assert_array_equal(dstate0[0], np.full((B, H), float(T)))


def test_zoneout_at_evaluation_is_the_expectation():
    """One GRU layer evaluated with zoneout p: h_t = p h_{t-1} + (1 - p) GRU(x_t, h_{t-1}), step by step."""
    config = charmodel.ModelConfig(vocab_size=5, cell="gru", hidden_size=4, zoneout=0.25)
    rng = np.random.default_rng(3)
    params = nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)
    ids = rng.integers(0, 5, size=(6, 2))
    logits, (final,), _ = charmodel.forward(params, config, ids, charmodel.zero_state(config, 2, np.float64))
    gru, p = CELLS["gru"], charmodel.layer_params(params, 0)
    h = np.zeros((2, 4))
    for t in range(6):
        (h_new,), _ = gru.step_forward((p["Wx"] + p["b"])[ids[t]], (h,), p)
        h = 0.25 * h + 0.75 * h_new
        np.testing.assert_allclose(logits[t], h @ params["Wy"] + params["by"], rtol=1e-12)
    np.testing.assert_allclose(final[0], h, rtol=1e-12)


def test_locked_masks_are_one_per_sequence_and_output_dropout_zeroes_a_unit_at_every_step():
    """Locked dropout's masks have no time axis ((1, B, H); the characters' (B, V)); a unit the output mask
    drops is zero in what the output layer reads at every step of that sequence."""
    config = charmodel.ModelConfig(vocab_size=7, cell="lstm", hidden_size=8, num_layers=3, dropout=0.5,
                                   locked_dropout=True, dropout_input=0.5, dropout_output=0.5)
    masks = charmodel.draw_masks(config, (9, 4), np.random.default_rng(0), np.float32)
    assert [m.shape for m in masks.dropout] == [(1, 4, 8)] * 2
    assert masks.inputs.shape == (4, 7) and masks.output.shape == (1, 4, 8)
    params = charmodel.init_params(config, np.random.default_rng(1))
    ids = np.random.default_rng(2).integers(0, 7, size=(9, 4))
    _, _, cache = charmodel.forward(params, config, ids, charmodel.zero_state(config, 4), masks=masks)
    dropped = masks.output[0] == 0                               # (B, H)
    assert dropped.any()
    assert np.all(cache.top_hidden[:, dropped] == 0)
    assert np.any(cache.top_recurrent[:, dropped] != 0)                 # the layer itself computed them


def test_character_dropout_drops_a_character_type_for_the_whole_sequence():
    """With the characters' mask D (B, V), layer 0's input row is D[b, id] Wx[id] + b: a dropped character
    contributes only the bias wherever it occurs in that sequence."""
    config = charmodel.ModelConfig(vocab_size=4, cell="rnn", hidden_size=3, num_layers=1, dropout_input=0.5)
    rng = np.random.default_rng(4)
    params = nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)
    ids = np.array([[0, 1], [2, 1], [0, 3], [0, 1]])
    inputs = np.array([[0.0, 2.0, 2.0, 0.0], [2.0, 2.0, 0.0, 2.0]])   # sequence 0 drops 0 and 3; 1 drops 2
    masks = charmodel.StepMasks(inputs=inputs)
    _, _, cache = charmodel.forward(params, config, ids, charmodel.zero_state(config, 2, np.float64), masks=masks)
    np.testing.assert_array_equal(cache.input_scale, [[0.0, 2.0], [2.0, 2.0], [0.0, 2.0], [0.0, 2.0]])


def test_weight_drop_leaves_evaluation_alone_and_masks_the_recurrent_gradient():
    """Evaluation reads W_h itself (the model without weight drop computes the same logits); a training step
    reads W_h * M, so entries that M drops get exactly zero gradient."""
    config = charmodel.ModelConfig(vocab_size=6, cell="lstm", hidden_size=4, num_layers=2, weight_drop=0.5)
    rng = np.random.default_rng(5)
    params = nonzero_like(charmodel.init_params(config, rng, dtype=np.float64), rng)
    ids, targets = rng.integers(0, 6, size=(5, 3)), rng.integers(0, 6, size=(5, 3))
    zero = charmodel.zero_state(config, 3, np.float64)
    plain = charmodel.ModelConfig(vocab_size=6, cell="lstm", hidden_size=4, num_layers=2)
    np.testing.assert_array_equal(charmodel.forward(params, config, ids, zero)[0],
                                  charmodel.forward(params, plain, ids, zero)[0])
    masks = charmodel.draw_masks(config, ids.shape, np.random.default_rng(0), np.float64)
    _, grads, _ = charmodel.loss_and_grads(params, config, ids, targets, zero, masks=masks)
    for layer in range(2):
        dropped = masks.weights[layer] == 0
        assert dropped.any() and np.all(grads[f"l{layer}.Wh"][dropped] == 0)
        assert np.all(grads[f"l{layer}.Wh"][~dropped] != 0)


def test_a_default_step_draws_nothing_new():
    """Every regulariser off: no masks at all; --dropout alone: exactly its between-layer masks (what the
    step always drew), so the default run's numbers are unchanged."""
    config = charmodel.ModelConfig(vocab_size=6, cell="gru", hidden_size=4, num_layers=3)
    rng = np.random.default_rng(0)
    assert charmodel.draw_masks(config, (5, 2), rng, np.float32) is None
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    dropout = charmodel.ModelConfig(vocab_size=6, cell="gru", hidden_size=4, num_layers=3, dropout=0.5)
    masks = charmodel.draw_masks(dropout, (5, 2), np.random.default_rng(0), np.float32)
    expected = np.random.default_rng(0)
    for mask in masks.dropout:
        np.testing.assert_array_equal(mask, (expected.random((5, 2, 4)) < 0.5).astype(np.float32) / 0.5)
    assert (masks.inputs, masks.output, masks.weights, masks.zoneout) == (None, None, None, None)


@pytest.mark.parametrize("cell", ["lstm", "gru", "minlstm"])
@pytest.mark.parametrize("block", ["plain", "residual"])
def test_sharded_step_with_every_regularizer_equals_the_unsplit_step(cell, block):
    """The masks are drawn once for the batch and each shard takes its rows (W_h's mask whole); AR and TAR
    divide by the whole batch's M: loss, gradients, final state and the Generator's state are the unsplit
    step's (rtol 1e-12: only the summation order differs)."""
    config, params, ids, targets, mask, state = setup(cell, block=block, T=6, B=7, V=9, H=5, seed=3,
                                                      **settings_for(cell, "all"))
    batch = Batch(ids, targets, mask, False, 0)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    reference = charmodel.loss_and_grads(params, config, ids, targets, state, mask, rng_a)
    sharded = ShardedSteps(2, min_rows=1).loss_and_grads(params, config, batch, state, rng_b)
    (loss_a, grads_a, state_a), (loss_b, grads_b, state_b) = reference, sharded
    assert loss_b == pytest.approx(loss_a, rel=1e-12)
    for name in grads_a:
        np.testing.assert_allclose(grads_b[name], grads_a[name], rtol=1e-12, atol=1e-15, err_msg=name)
    for layer_a, layer_b in zip(state_a, state_b, strict=True):
        for part_a, part_b in zip(layer_a, layer_b, strict=True):
            np.testing.assert_allclose(part_b, part_a, rtol=1e-12)
    assert rng_b.bit_generator.state == rng_a.bit_generator.state


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_zoneout_on_a_window_kernel_cell_is_refused_in_one_line(cell):
    with pytest.raises(RnnlabError, match="--zoneout does not apply to --cell"):
        charmodel.ModelConfig(vocab_size=5, cell=cell, zoneout=0.1)


@pytest.mark.parametrize("field,value", [("dropout_input", 1.0), ("weight_drop", -0.1), ("zoneout", 1.5),
                                         ("zoneout_cell", 1.0), ("ar", -1.0), ("tar", -0.5)])
def test_out_of_range_strengths_are_refused_naming_the_flag(field, value):
    with pytest.raises(RnnlabError, match=f"--{field} must be"):
        charmodel.ModelConfig(vocab_size=5, cell="lstm", **{field: value})
