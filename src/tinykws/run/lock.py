"""One run at a time per run directory.

`run_lock(folder)` takes an advisory lock (`fcntl.flock`) on `folder/.lock` and writes the
owner's pid and command line into it. The kernel drops the lock when its process ends, however
it ends, so a lock file left by a dead process is simply taken over; a second run on a folder
that is in use fails at once with a message that names the running one.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with run_lock(folder):
    ...     pass
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tinykws.errors import TinyKWSError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of run directory `folder` (created if needed) for the block.

    Raises:
        TinyKWSError: another process holds it.
    """
    if not enabled:
        yield
        return
    import fcntl

    path = Path(folder) / LOCK_FILE
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            raise TinyKWSError(
                f"{folder}: another run is using this folder ({owner}); wait for it to end "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove `folder` if it holds nothing but empty folders and its lock file."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder, topdown=False):
        if any(Path(root, f) != folder / LOCK_FILE for f in files):
            return
        for name in dirs:
            with contextlib.suppress(OSError):
                Path(root, name).rmdir()
    (folder / LOCK_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
