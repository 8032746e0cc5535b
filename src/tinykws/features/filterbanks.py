"""The matrices behind the front end: windows, mel/bark filterbanks, DCT-II and bilinear resize.

Everything here is built once in float64 numpy; `tinykws.features.frontend.FrontEnd` uses the same
matrices in its numpy reference and (converted) in its torch path, so both compute one formula.

Frequency scales (`SCALES`), each a pair (hz -> scale, scale -> hz):

- ``htk``: mel = 2595 log10(1 + f / 700) (librosa ``htk=True``, TensorFlow, HTK).
- ``slaney``: linear below 1 kHz (f / (200/3)), logarithmic above (librosa's default,
  Slaney's Auditory Toolbox).
- ``bark``: Traunmüller (1990), z = 26.81 f / (1960 + f) - 0.53, with his corrections
  z + 0.15 (2 - z) below 2 Bark and z + 0.22 (z - 20.1) above 20.1 Bark (the formula MATLAB's
  ``hz2bark`` documents).

Example:
    >>> fb = triangular_filterbank(FilterbankSpec("htk", 40, 512, 16000, 20.0, 8000.0))
    >>> fb.shape
    (40, 257)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL  # 15 mel
_SLANEY_LOG_STEP = np.log(6.4) / 27.0  # the log-region step per mel: 6.4x over 27 mels


def hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    """HTK mel: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_htk_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel_htk`."""
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney mel: linear below 1 kHz, logarithmic above (librosa's `hz_to_mel(htk=False)`)."""
    hz = np.asarray(hz, np.float64)
    ratio = np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ
    log_part = _SLANEY_BREAK_MEL + np.log(ratio) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log_part, hz / _SLANEY_HZ_PER_MEL)


def mel_slaney_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel_slaney`."""
    mel = np.asarray(mel, np.float64)
    log_part = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, log_part, mel * _SLANEY_HZ_PER_MEL)


def hz_to_bark(hz: np.ndarray) -> np.ndarray:
    """Traunmüller's Bark scale with his low (< 2 Bark) and high (> 20.1 Bark) corrections.

    Example:
        >>> round(float(hz_to_bark(1000.0)), 3)
        8.527
    """
    hz = np.asarray(hz, np.float64)
    bark = 26.81 * hz / (1960.0 + hz) - 0.53
    bark = np.where(bark < 2.0, bark + 0.15 * (2.0 - bark), bark)
    return np.where(bark > 20.1, bark + 0.22 * (bark - 20.1), bark)


def bark_to_hz(bark: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_bark` (the corrections are linear, so they invert exactly)."""
    bark = np.asarray(bark, np.float64)
    bark = np.where(bark < 2.0, (bark - 0.3) / 0.85, bark)
    bark = np.where(bark > 20.1, (bark + 0.22 * 20.1) / 1.22, bark)
    return 1960.0 * (bark + 0.53) / (26.28 - bark)


Scale = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
SCALES: dict[str, Scale] = {
    "htk": (hz_to_mel_htk, mel_htk_to_hz),
    "slaney": (hz_to_mel_slaney, mel_slaney_to_hz),
    "bark": (hz_to_bark, bark_to_hz),
}


@dataclass(frozen=True)
class FilterbankSpec:
    """What a triangular filterbank is made of.

    Attributes:
        scale: a key of `SCALES` ("htk", "slaney" or "bark").
        n_bands: number of triangles.
        n_fft: FFT length; the filterbank has n_fft // 2 + 1 columns.
        sample_rate_hz: sampling rate of the audio.
        fmin_hz: lower edge of the first triangle.
        fmax_hz: upper edge of the last triangle (<= sample_rate_hz / 2).
        norm: "none" (every triangle peaks at 1) or "area" (triangle i is scaled by
            2 / (upper_i - lower_i) in Hz, librosa's `norm="slaney"`).
    """

    scale: str
    n_bands: int
    n_fft: int
    sample_rate_hz: int
    fmin_hz: float
    fmax_hz: float
    norm: str = "none"


def band_edges_hz(spec: FilterbankSpec) -> np.ndarray:
    """The n_bands + 2 edge/centre frequencies, uniformly spaced on the spec's scale."""
    to_scale, to_hz = SCALES[spec.scale]
    points = np.linspace(to_scale(spec.fmin_hz), to_scale(spec.fmax_hz), spec.n_bands + 2)
    return to_hz(points)


def triangular_filterbank(spec: FilterbankSpec) -> np.ndarray:
    """Triangular filters, uniformly spaced on a frequency scale, as a (n_bands, n_fft//2+1) matrix.

    Triangle i rises linearly in Hz from edge i to edge i + 1 and falls to edge i + 2 (the
    construction of librosa's `filters.mel`), evaluated at the FFT bin frequencies.

    Returns:
        float64 array (n_bands, n_fft // 2 + 1); multiply a power spectrum by its transpose.
    """
    bins_hz = np.linspace(0.0, spec.sample_rate_hz / 2.0, spec.n_fft // 2 + 1)
    edges = band_edges_hz(spec)
    widths = np.diff(edges)
    ramps = edges[:, None] - bins_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if spec.norm == "area":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def periodic_window(name: str, length: int) -> np.ndarray:
    """A periodic ("DFT-even") Hann or Hamming window of `length` samples, float64.

    Example:
        >>> periodic_window("hann", 4).round(12).tolist()
        [0.0, 0.5, 1.0, 0.5]
    """
    a0 = WINDOW_COEFFICIENTS[name]
    phase = 2.0 * np.pi * np.arange(length) / length
    return a0 - (1.0 - a0) * np.cos(phase)


WINDOW_COEFFICIENTS = {"hann": 0.5, "hamming": 0.54}


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II as a (n_out, n_in) matrix: the first n_out rows of scipy's
    `dct(type=2, norm="ortho")`, so `coefficients = dct_matrix(k, n) @ x`."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    matrix = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    matrix[0] /= np.sqrt(2.0)
    return matrix


@lru_cache(maxsize=64)
def bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation from n_in to n_out points as a (n_out, n_in) matrix.

    Half-pixel centres (PyTorch's `interpolate(..., align_corners=False)` without antialias):
    output i samples the input at x = (i + 0.5) n_in / n_out - 0.5, clamped at 0, mixing
    floor(x) and floor(x) + 1 (the last index repeats at the edge). Applying it along both
    axes is bilinear resizing. The returned array is shared: do not modify it.
    """
    source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = source - low
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix.flags.writeable = False
    return matrix
