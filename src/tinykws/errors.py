"""The one exception type users see.

Every failure caused by input (a bad file, a missing folder, an unknown config key) raises
`TinyKWSError` with one sentence that says what is wrong, where, and how to fix it. The CLI prints
that sentence and exits with status 2. A filesystem failure (`OSError`) is the user's too: it is
reported the same way (`describe_os_error`). Anything else is a bug: the CLI writes its
traceback to a log file and prints one line naming that file.
"""

from __future__ import annotations

import errno
import os
import re

_OS_HINTS = {
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.EACCES: "permission denied; choose a place you can write to or fix its permissions",
    errno.EPERM: "operation not permitted; choose another place",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists; remove it or choose another path",
    errno.ENOSPC: "no space left on the device; free some space and run again",
    errno.EROFS: "a read-only file system; choose another place",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


class TinyKWSError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class ConstraintFailed(TinyKWSError):
    """A deployment constraint (accuracy, flash, RAM, latency) was not met; exit status 1."""

    exit_code = 1


def describe_os_error(exc: OSError) -> str:
    """One sentence for a filesystem error: the path, what went wrong, what to do.

    Example:
        >>> describe_os_error(NotADirectoryError(20, "Not a directory", "out/x.json"))
        'out/x.json: a file stands where a folder is needed; choose another path'
    """
    # a rename names its destination second; a temporary file's name means nothing to a user
    where = str(exc.filename2 if exc.filename2 is not None else exc.filename or "")
    where = re.sub(r"(^|/)\.([^/]+)\.[^./]{8}\.tmp$", r"\1\2", where)
    code = exc.errno
    if code == errno.EEXIST and os.path.exists(where) and not os.path.isdir(where):
        code = errno.ENOTDIR  # mkdir of a folder whose name a file already has
    what = _OS_HINTS.get(code) or (exc.strerror or str(exc) or type(exc).__name__)
    return f"{where}: {what}" if where else f"{what} ({type(exc).__name__})"
