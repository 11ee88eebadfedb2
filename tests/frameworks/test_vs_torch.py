"""PyTorch cross-checks: the same weights give the same logits, loss, gradients and optimizer trajectories
as rnnlab's NumPy model, for every cell, 1 and 2 layers, a padded batch and a nonzero initial state.

Tolerances. Both sides compute in float64 with the same formulas; what differs is the order of additions
inside matrix products and fused kernels (torch's log-softmax, its GRU/LSTM kernels), about 1e-16 relative
per operation, grown by a few dozen operations through 5 steps and 2 layers: observed differences are
~1e-16..1e-15. rtol 1e-10 / atol 1e-12 leaves a margin of 1e4 and is still far below what a real bug
(a swapped gate, a missing bias) produces: 1e-3..1e-1.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crosscheck import (  # noqa: E402
    BLOCK_CONFIGS,
    CONFIGS,
    NO_CLIP,
    TOL,
    B,
    H,
    T,
    V,
    assert_dicts_close,
    assert_optimizer_trajectories_match,
    assert_option_refused_in_one_line,
    assert_resumes_numpy_trajectory,
    config_id,
    numpy_grads,
    one_torch_thread,  # noqa: E402, F401 (an autouse fixture: used by being imported)
    random_batch,
    random_params,
    random_state,
    run_both,
)
from rnnlab.errors import TrainingDiverged  # noqa: E402
from rnnlab.frameworks import torch as rtorch  # noqa: E402
from rnnlab.nn import model as charmodel  # noqa: E402
from rnnlab.nn.cells import CELLS  # noqa: E402
from rnnlab.nn.losses import softmax_cross_entropy  # noqa: E402
from rnnlab.nn.optim import SGD, Adagrad, Adam, Momentum, RMSProp  # noqa: E402
from rnnlab.training.engines import NumpyEngine  # noqa: E402
from rnnlab.training.trainer import TrainConfig  # noqa: E402


def torch_model(config, params):
    model = rtorch.char_model(config, torch.float64)
    model.load_numpy(params)
    return model


def to_torch_state(state):
    """rnnlab's per-layer tuples -> torch's tuple of (L, B, H) tensors."""
    return tuple(torch.from_numpy(np.stack([layer[i] for layer in state])) for i in range(len(state[0])))


def torch_grads(model, config):
    """Autograd's gradients in rnnlab's layout (a frozen bias has none: zeros)."""
    return rtorch.from_torch({name: torch.zeros_like(p) if p.grad is None else p.grad
                              for name, p in model.named_parameters()}, config)


# ---- weights ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_numpy_torch_numpy_round_trip_is_exact(config):
    params = random_params(config)
    converted = rtorch.from_torch(rtorch.to_torch(params, config), config)
    for back in (converted, torch_model(config, params).numpy_params()):
        assert back.keys() == params.keys()
        for name in params:
            np.testing.assert_array_equal(back[name], params[name], err_msg=name)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_torch_initialised_model_converts_to_the_same_function(cell):
    """PyTorch's own initialisation (two nonzero biases per layer) converted to rnnlab computes the same
    logits: torch -> numpy is right on its own, not only as the inverse of numpy -> torch."""
    config = charmodel.ModelConfig(V, cell, H, 2)
    torch.manual_seed(0)
    model = rtorch.char_model(config, torch.float64)
    for name, p in model.named_parameters():
        assert torch.count_nonzero(p) == p.numel(), name      # every bias, including the frozen bias_hh
    batch, state = random_batch(), random_state(config)
    expected, _ = model(torch.from_numpy(batch.ids), to_torch_state(state))
    logits, _, _ = charmodel.forward(model.numpy_params(), config, batch.ids, state)
    np.testing.assert_allclose(logits, expected.detach().numpy(), **TOL)


def test_rnn_and_lstm_train_one_bias_like_rnnlab():
    """PyTorch's second bias of RNN/LSTM is frozen at 0: trained, it would move b twice as fast."""
    for cell in ("rnn", "lstm"):
        model = torch_model(charmodel.ModelConfig(V, cell, H, 2), random_params(charmodel.ModelConfig(V, cell, H, 2)))
        frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
        assert frozen == {"rnn.bias_hh_l0", "rnn.bias_hh_l1"}
        assert all(torch.count_nonzero(getattr(model.rnn, name[4:])) == 0 for name in frozen)
    gru = torch_model(charmodel.ModelConfig(V, "gru", H, 1), random_params(charmodel.ModelConfig(V, "gru", H, 1)))
    assert all(p.requires_grad for p in gru.parameters())   # rnnlab's GRU has both biases, bh included


