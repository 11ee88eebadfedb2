"""Weight averaging (``--ema_decay``): an exponential moving average of the weights, for evaluation.

SGD-type updates leave the weights bouncing around a minimum; the average of the last iterates sits closer
to it (Polyak & Juditsky 1992; AWD-LSTM averages with NT-ASGD, Merity et al. 2017). An exponential moving
average with decay beta weighs the last ~1/(1 - beta) steps. Started at zero and bias-corrected, as Adam's
moments are, it does not lean on the initial weights:

    m_t = beta m_{t-1} + (1 - beta) theta_t,   m_0 = 0         a_t = m_t / (1 - beta^t)

which is the same as updating the corrected average a_t itself -- what is kept (and saved: a checkpoint's
``ema/<name>`` arrays are the weights to use, nothing to correct):

    a_t = a_{t-1} + w_t (theta_t - a_{t-1}),   w_t = (1 - beta) / (1 - beta^t)      (a_1 = theta_1, w_1 = 1)

so a_t is the weighted mean of theta_1 .. theta_t with weights proportional to beta^(t - k). Training never
reads it: the Trainer evaluates, keeps the best checkpoint and samples with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WeightAverage:
    """The average a_t of the weights (module docstring) and its step count t (0: nothing averaged yet)."""

    decay: float
    weights: dict | None = None        # {name: array} a_t, in the parameters' dtype
    steps: int = 0
    _scratch: dict = field(default_factory=dict, repr=False)

    def update(self, params: dict) -> None:
        """Fold theta_t = ``params`` (after step t's update) into the average: a += w_t (theta - a)."""
        self.steps += 1
        if self.weights is None or self.steps == 1:               # w_1 = 1: a_1 = theta_1
            self.weights = {name: np.array(value, copy=True) for name, value in params.items()}
            return
        w = (1.0 - self.decay) / (1.0 - self.decay ** self.steps)   # a Python float: keeps the arrays' dtype
        for name, average in self.weights.items():
            scratch = self._scratch.get(name)
            if scratch is None or scratch.shape != average.shape:
                scratch = self._scratch[name] = np.empty_like(average)
            np.subtract(params[name], average, out=scratch)         # theta - a
            scratch *= w
            average += scratch

    def load(self, weights: dict | None, steps: int) -> None:
        """Continue a saved average (a checkpoint's ``ema/`` arrays and ``ema_steps``)."""
        self.weights = None if weights is None else {name: np.array(v, copy=True) for name, v in weights.items()}
        self.steps = steps if weights is not None else 0
