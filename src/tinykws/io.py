"""Atomic file writing: a reader never sees a half-written file.

Everything tinykws writes goes to a temporary file in the destination folder and is renamed
into place, so an interrupted run leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tinykws.errors import TinyKWSError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _commit(tmp: str, path: Path) -> None:
    """The instant a written file appears (tests interrupt a run here, write by write)."""
    os.replace(tmp, path)


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """Read a JSON file that must hold an object; anything else is one clear error.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
        >>> write_json(p, {"a": 1})
        >>> read_json_object(p)
        {'a': 1}
    """

    try:
        value = json.loads(Path(path).read_text())
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise TinyKWSError(f"{path}: a damaged {what} (not a JSON object); remove it or redo it")
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text`, atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data`, atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Save numpy arrays to an .npz file atomically (load with `allow_pickle=False`)."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=suffix, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