# ---- forward and gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_logits_final_state_and_masked_loss_match(config):
    params, batch, state = random_params(config), random_batch(), random_state(config)
    logits, final, _ = charmodel.forward(params, config, batch.ids, state)
    expected_logits, expected_final = torch_model(config, params)(torch.from_numpy(batch.ids), to_torch_state(state))
    np.testing.assert_allclose(logits, expected_logits.detach().numpy(), **TOL)
    for part, expected in zip(to_torch_state(final), expected_final, strict=True):
        np.testing.assert_allclose(part.numpy(), expected.detach().numpy(), **TOL)
    expected_loss = rtorch.masked_cross_entropy(expected_logits, torch.from_numpy(batch.targets),
                                                torch.from_numpy(batch.mask))
    assert softmax_cross_entropy(logits, batch.targets, batch.mask)[0] == pytest.approx(expected_loss.item(), rel=1e-12)


@pytest.mark.parametrize("upstream", ["masked loss", "random dlogits"])
@pytest.mark.parametrize("config", CONFIGS + BLOCK_CONFIGS, ids=config_id)
def test_every_parameter_gradient_matches_autograd(config, upstream):
    """From a nonzero initial state; upstream either the masked loss or a random dL/dlogits."""
    params, batch, state = random_params(config), random_batch(), random_state(config)
    model = torch_model(config, params)
    logits, _ = model(torch.from_numpy(batch.ids), to_torch_state(state))
    if upstream == "masked loss":
        loss = rtorch.masked_cross_entropy(logits, torch.from_numpy(batch.targets), torch.from_numpy(batch.mask))
        _, expected, _ = charmodel.loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask)
    else:
        dy = np.random.default_rng(3).standard_normal((T, B, V))
        loss = (logits * torch.from_numpy(dy)).sum()
        expected = numpy_grads(params, config, batch.ids, state, dy)
    loss.backward()
    assert_dicts_close(torch_grads(model, config), expected)


# ---- minGRU / minLSTM: the linear recurrence on tensors -------------------------------------------------

@pytest.mark.parametrize("form", ["loop", "scan"])
def test_torch_linear_recurrence_equals_numpys_and_its_backward_is_autograds(form):
    """torch_layers.LinearRecurrence (the loop the CPU runs, the scan a GPU runs) computes scan.py's h, and its
    hand-written backward passes torch.autograd.gradcheck (float64 central differences, its default
    tolerances: atol 1e-5, rtol 1e-3 on a handful of elements), for T a power of two or not."""
    from rnnlab.frameworks.torch_layers import LinearRecurrence
    from rnnlab.nn.scan import linear_recurrence_loop

    rng = np.random.default_rng(0)
    for steps in (1, 5, 8):
        a, b = rng.uniform(0.05, 0.95, (steps, 2, 3)), rng.normal(size=(steps, 2, 3))
        h0 = rng.normal(size=(2, 3))
        h = LinearRecurrence.apply(*(torch.from_numpy(x) for x in (a, b, h0)), form)
        np.testing.assert_allclose(h.numpy(), linear_recurrence_loop(a, b, h0), **TOL)
        inputs = tuple(torch.from_numpy(x).requires_grad_() for x in (a, b, h0))
        assert torch.autograd.gradcheck(lambda a, b, h0: LinearRecurrence.apply(a, b, h0, form), inputs)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_gpus_scan_gives_the_cpus_logits_and_gradients(cell, monkeypatch):
    """A GPU runs the window by the doubling scan, the CPU by the loop: forcing the scan on the CPU gives the
    same logits and gradients (float64 rounding), so the GPU computes rnnlab's model too."""
    from rnnlab.frameworks import torch_layers

    config = charmodel.ModelConfig(V, cell, H, 2, block="residual")
    params, batch, state = random_params(config), random_batch(), random_state(config)
    results = []
    for form in ("loop", "scan"):
        monkeypatch.setattr(torch_layers, "torch_scan_form", lambda device, form=form: form)
        model = torch_model(config, params)
        logits, _ = model(torch.from_numpy(batch.ids), to_torch_state(state))
        rtorch.masked_cross_entropy(logits, torch.from_numpy(batch.targets), torch.from_numpy(batch.mask)).backward()
        results.append((logits.detach().numpy(), torch_grads(model, config)))
    np.testing.assert_allclose(results[1][0], results[0][0], **TOL)
    assert_dicts_close(results[1][1], results[0][1])


