"""The data quantization reads: calibration features, model inputs, and QAT training data.

Example:
    >>> import numpy as np
    >>> from tinykws.features.frontend import Normalization
    >>> norm = Normalization(mean=(1.0, 1.0), std=(2.0, 2.0))
    >>> [b.shape for b in feature_batches(np.ones((5, 3, 2), np.float32), norm, batch_size=4)]
    [torch.Size([4, 1, 3, 2]), torch.Size([1, 1, 3, 2])]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from tinykws.data.speech_commands import load_waveforms, waveforms_key
from tinykws.errors import TinyKWSError
from tinykws.features.batch import cached_features
from tinykws.quant import QuantData
from tinykws.train.loop import load_training_data
from tinykws.train.model_file import frontend, model_dataset, normalization


def feature_batches(features, normalization, batch_size: int = 256, device=None) -> Iterator:
    """Model inputs (B, 1, frames, bins) float32 from un-normalised features (N, frames, bins)."""
    for start in range(0, len(features), batch_size):
        chunk = torch.from_numpy(np.array(features[start : start + batch_size], np.float32))
        if device is not None:
            chunk = chunk.to(device)
        yield normalization.apply_torch(chunk).unsqueeze(1)


def stratified_counts(class_sizes, total: int, seed: int = 0) -> list[int]:
    """How many of `total` clips each class gives: its share of the split, rounded down, and
    the clips left over to the largest remainders (ties in a seeded random order). Never more
    than a class holds; every clip when `total` exceeds the split.

    Example:
        >>> stratified_counts([50, 30, 20], 10)
        [5, 3, 2]
        >>> stratified_counts([5, 5, 5], 4, seed=0), stratified_counts([5, 5, 5], 100)
        ([1, 2, 1], [5, 5, 5])
    """
    sizes = np.asarray(class_sizes, np.int64)
    if total >= sizes.sum():
        return [int(n) for n in sizes]
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(np.int64)
    tiebreak = np.random.default_rng(seed).permutation(len(sizes))
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - counts[i]), tiebreak[i]))
    for i in order[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(n) for n in counts]


def calibration_clips(dataset, config) -> list:
    """The calibration clips: `config.calibration_clips` in total (stratified, seeded) when
    set, else `config.calibration_per_class` of every class; sorted by class, then file."""
    split, seed = config.calibration_split, config.seed
    if config.calibration_clips is None:
        return dataset.calibration_set(config.calibration_per_class, split, seed)
    members = [[c for c in dataset.clips(split) if c.label == label] for label in dataset.labels]
    counts = stratified_counts([len(m) for m in members], config.calibration_clips, seed)
    rng = np.random.default_rng(seed)
    chosen = []
    for clips, count in zip(members, counts):
        chosen += [clips[i] for i in sorted(rng.choice(len(clips), count, replace=False))]
    return chosen


def calibration_features(dataset, frontend, config, cache_dir=None) -> np.ndarray:
    """Features of the calibration clips (`calibration_clips`) of the calibration split."""
    clips = calibration_clips(dataset, config)
    if not clips:
        raise TinyKWSError(
            f"quantize: the '{config.calibration_split}' split has no clips to "
            f"calibrate on; choose another calibration_split"
        )
    waves = load_waveforms(clips, cache_dir=cache_dir)
    return np.asarray(cached_features(cache_dir, frontend, waves, waveforms_key(clips)))


def quant_data_for(meta: dict, root: str | Path, config, need_training: bool, cache_dir=None):
    """`QuantData` for a model (its metadata) and a dataset folder: the calibration set, and the
    training data when `need_training` (QAT)."""
    dataset = model_dataset(meta, root)
    fe, norm = frontend(meta), normalization(meta)
    calibration = calibration_features(dataset, fe, config, cache_dir)
    training = load_training_data(dataset, fe, norm, cache_dir) if need_training else None
    return QuantData(calibration, norm, training)
