"""Per-bin feature normalisation whose statistics travel with the model as plain numbers.

Example:
    >>> import json
    >>> norm = Normalization(mean=(1.0, 2.0), std=(0.5, 4.0))
    >>> Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinykws.config import from_dict
from tinykws.errors import TinyKWSError


@dataclass(frozen=True)
class Normalization:
    """Per-bin feature statistics: x -> (x - mean) / std, stored with the model as plain tuples.

    Example:
        >>> import numpy as np
        >>> norm = Normalization.fit(np.arange(12, dtype=np.float32).reshape(2, 3, 2))
        >>> norm.mean, norm.apply_numpy(np.array([[5.0, 6.0]])).tolist()
        ((5.0, 6.0), [[0.0, 0.0]])
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    MIN_STD = 1e-3  # a (nearly) constant bin is shifted, not blown up

    def __post_init__(self) -> None:
        # Lists (from JSON) and numpy scalars become tuples of floats, so equality and JSON work.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise TinyKWSError(
                f"normalization: mean and std need the same, non-zero length; got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if not all(s > 0 for s in self.std) or not np.isfinite(self.mean + self.std).all():
            raise TinyKWSError("normalization: std must be > 0 and all values finite")

    @classmethod
    def fit(cls, features: np.ndarray, chunk: int = 1024) -> Normalization:
        """Mean and std of every bin over clips and frames of (N, T, F) features (may be a
        memory map: read `chunk` clips at a time, combined with Chan's parallel variance)."""
        if features.ndim != 3 or features.shape[0] == 0:
            raise TinyKWSError(f"normalization: need (clips, frames, bins); got {features.shape}")
        count, mean, m2 = 0, np.zeros(features.shape[-1]), np.zeros(features.shape[-1])
        for start in range(0, features.shape[0], chunk):
            block = np.asarray(features[start : start + chunk], np.float64)
            block = block.reshape(-1, block.shape[-1])
            n, block_mean = block.shape[0], block.mean(axis=0)
            block_m2 = ((block - block_mean) ** 2).sum(axis=0)
            delta = block_mean - mean
            mean = mean + delta * n / (count + n)
            m2 = m2 + block_m2 + delta**2 * count * n / (count + n)
            count += n
        std = np.maximum(np.sqrt(m2 / count), cls.MIN_STD)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of `to_dict` (e.g. read back from a checkpoint's JSON)."""
        return from_dict(cls, data, "normalization")

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def apply_numpy(self, features: np.ndarray) -> np.ndarray:
        """Normalise (..., F) features; float32 out."""
        mean = np.asarray(self.mean, np.float32)
        return ((features - mean) / np.asarray(self.std, np.float32)).astype(np.float32)

    def apply_torch(self, features):
        """Normalise a (..., F) tensor on its own device and dtype."""
        mean, std = features.new_tensor(self.mean), features.new_tensor(self.std)
        return (features - mean) / std
