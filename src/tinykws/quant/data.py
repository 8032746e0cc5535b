"""The data quantization reads: calibration features, model inputs, and QAT training data.

Example:
    >>> import numpy as np
    >>> from tinykws.features import Normalization
    >>> norm = Normalization(mean=(1.0, 1.0), std=(2.0, 2.0))
    >>> [b.shape for b in feature_batches(np.ones((5, 3, 2), np.float32), norm, batch_size=4)]
    [torch.Size([4, 1, 3, 2]), torch.Size([1, 1, 3, 2])]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError


def feature_batches(features, normalization, batch_size: int = 256, device=None) -> Iterator:
    """Model inputs (B, 1, frames, bins) float32 from un-normalised features (N, frames, bins)."""
    import torch

    for start in range(0, len(features), batch_size):
        chunk = torch.from_numpy(np.array(features[start : start + batch_size], np.float32))
        if device is not None:
            chunk = chunk.to(device)
        yield normalization.apply_torch(chunk).unsqueeze(1)


def calibration_features(dataset, frontend, config, cache_dir=None) -> np.ndarray:
    """Features of `config.calibration_per_class` clips per class of the calibration split."""
    from tinykws.data.speech_commands import load_waveforms, waveforms_key
    from tinykws.features import cached_features

    clips = dataset.calibration_set(
        config.calibration_per_class, config.calibration_split, config.seed
    )
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
    from tinykws.predictor import frontend, model_dataset, normalization
    from tinykws.quant import QuantData
    from tinykws.train import load_training_data

    dataset = model_dataset(meta, root)
    fe, norm = frontend(meta), normalization(meta)
    calibration = calibration_features(dataset, fe, config, cache_dir)
    training = load_training_data(dataset, fe, norm, cache_dir) if need_training else None
    return QuantData(calibration, norm, training)
