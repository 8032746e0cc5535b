"""The one exception type users see.

Every failure caused by input (a bad file, a missing folder, an unknown config key) raises
`TinyKWSError` with one sentence that says what is wrong, where, and how to fix it. The CLI prints
that sentence and exits with status 2; anything else is a bug and keeps its traceback.
"""


class TinyKWSError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class ConstraintFailed(TinyKWSError):
    """A deployment constraint (accuracy, flash, RAM, latency) was not met; exit status 1."""

    exit_code = 1
