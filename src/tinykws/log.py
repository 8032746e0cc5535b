"""The `tinykws` logger: warnings and progress notes go to stderr as one line each."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("tinykws")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (it may be replaced)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.getMessage()}"
        return record.getMessage()


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(_Formatter())


def setup(verbose: bool = False) -> None:
    """Print tinykws log records as `warning: ...` / `info` lines on the current stderr.

    Every CLI run calls it, so it looks for its own handler rather than for any handler: other
    code (a test runner's log capture, a caller's handler) may have added handlers of its own or
    removed this one, and the verbosity of this run replaces that of an earlier run.

    Example:
        >>> setup(); setup(verbose=True)
        >>> logger.handlers.count(_HANDLER), logging.getLevelName(logger.level)
        (1, 'DEBUG')
        >>> setup()
    """
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
