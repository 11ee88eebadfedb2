"""A run must not look fine while it is broken: the health guard.

A training loss that falls says little on its own. Two numbers a report already has tell a broken run
from a healthy one, and a third says why:

1. **Worse than guessing.** A model that knows nothing predicts the uniform distribution and scores
   ln V nats/char on any text (V = vocabulary size); a freshly initialised one scores up to ~0.2 nats more
   (its output weights are random: tests/nn/test_model.py). Validation above ln V + :data:`UNIFORM_MARGIN`
   = 0.25 once the run is past 10 % of its steps means the parameters have learnt something that does *not*
   transfer -- with a falling training loss, typically predictions that work only from the hidden state
   carried through training: the validation runs start from a zero state, and a model whose carried LSTM
   cell state has grown to hundreds is confidently wrong from there (measured: validation 6.16 nats, worse
   than ln 68 = 4.22, while training said 3.13; docs/results.md).
2. **A gap.** Validation more than :data:`MAX_GAP` = 0.5 nats/char above the smoothed training loss. On the
   shipped texts a healthy run's gap stays below ~0.1 nats through the first thousands of steps (the same
   distribution on both sides of the split; docs/results.md), while memorising a small corpus opens it
   slowly (LSTM on the dinosaur names: 0.3 at its best checkpoint, 0.8 far past it). 0.5 nats is a factor
   e^0.5 = 1.65 in perplexity: no longer noise, not yet a disaster -- the point to say something.
3. **The carried state.** The largest |state| of each layer (the LSTM's cell state c, else h) is recorded
   in every report (``state_max``; the metrics file keeps it, ``rnnlab plot`` draws it). tanh bounds h and
   the GRU's h to (-1, 1); an LSTM cell state far beyond :data:`STATE_RUNAWAY` = 50 has saturated tanh(c)
   (1 - tanh^2(50) ~ 1e-43): those units are counters that no gradient steers any more.

Each warning is one line naming the likely cause and the fix, given once per run and kind.

Before any of these, the training loss itself is watched step by step (:class:`LossTracker`): char-rnn's
divergence guard stops a run whose smoothed loss is not finite or has tripled since its first step.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import TrainingDiverged

MAX_GAP = 0.5             # nats/char between validation and the smoothed training loss
UNIFORM_MARGIN = 0.25     # a fresh model scores up to ~0.2 nats above ln V (its output weights are random)
STATE_RUNAWAY = 50.0      # |c| beyond which tanh(c) is saturated for good
EARLIEST = 0.1            # the uniform-guess check waits for 10 % of the run's steps


class LossTracker:
    """The training loss as the run reads it: the steps' losses not read yet, the last one read, the smoothed
    loss and char-rnn's divergence guard.

    A loss is a float, or for an engine on a GPU a device scalar that stays on the device until
    :meth:`read` (so that the host does not wait for the device at every step). The smoothed loss is
    min-char-rnn's moving average -- 0.999 per example, so it spans ~1000 examples whatever the batch size --
    bias-corrected as in Adam so that it starts at the first loss. Its running sum and the first loss belong
    to the run: the :class:`checkpoint.RunState` (saved in every checkpoint), which the trainer owns and
    hands to :meth:`read` and :meth:`smooth`; the tracker keeps only what a checkpoint never holds."""

    def __init__(self, batch_size: int):
        self.smoothing = max(0.999 ** batch_size, 0.9)
        self.unread: list = []             # losses of the steps since the last read (device scalars)
        self.last = math.nan               # the latest loss read

    def add(self, loss) -> None:
        """The loss of the step just taken (the run's step count already counts it)."""
        self.unread.append(loss)

    def read(self, run) -> None:
        """Fold the losses not read yet, in step order, into the smoothed loss of ``run`` (the RunState:
        step, loss_average, first_loss), checking each with the divergence guard (on the smoothed loss: one
        short window can be far above average by chance)."""
        while self.unread:
            loss = self.last = float(self.unread.pop(0))
            run.first_loss = loss if run.first_loss is None else run.first_loss
            run.loss_average = self.smoothing * run.loss_average + (1 - self.smoothing) * loss
            if not math.isfinite(loss) or self.smooth(run) > 3 * run.first_loss:
                raise TrainingDiverged(
                    f"training diverged at step {run.step - len(self.unread)}: loss {loss:.4g}, smoothed "
                    f"{self.smooth(run):.4g} (first loss {run.first_loss:.4g}); lower --learning_rate, or clip "
                    "with --clip_value / --clip_norm")

    def smooth(self, run) -> float:
        """The smoothed training loss of ``run`` over the losses read so far (NaN before the first)."""
        read = run.step - len(self.unread)
        return run.loss_average / (1 - self.smoothing ** read) if read else math.nan


def state_max(state) -> list[float]:
    """The largest |value| of each layer's carried state (all its parts: h, and c for an LSTM)."""
    if not state:
        return []
    return [float(max(np.abs(np.asarray(part)).max(initial=0.0) for part in layer)) for layer in state]


def health_warnings(step: int, total_steps: int, val_loss: float | None, smooth_loss: float, vocab_size: int,
                    largest_state: list[float], warned: set) -> list[str]:
    """One line per new problem (kinds already in ``warned`` are skipped; new kinds are added to it)."""
    found = []
    runaway = max(largest_state, default=0.0) > STATE_RUNAWAY
    runaway_cause = (f"; the carried state has grown to |state| = {max(largest_state):,.0f}, so the model "
                     "predicts from it, not from the text: lower --learning_rate or use --init rnnlab (forget bias 0)"
                     if runaway else None)
    uniform = math.log(vocab_size)
    if (val_loss is not None and step >= EARLIEST * total_steps and val_loss > uniform + UNIFORM_MARGIN
            and "uniform" not in warned):
        warned.add("uniform")
        cause = runaway_cause or (": the model is confidently wrong on held-out text -- check that the held-out "
                                  "part is the same kind of text (--val_fraction), and lower --learning_rate")
        found.append(f"validation loss {val_loss:.3f} is worse than a uniform guess (ln {vocab_size} = "
                     f"{uniform:.3f}) at step {step:,}{cause}")
    if val_loss is not None and val_loss - smooth_loss > MAX_GAP and "gap" not in warned:
        warned.add("gap")
        cause = runaway_cause or (" -- the model is memorising the training text: keep best.json "
                                  "(--checkpoint_dir), add --dropout, or train fewer steps")
        found.append(f"validation loss {val_loss:.3f} is {val_loss - smooth_loss:.2f} nats above training "
                     f"({smooth_loss:.3f}) at step {step:,}{cause}")
    return found
