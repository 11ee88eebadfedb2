"""Optimizers and gradient clipping, with their state as plain data.

An optimizer is a small frozen dataclass of hyper-parameters with two methods:

    state = opt.init(params)             # {"step": 0, slot: {param name: array}, ...}
    opt.update(params, grads, state)     # changes params and state in place

Keeping the moments in an explicit dict (as optax does) is what lets a checkpoint save and restore them
exactly. Notation: p a parameter, g its gradient, lr the learning rate, t the step (from 1).

Frameworks write some of these differently; each difference is an option here, named after the framework
whose trajectory it reproduces (see docs/optimizers.md):

* Momentum ``form``: "torch" (buf = mu buf + g; p -= lr buf -- Keras' v = mu v - lr g; p += v is the same
  trajectory for a constant lr) or "ema" (the course form v = beta v + (1 - beta) g; p -= lr v).
* RMSProp ``eps_inside_sqrt``: p -= lr g / (sqrt(s) + eps) (PyTorch) or lr g / sqrt(s + eps).
* Adam ``eps_hat``: eps added to sqrt(v_hat) (PyTorch, the paper's Algorithm 1) or to sqrt(v) after folding
  the bias corrections into the step size (Keras, the paper's "efficient version").
* Adagrad ``initial_accumulator``, ``eps`` and ``eps_inside_sqrt`` (PyTorch: 0, 1e-10, outside; Keras: 0.1,
  1e-7, inside).

On the command line these are ``--optimizer_options``, e.g. ``form=ema,mu=0.95`` (see :func:`parse_options`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import RnnlabError, require


def _positive(name: str, value: float) -> None:
    require(value > 0, f"{name} must be > 0, got {value}")


def _fraction(name: str, value: float) -> None:
    require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")


def _zeros_like(params: dict) -> dict:
    return {name: np.zeros_like(value) for name, value in params.items()}


@dataclass(frozen=True)
class SGD:
    """p -= lr g"""

    lr: float = 0.1

    def __post_init__(self):
        _positive("learning rate", self.lr)

    def init(self, params: dict) -> dict:
        return {"step": 0}

    def update(self, params: dict, grads: dict, state: dict) -> None:
        state["step"] += 1
        for name, p in params.items():
            p -= self.lr * grads[name]


@dataclass(frozen=True)
class Momentum:
    """form "torch":  v = mu v + g;              p -= lr v
    form "ema":    v = mu v + (1 - mu) g;      p -= lr v     (exponential moving average of g)"""

    lr: float = 0.05
    mu: float = 0.9
    form: str = "torch"

    def __post_init__(self):
        _positive("learning rate", self.lr)
        _fraction("momentum", self.mu)
        require(self.form in ("torch", "ema"), f"momentum form must be 'torch' or 'ema', got {self.form!r}")

    def init(self, params: dict) -> dict:
        return {"step": 0, "velocity": _zeros_like(params)}

    def update(self, params: dict, grads: dict, state: dict) -> None:
        state["step"] += 1
        g_scale = 1.0 - self.mu if self.form == "ema" else 1.0
        for name, p in params.items():
            v = state["velocity"][name]
            v *= self.mu
            v += g_scale * grads[name]
            p -= self.lr * v


@dataclass(frozen=True)
class RMSProp:
    """s = rho s + (1 - rho) g^2;     p -= lr g / (sqrt(s) + eps)     (or lr g / sqrt(s + eps))"""

    lr: float = 0.005
    rho: float = 0.9
    eps: float = 1e-8
    eps_inside_sqrt: bool = False

    def __post_init__(self):
        _positive("learning rate", self.lr)
        _fraction("rho", self.rho)
        _positive("eps", self.eps)

    def init(self, params: dict) -> dict:
        return {"step": 0, "square_avg": _zeros_like(params)}

    def update(self, params: dict, grads: dict, state: dict) -> None:
        state["step"] += 1
        for name, p in params.items():
            g, s = grads[name], state["square_avg"][name]
            s *= self.rho
            s += (1.0 - self.rho) * g * g
            denom = np.sqrt(s + self.eps) if self.eps_inside_sqrt else np.sqrt(s) + self.eps
            p -= self.lr * g / denom


@dataclass(frozen=True)
class Adam:
    """m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2;   m_hat = m / (1 - b1^t);   v_hat = v / (1 - b2^t)
    eps_hat False (PyTorch):  p -= lr m_hat / (sqrt(v_hat) + eps)
    eps_hat True  (Keras):    p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)"""

    lr: float = 0.005
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    eps_hat: bool = False

    def __post_init__(self):
        _positive("learning rate", self.lr)
        _fraction("beta1", self.beta1)
        _fraction("beta2", self.beta2)
        _positive("eps", self.eps)

    def init(self, params: dict) -> dict:
        return {"step": 0, "m": _zeros_like(params), "v": _zeros_like(params)}

    def update(self, params: dict, grads: dict, state: dict) -> None:
        state["step"] += 1
        t = state["step"]
        c1, c2 = 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t     # bias corrections
        for name, p in params.items():
            g, m, v = grads[name], state["m"][name], state["v"][name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            if self.eps_hat:
                p -= (self.lr * np.sqrt(c2) / c1) * m / (np.sqrt(v) + self.eps)
            else:
                p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


@dataclass(frozen=True)
class Adagrad:
    """G += g^2;     p -= lr g / (sqrt(G) + eps)    (or lr g / sqrt(G + eps));   G starts at initial_accumulator"""

    lr: float = 0.1
    eps: float = 1e-10
    initial_accumulator: float = 0.0
    eps_inside_sqrt: bool = False

    def __post_init__(self):
        _positive("learning rate", self.lr)
        _positive("eps", self.eps)
        require(self.initial_accumulator >= 0, "initial_accumulator must be >= 0")

    def init(self, params: dict) -> dict:
        return {"step": 0, "sum_sq": {n: np.full_like(p, self.initial_accumulator) for n, p in params.items()}}

    def update(self, params: dict, grads: dict, state: dict) -> None:
        state["step"] += 1
        for name, p in params.items():
            g, acc = grads[name], state["sum_sq"][name]
            acc += g * g
            denom = np.sqrt(acc + self.eps) if self.eps_inside_sqrt else np.sqrt(acc) + self.eps
            p -= self.lr * g / denom


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rms": RMSProp, "adam": Adam, "adagrad": Adagrad}


def make_optimizer(name: str, lr: float | None = None, **options):
    """An optimizer by name; ``lr=None`` takes that optimizer's default learning rate."""
    if name not in OPTIMIZERS:
        raise RnnlabError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    require(not unknown, f"optimizer {name} has no option(s) {unknown}: it takes {sorted(known)}")
    if lr is not None:
        options["lr"] = lr
    return cls(**options)


