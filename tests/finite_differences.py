"""What every finite-difference gradient check in these tests shares: the step, the bound and random
*nonzero* parameters.

Central differences with eps = 1e-6 in float64 carry ~1e-10 relative error (see rnnlab.nn.gradcheck), so a
correct gradient has relative error far below the bound of 1e-6, and any missing term would exceed it by
orders of magnitude. Parameters are random and nonzero, biases included: a zero bias hides bias-gradient
bugs.
"""

import numpy as np

EPS = 1e-6
BOUND = 1e-6


def nonzero_like(params: dict, rng: np.random.Generator) -> dict:
    """Parameters of the same names and shapes as ``params``, every entry drawn from N(0, 0.5^2) in float64."""
    return {name: rng.normal(0.0, 0.5, size=value.shape) for name, value in params.items()}


def random_layer(cell, input_size, hidden, rng):
    """A layer's parameters with every entry random and nonzero, biases included."""
    return nonzero_like(cell.init(input_size, hidden, rng), rng)
