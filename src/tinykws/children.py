"""Worker processes that end with their parent.

A pool worker keeps running when its parent is killed (SIGKILL gives the parent no chance to
stop it); on Linux `die_with_parent`, called first thing in the worker, asks the kernel to send
it SIGTERM when the parent goes (prctl PR_SET_PDEATHSIG). Elsewhere it does nothing.

Example:
    >>> die_with_parent()  # harmless in any process
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have this process receive SIGTERM when its parent exits (Linux only).

    Args:
        parent_pid: the parent's pid as the parent saw it; when the parent is already gone
            (this process was re-parented before the call), exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: nothing to do
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
