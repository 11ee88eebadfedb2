"""Optimizers' first steps against values computed by hand, and clipping.

Each expected value is worked out in plain Python floats from the update rule in the docstring, so the
test is independent of the array code it checks. Tolerance 1e-12 relative: the only differences are the
order of float64 operations.
"""

import math
from itertools import pairwise

import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.nn.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    Momentum,
    RMSProp,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
    make_optimizer,
)

GRADS = [0.5, -0.2, 0.1]  # three successive gradients of a single scalar parameter p, which starts at 1.0


def run(optimizer, steps=3):
    params = {"p": np.array([1.0])}
    state = optimizer.init(params)
    trajectory = []
    for g in GRADS[:steps]:
        optimizer.update(params, {"p": np.array([g])}, state)
        trajectory.append(float(params["p"][0]))
    return trajectory, state


def test_sgd():
    assert run(SGD(lr=0.1))[0] == pytest.approx([0.95, 0.97, 0.96], rel=1e-12)


def test_momentum_torch_form():
    # v1 = 0.5             p1 = 1 - 0.1 * 0.5 = 0.95
    # v2 = 0.9*0.5 - 0.2 = 0.25    p2 = 0.95 - 0.025 = 0.925
    # v3 = 0.9*0.25 + 0.1 = 0.325  p3 = 0.925 - 0.0325 = 0.8925
    assert run(Momentum(lr=0.1, mu=0.9))[0] == pytest.approx([0.95, 0.925, 0.8925], rel=1e-12)


def test_momentum_ema_form():
    # v1 = 0.1*0.5 = 0.05            p1 = 0.995
    # v2 = 0.9*0.05 + 0.1*-0.2 = 0.025    p2 = 0.9925
    # v3 = 0.9*0.025 + 0.1*0.1 = 0.0325   p3 = 0.98925
    assert run(Momentum(lr=0.1, mu=0.9, form="ema"))[0] == pytest.approx([0.995, 0.9925, 0.98925], rel=1e-12)


@pytest.mark.parametrize("inside", [False, True])
def test_rmsprop(inside):
    rho, eps, lr, p, s = 0.9, 1e-3, 0.01, 1.0, 0.0
    expected = []
    for g in GRADS:
        s = rho * s + (1 - rho) * g * g
        p -= lr * g / (math.sqrt(s + eps) if inside else math.sqrt(s) + eps)
        expected.append(p)
    # first step by hand: s1 = 0.025; p1 = 1 - 0.01 * 0.5 / (0.158114 + 0.001) = 0.968576 (eps outside),
    # or 1 - 0.01 * 0.5 / sqrt(0.026) = 0.968991 (eps inside)
    assert expected[0] == pytest.approx(0.968991 if inside else 0.968576, abs=1e-6)
    assert run(RMSProp(lr=lr, rho=rho, eps=eps, eps_inside_sqrt=inside))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("eps_hat", [False, True])
def test_adam(eps_hat):
    b1, b2, eps, lr, p, m, v = 0.9, 0.999, 1e-3, 0.01, 1.0, 0.0, 0.0
    expected = []
    for t, g in enumerate(GRADS, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if eps_hat:
            p -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v) + eps)
        else:
            p -= lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
        expected.append(p)
    # the first Adam step is about lr * sign(g) (eps shrinks it a little, more in the Keras form)
    assert expected[0] == pytest.approx(0.99, abs=1e-3)
    trajectory, state = run(Adam(lr=lr, eps=eps, eps_hat=eps_hat))
    assert trajectory == pytest.approx(expected, rel=1e-12)
    assert state["step"] == 3


def test_adagrad():
    # G1 = 0.25 -> p1 = 1 - 0.1*0.5/0.5 = 0.9 ; G2 = 0.29 -> p2 = 0.9 + 0.02/sqrt(0.29)
    p2 = 0.9 + 0.1 * 0.2 / math.sqrt(0.29)
    p3 = p2 - 0.1 * 0.1 / math.sqrt(0.30)
    assert run(Adagrad(lr=0.1, eps=1e-300))[0] == pytest.approx([0.9, p2, p3], rel=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_is_plain_data_of_param_shapes(name):
    """Every slot holds one array per parameter, of that parameter's shape: checkpointable as npz."""
    params = {"W": np.ones((2, 3)), "b": np.ones(3)}
    state = make_optimizer(name).init(params)
    for key, slot in state.items():
        if key != "step":
            assert {n: a.shape for n, a in slot.items()} == {n: a.shape for n, a in params.items()}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_nonpositive_learning_rate_is_refused(name, lr):
    with pytest.raises(RnnlabError, match="learning rate"):
        make_optimizer(name, lr)


def test_unknown_optimizer_and_option_are_refused():
    with pytest.raises(RnnlabError, match="unknown optimizer"):
        make_optimizer("lbfgs")
    with pytest.raises(RnnlabError, match="no option"):
        make_optimizer("sgd", momentum=0.9)


def test_clip_by_value_bounds_every_entry():
    grads = {"a": np.array([-7.0, 0.5, 9.0]), "b": np.array([[3.0, -3.0]])}
    clip_by_value(grads, 2.0)
    np.testing.assert_array_equal(grads["a"], [-2.0, 0.5, 2.0])
    np.testing.assert_array_equal(grads["b"], [[2.0, -2.0]])


def test_clip_by_global_norm_keeps_direction():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}  # norm 5
    assert clip_by_global_norm(grads, 1.0) == pytest.approx(5.0)
    assert global_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    small = {"a": np.array([0.3])}
    clip_by_global_norm(small, 1.0)
    assert small["a"][0] == 0.3  # below the limit nothing changes


def test_cosine_schedule_runs_from_lr_to_min_lr():
    from rnnlab.nn.optim import scheduled_learning_rate
    lrs = [scheduled_learning_rate("cosine", step, 101, 1.0, 0.1) for step in range(1, 102)]
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1) and lrs[50] == pytest.approx(0.55)
    assert all(a >= b for a, b in pairwise(lrs))
    assert scheduled_learning_rate("constant", 50, 101, 1.0, 0.1) == 1.0


def test_adagrad_eps_inside_sqrt():
    # G1 = 0.25 -> p1 = 1 - 0.1 * 0.5 / sqrt(0.25 + 0.01)
    trajectory, _ = run(Adagrad(lr=0.1, eps=0.01, eps_inside_sqrt=True), steps=1)
    assert trajectory[0] == pytest.approx(1 - 0.05 / math.sqrt(0.26), rel=1e-12)


def test_optimizer_options_parse_to_typed_fields():
    from rnnlab.nn.optim import parse_options
    assert parse_options("momentum", "mu=0.95, form=ema") == {"mu": 0.95, "form": "ema"}
    assert parse_options("adam", "eps_hat=true,beta2=0.99") == {"eps_hat": True, "beta2": 0.99}
    assert parse_options("sgd", "") == {}
    for bad, message in [("mu", "KEY=VALUE"), ("nope=1", "no option"), ("mu=fast", "number"), ("lr=1", "no option")]:
        with pytest.raises(RnnlabError, match=message):
            parse_options("momentum", bad)


def test_schedule_floor_must_be_positive():
    from rnnlab.nn.optim import scheduled_learning_rate
    with pytest.raises(RnnlabError, match="> 0"):
        scheduled_learning_rate("cosine", 5, 5, 0.1, 0.0)
