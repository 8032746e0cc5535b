"""Front ends: log-mel, MFCC and bark spectra from 1 s clips, defined once: the numpy reference.

One `FrontEndConfig` drives this numpy reference (float64 inside, float32 out) and the batched
torch path of `tinykws.features.batch`, which agrees with it to 1e-4 on log features for any
input (see `spectrum` for why the FFT needs float64). This module needs numpy only, so code
generators and integer runtimes read front ends without torch. The steps of every kind:

1. frames of `window_ms` every `hop_ms` (no padding: frames = 1 + (samples - window) // hop),
   each multiplied by a periodic Hann or Hamming window and zero-padded at the end to `n_fft`;
2. power spectrum |rfft|^2;
3. triangular filterbank, uniform on the mel scale (``htk`` or ``slaney``, see
   `filterbanks`) for ``logmel``/``mfcc``, on Traunmüller's Bark scale for ``bark``;
4. log(bands + log_offset), natural (``ln``) or base 10 (``log10``);
5. ``mfcc`` only: orthonormal DCT-II, first `n_mfcc` coefficients;
6. optional bilinear `resize` to (frames, bins), half-pixel centres (align_corners=False).

With `window_ms * sample_rate_hz / 1000 == n_fft` this equals librosa's
``log(melspectrogram(center=False, power=2, htk=..., norm=...) + offset)``; with a shorter window
librosa centres the window inside n_fft, which gives the same numbers on a signal padded by
(n_fft - window) / 2 zeros each side.

Features are (frames, bins): time first. Configs and presets live in `tinykws.features.config`.

Example:
    >>> import numpy as np
    >>> frontend = FrontEnd("logmel")
    >>> frontend.numpy(np.zeros(16000, np.float32)).shape
    (98, 40)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.features.config import FRONTEND_PRESETS, FrontEndConfig, frontend_config
from tinykws.features.filterbanks import (
    FilterbankSpec,
    bilinear_matrix,
    dct_matrix,
    periodic_window,
    triangular_filterbank,
)
from tinykws.features.normalization import Normalization
from tinykws.features.spectrum import Framing, power_spectrum

LOGS = {"ln": np.log, "log10": np.log10}

__all__ = ["FRONTEND_PRESETS", "FrontEnd", "FrontEndConfig", "Normalization", "frontend_config"]


class FrontEnd:
    """Computes the features of a `FrontEndConfig` with numpy (the reference).

    The window, filterbank, DCT and resize matrices are built once (float64);
    `tinykws.features.batch.batch_features` runs the same matrices batched in torch.

    Example:
        >>> import numpy as np
        >>> frontend = FrontEnd("mfcc")
        >>> clips = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
        >>> frontend.numpy(clips).shape
        (2, 49, 10)
    """

    def __init__(self, config: FrontEndConfig | str | dict[str, Any] = "logmel") -> None:
        self.config = frontend_config(config)
        c = self.config
        self.window = periodic_window(c.window, c.window_samples)
        self.filterbank = triangular_filterbank(
            FilterbankSpec(
                c.scale, c.n_bands, c.n_fft, c.sample_rate_hz, c.fmin_hz, c.fmax_hz, c.band_norm
            )
        )
        self.dct = dct_matrix(c.n_mfcc, c.n_bands) if c.kind == "mfcc" else None
        self.framing = Framing(self.window, c.hop_samples, c.n_fft)

    def __repr__(self) -> str:
        return f"FrontEnd({self.config!r})"

    @property
    def output_shape(self) -> tuple[int, int]:
        """(frames, bins) of one clip of `config.clip_samples` samples."""
        return self.shape_for(self.config.clip_samples)

    def n_frames(self, n_samples: int) -> int:
        """Frames before resizing for `n_samples` samples (no padding)."""
        c = self.config
        if n_samples < c.window_samples:
            raise TinyKWSError(
                f"frontend: {n_samples} samples is shorter than one {c.window_ms} ms window "
                f"({c.window_samples} samples); pad the audio"
            )
        return 1 + (n_samples - c.window_samples) // c.hop_samples

    def shape_for(self, n_samples: int) -> tuple[int, int]:
        """(frames, bins) of the features of `n_samples` samples."""
        c = self.config
        if c.resize is not None:
            self.n_frames(n_samples)  # still reject audio shorter than a window
            return tuple(c.resize)
        bins = c.n_mfcc if c.kind == "mfcc" else c.n_bands
        return (self.n_frames(n_samples), bins)

    def power_spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """|rfft|^2 of the windowed frames, float64 (..., frames, n_fft // 2 + 1)."""
        self.n_frames(np.shape(samples)[-1])
        return power_spectrum(samples, self.framing)

    def numpy(self, samples: np.ndarray) -> np.ndarray:
        """Reference features, float64 inside.

        Args:
            samples: float32 (n,) or (B, n), values in [-1, 1].

        Returns:
            float32 (frames, bins) or (B, frames, bins).
        """
        x = _check_float_samples(np.asarray(samples))
        c = self.config
        features = LOGS[c.log](self.power_spectrogram(x) @ self.filterbank.T + c.log_offset)
        if self.dct is not None:
            features = features @ self.dct.T
        if c.resize is not None:
            rows = bilinear_matrix(c.resize[0], features.shape[-2])
            features = rows @ features @ bilinear_matrix(c.resize[1], features.shape[-1]).T
        return features.astype(np.float32)


def _check_float_samples(x: np.ndarray) -> np.ndarray:
    if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.floating):
        raise TinyKWSError(
            f"frontend: samples must be float (n,) or (batch, n); got {x.dtype} {x.shape}"
        )
    return x