@pytest.mark.parametrize("config", [c for c in BLOCK_CONFIGS if c.cell in ("gru", "mingru", "minlstm")],
                         ids=config_id)
def test_ten_adam_steps_of_the_residual_block_follow_torch_optim(config):
    """The block through TorchEngine and NumpyEngine: the same parameters after every step, the same moments."""
    assert_optimizer_trajectories_match(rtorch.TorchEngine, config, Adam(lr=0.01), 10)


# ---- optimizers ------------------------------------------------------------------------------------------

# rnnlab options that are torch.optim's conventions (verified in torch/optim/*.py, torch 2.13):
#   SGD(momentum): buf = mu buf + g, buf = g at step 1, p -= lr buf          -> Momentum(form="torch")
#   RMSprop: p -= lr g / (sqrt(s) + eps)                                      -> eps_inside_sqrt=False
#   Adam: denom = sqrt(v) / sqrt(1 - b2^t) + eps, p -= lr / (1 - b1^t) m / denom  -> eps_hat=False
#   Adagrad: G starts at initial_accumulator_value (0), p -= lr g / (sqrt(G) + eps (1e-10))
TORCH_OPTIMIZERS = {
    "sgd": SGD(lr=0.5),
    "momentum": Momentum(lr=0.1, mu=0.9, form="torch"),
    "momentum-ema": Momentum(lr=0.5, mu=0.8, form="ema"),   # torch SGD with lr (1 - mu), see torch.py
    "rmsprop": RMSProp(lr=0.01, rho=0.99, eps=1e-8),
    "adam": Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
    "adagrad": Adagrad(lr=0.1, eps=1e-10, initial_accumulator=0.0),
    "adagrad-init": Adagrad(lr=0.1, eps=1e-10, initial_accumulator=0.1),
}


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru", "minlstm"])
def test_ten_steps_follow_torch_optim(name, cell):
    """10 steps of TorchEngine (torch.optim) and NumpyEngine (rnnlab.nn.optim): the same parameters after
    every step, and the same optimizer moments at the end. LSTM has the frozen bias, GRU both biases."""
    config = charmodel.ModelConfig(V, cell, H, 2)
    assert_optimizer_trajectories_match(rtorch.TorchEngine, config, TORCH_OPTIMIZERS[name], 10)


def test_resuming_from_a_numpy_optimizer_state_continues_its_trajectory():
    """load_state: torch picks up rnnlab's Adam moments and step count mid-run (checkpoint resume)."""
    config = charmodel.ModelConfig(V, "lstm", H, 2)
    assert_resumes_numpy_trajectory(rtorch.TorchEngine, config, Adam(lr=0.01))