def parse_options(name: str, text: str) -> dict:
    """``"mu=0.95,form=ema"`` -> {"mu": 0.95, "form": "ema"}, each value converted to the field's type."""
    require(name in OPTIMIZERS, f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    types = {f.name: f.type for f in fields(OPTIMIZERS[name])}
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        require(sep == "=", f"--optimizer_options item {item!r} is not KEY=VALUE (e.g. eps_hat=true)")
        require(key in types and key != "lr",
                f"optimizer {name} has no option {key!r}: it takes {sorted(k for k in types if k != 'lr')}")
        kind = types[key]
        try:
            if kind in (bool, "bool"):
                require(value.lower() in ("true", "false", "1", "0"), f"{key} must be true or false, got {value!r}")
                options[key] = value.lower() in ("true", "1")
            elif kind in (float, "float"):
                options[key] = float(value)
            else:
                options[key] = value.strip()
        except ValueError:
            raise RnnlabError(f"optimizer option {key} must be a number, got {value!r}") from None
    return options


def optimizer_config(optimizer) -> dict:
    """Name and hyper-parameters, for checkpoints and logs."""
    name = next(key for key, cls in OPTIMIZERS.items() if isinstance(optimizer, cls))
    return {"name": name, **asdict(optimizer)}


# ---------------------------------------------------------------------------------------------------------
# Learning-rate schedules: a pure function of the step, so a resumed run follows the same curve.
# ---------------------------------------------------------------------------------------------------------

LR_SCHEDULES = ("constant", "cosine")


def scheduled_learning_rate(schedule: str, step: int, total_steps: int, lr: float, min_lr: float) -> float:
    """constant: lr.   cosine: lr_t = min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2, t = step - 1 of T.

    Cosine decay (Loshchilov & Hutter 2017) lets the last part of training settle into a minimum that a
    constant rate keeps jumping over."""
    require(schedule in LR_SCHEDULES, f"unknown --lr_schedule {schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
    require(min_lr > 0, f"the schedule's final learning rate must be > 0, got {min_lr}")
    if schedule == "constant":
        return lr
    progress = min(max(step - 1, 0) / max(total_steps - 1, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------------------
# Clipping: limit the step an exploding gradient can cause.
# ---------------------------------------------------------------------------------------------------------

def clip_by_value(grads: dict, clip_value: float) -> None:
    """g = min(max(g, -c), c) element-wise, in place (min-char-rnn's and the course's np.clip)."""
    _positive("clip value", clip_value)
    for g in grads.values():
        np.clip(g, -clip_value, clip_value, out=g)


def global_norm(grads: dict) -> float:
    """||g|| over all parameters together: sqrt(sum of every squared entry)."""
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_by_global_norm(grads: dict, max_norm: float, norm: float | None = None) -> float:
    """If ||g|| > max_norm, scale every g by max_norm / ||g|| (direction kept). Returns ||g|| before.

    ``norm`` may pass in ||g|| when the caller has already computed it (it is not computed twice)."""
    _positive("max norm", max_norm)
    norm = global_norm(grads) if norm is None else norm
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm
