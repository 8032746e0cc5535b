"""Arrays computed once and kept on disk as memory-mapped .npy files.

A cached array is named by a key: a hash of everything that determines its content (front-end
config, file list with sizes and modification times, ...). A changed input gives a new key, so a
stale cache is never read; the array is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.config import to_dict

DEFAULT_CACHE_DIR = Path(os.environ.get("TINYKWS_CACHE", Path.home() / ".cache" / "tinykws"))


def content_key(*parts: Any) -> str:
    """A short sha256 of `parts` (configs, lists of strings, numbers), stable across runs.

    Example:
        >>> content_key({"a": 1}, ["x.wav"]) == content_key({"a": 1}, ["x.wav"])
        True
    """
    text = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_array(
    cache_dir: str | os.PathLike | None,
    name: str,
    key: str,
    shape: tuple[int, ...],
    dtype: Any,
    fill: Callable[[np.ndarray], None],
) -> np.ndarray:
    """Return the array `name`-`key`.npy from `cache_dir`, computing it with `fill` if absent.

    `fill(out)` receives a writable array of `shape`/`dtype` and fills it in place (it may be a
    memory map, so arrays larger than RAM work). With `cache_dir=None` nothing touches the disk.
    The returned array is a read-only memory map when cached.
    """
    if cache_dir is None:
        out = np.zeros(shape, dtype=dtype)
        fill(out)
        return out
    path = Path(cache_dir) / f"{name}-{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r", allow_pickle=False)
            if cached.shape == tuple(shape) and cached.dtype == np.dtype(dtype):
                return cached
        except (ValueError, OSError):
            pass  # a damaged cache file is rebuilt below
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        fill(out)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(path, mmap_mode="r", allow_pickle=False)
