"""The `tinykws` logger: warnings and progress notes go to stderr as one line each."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("tinykws")


def setup(verbose: bool = False) -> None:
    """Print tinykws log records as `warning: ...` / `info` lines on stderr (once per process)."""
    if logger.handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


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