def test_scheduled_learning_rate_follows_rnnlab():
    """set_learning_rate every step (a schedule) with the ema momentum form keeps the trajectories equal."""
    config = charmodel.ModelConfig(V, "gru", H, 1)
    optimizer, params = Momentum(lr=0.5, mu=0.8, form="ema"), random_params(config)
    engine = rtorch.TorchEngine(config, params, optimizer, NO_CLIP, np.random.default_rng(0))
    reference = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, optimizer, NO_CLIP, None)
    state, ref_state = engine.zero_state(B), reference.zero_state(B)
    for lr in (0.5, 0.3, 0.1, 0.05):
        engine.set_learning_rate(lr)
        reference.set_learning_rate(lr)
        _, state = engine.train_step(random_batch(), state)
        _, ref_state = reference.train_step(random_batch(), ref_state)
    assert_dicts_close(engine.numpy_params(), reference.params, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("optimizer, option", [(RMSProp(eps_inside_sqrt=True), "eps_inside_sqrt"),
                                               (Adam(eps_hat=True), "eps_hat")])
def test_an_option_torch_cannot_reproduce_is_a_one_line_error(optimizer, option):
    assert_option_refused_in_one_line(rtorch.TorchEngine, optimizer, option)


# ---- engine details --------------------------------------------------------------------------------------

def test_clipping_uses_rnnlab_formulas():
    """clip_value then clip_norm, as engines.train_step; not clip_grad_norm_ (which divides by norm + 1e-6)."""
    config = charmodel.ModelConfig(V, "lstm", H, 2)
    clip = TrainConfig(clip_value=0.05, clip_norm=0.1)
    params = random_params(config)
    engine = rtorch.TorchEngine(config, params, SGD(lr=1.0), clip, np.random.default_rng(0))
    reference = NumpyEngine(config, {k: v.copy() for k, v in params.items()}, SGD(lr=1.0), clip, None)
    run_both(engine, reference, random_batch(), 3)


def test_hidden_state_converts_to_rnnlab_layout_and_back():
    config = charmodel.ModelConfig(V, "lstm", H, 2)
    engine = rtorch.TorchEngine(config, random_params(config), SGD(), NO_CLIP, np.random.default_rng(0))
    state = random_state(config)
    back = engine.state_to_numpy(engine.state_from_numpy(state))
    assert [len(layer) for layer in back] == [2, 2]
    for layer, expected in zip(back, state, strict=True):
        for part, want in zip(layer, expected, strict=True):
            np.testing.assert_array_equal(part, want)


def test_a_non_finite_loss_stops_before_the_update():
    config = charmodel.ModelConfig(V, "rnn", H, 1)
    params = random_params(config)
    params["by"][0] = np.inf
    engine = rtorch.TorchEngine(config, params, SGD(), NO_CLIP, np.random.default_rng(0))
    before = engine.numpy_params()
    with pytest.raises(TrainingDiverged, match="not finite"):
        engine.train_step(random_batch(), engine.zero_state(B))
    for name, value in engine.numpy_params().items():
        np.testing.assert_array_equal(value, before[name])


def test_a_numpy_checkpoint_loads_into_torch_with_the_same_validation_loss(tmp_path):
    """Train with NumPy, save, load the checkpoint into the PyTorch model: the validation loss over the
    held-out names is the same. float64, rtol 1e-10: only the summation order differs."""
    from rnnlab.training.checkpoint import load_checkpoint
    from rnnlab.training.trainer import Trainer, evaluate

    trainer = Trainer(TrainConfig(dataset="dinos", cell="lstm", hidden_size=12, num_layers=2, batch_size=16,
                                  iterations=15, dtype="float64", checkpoint_dir=str(tmp_path)))
    trainer.run()
    checkpoint = load_checkpoint(tmp_path)
    engine = rtorch.TorchEngine(checkpoint.model_config, checkpoint.params, Adam(), NO_CLIP,
                                np.random.default_rng(0))
    assert evaluate(engine, trainer.val_batches) == pytest.approx(trainer.validation_loss(), rel=1e-10)


@pytest.mark.slow
def test_a_torch_trained_run_checkpoints_in_rnnlab_format_and_samples(tmp_path):
    """--engine torch writes the same checkpoint format (through the weight conversion); rnnlab sample
    reads it without torch being involved."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "--engine", "torch", "--iterations", "20",
                          "--batch_size", "8", "--checkpoint_dir", str(tmp_path), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    sampled = subprocess.run([sys.executable, "-m", "rnnlab.cli", "sample", "--checkpoint", str(tmp_path),
                              "--num_samples", "4", "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.splitlines()) == 4
