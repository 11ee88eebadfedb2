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
