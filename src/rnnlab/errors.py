"""The one exception type users see.

Every problem caused by what the user asked for (a missing file, a bad hyper-parameter, a checkpoint that
does not fit) raises :class:`RnnlabError` with a message that names the problem *and* the fix. The CLI turns
it into a single line on stderr and exit status 2; library callers can catch it like a ``ValueError``.
"""


class RnnlabError(ValueError):
    """A user-facing error: the message says what is wrong and how to fix it."""


class TrainingDiverged(RnnlabError):
    """Training blew up: a nan/inf loss or gradient, or a loss far above where it started."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`RnnlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise RnnlabError(message)


OVERFLOW = ("the model computes infinite or NaN values with this checkpoint's weights (they overflow): the "
            "checkpoint is damaged or its run diverged; use another checkpoint")


def require_finite(values, what: str = "the model") -> None:
    """Refuse non-finite ``values`` that a computation produced from finite but huge inputs (e.g. weights of
    1e38 that overflow float32 in the first product): never a silent wrong answer, never a page of NaN."""
    import numpy as np
    if not np.isfinite(values).all():
        raise RnnlabError(OVERFLOW if what == "the model" else f"{what} is infinite or NaN: {OVERFLOW}")
