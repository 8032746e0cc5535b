"""Front ends: log-mel, MFCC and bark spectra from 1 s clips, defined once and computed two ways.

One `FrontEndConfig` drives a numpy reference (float64 inside, float32 out) and a batched torch
path (float64 FFT, float32 after it, on the samples' device); they agree to 1e-4 on log features
for any input (see `spectrum` for why the FFT needs float64). The steps of every kind:

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

import os
from typing import Any

import numpy as np

from tinykws.cache import cached_array, content_key
from tinykws.config import check_choice
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
from tinykws.features.spectrum import (
    Framing,
    power_spectrum,
    power_spectrum_cpu,
    power_spectrum_torch,
)

LOGS = {"ln": np.log, "log10": np.log10}

__all__ = [
    "FRONTEND_PRESETS",
    "FrontEnd",
    "FrontEndConfig",
    "Normalization",
    "cached_features",
    "compute_features",
    "frontend_config",
]


class FrontEnd:
    """Computes the features of a `FrontEndConfig` with numpy (reference) or torch (batched).

    The window, filterbank, DCT and resize matrices are built once (float64) and converted to
    torch once per device and dtype.

    Example:
        >>> import numpy as np, torch
        >>> frontend = FrontEnd("mfcc")
        >>> clips = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
        >>> reference = frontend.numpy(clips)
        >>> batched = frontend.torch(torch.from_numpy(clips)).numpy()
        >>> reference.shape, bool(np.abs(reference - batched).max() < 1e-4)
        ((2, 49, 10), True)
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
        self._torch_constants: dict[Any, dict[str, Any]] = {}

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

    def torch(self, samples, fft_backend: str = "auto"):
        """Batched features on the samples' device, in their dtype (float32 normally).

        The FFT is float64 (see `spectrum`), the rest runs in the samples' dtype. Not
        differentiable: the front end is fixed preprocessing.

        Args:
            samples: torch float tensor (B, n) (or (n,)), values in [-1, 1].
            fft_backend: "auto" (numpy's pocketfft for CPU tensors, torch.fft elsewhere),
                "numpy" or "torch".

        Returns:
            tensor (B, frames, bins) (or (frames, bins)) on the same device.
        """
        import torch

        if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
            raise TinyKWSError("frontend: torch path needs a floating-point torch tensor")
        check_choice("fft_backend", fft_backend, ("auto", "numpy", "torch"))
        c = self.config
        self.n_frames(samples.shape[-1])
        x = samples.detach().reshape(-1, samples.shape[-1])
        k = self._constants(x.device, x.dtype)
        if fft_backend == "numpy" or (fft_backend == "auto" and x.device.type == "cpu"):
            power = power_spectrum_cpu(x.cpu().numpy(), self.framing, torch.get_num_threads())
            power = torch.from_numpy(power).to(device=x.device, dtype=x.dtype)
        else:
            power = power_spectrum_torch(x, k["window64"], c.hop_samples, c.n_fft)
        features = TORCH_LOGS[c.log](power @ k["filterbank_t"] + c.log_offset)
        if "dct_t" in k:
            features = features @ k["dct_t"]
        if c.resize is not None:
            features = self._resize_rows(features.shape[-2], x.device, x.dtype) @ features
            features = features @ k["columns_t"]
        return features.reshape(*samples.shape[:-1], *features.shape[-2:])

    def _constants(self, device, dtype) -> dict[str, Any]:
        """Torch copies of the matrices, made once per device and dtype."""
        import torch

        key = (str(device), dtype)
        if key not in self._torch_constants:

            def tensor(array: np.ndarray, as_dtype=dtype):
                return torch.tensor(np.ascontiguousarray(array), dtype=as_dtype, device=device)

            k = {
                "window64": tensor(self.window, torch.float64),
                "filterbank_t": tensor(self.filterbank.T),
                "rows": {},
            }
            if self.dct is not None:
                k["dct_t"] = tensor(self.dct.T)
            if self.config.resize is not None:
                bins = self.dct.shape[0] if self.dct is not None else self.config.n_bands
                k["columns_t"] = tensor(bilinear_matrix(self.config.resize[1], bins).T)
            self._torch_constants[key] = k
        return self._torch_constants[key]

    def _resize_rows(self, n_frames: int, device, dtype):
        import torch

        rows = self._constants(device, dtype)["rows"]
        if n_frames not in rows:
            matrix = bilinear_matrix(self.config.resize[0], n_frames)
            rows[n_frames] = torch.tensor(matrix, dtype=dtype, device=device)
        return rows[n_frames]


def _torch_log10(x):
    return x.log10()


def _torch_ln(x):
    return x.log()


TORCH_LOGS = {"ln": _torch_ln, "log10": _torch_log10}


def _check_float_samples(x: np.ndarray) -> np.ndarray:
    if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.floating):
        raise TinyKWSError(
            f"frontend: samples must be float (n,) or (batch, n); got {x.dtype} {x.shape}"
        )
    return x


def _features_shape(frontend: FrontEnd, waveforms: np.ndarray) -> tuple[int, int, int]:
    """(clips, frames, bins) for (clips, samples) waveforms, or a one-line error."""
    if waveforms.ndim != 2 or waveforms.dtype not in (np.int16, np.float32, np.float64):
        raise TinyKWSError(
            f"features: waveforms must be (clips, samples) int16 or float32; "
            f"got {waveforms.dtype} {waveforms.shape}"
        )
    return (waveforms.shape[0], *frontend.shape_for(waveforms.shape[1]))


def compute_features(
    waveforms: np.ndarray,
    frontend: FrontEnd | FrontEndConfig | str,
    batch_size: int = 256,
    *,
    device: str = "cpu",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Features of many clips with the torch path, batch by batch, with a progress bar.

    Args:
        waveforms: (N, n) int16 (scaled by 1/32768) or float32 in [-1, 1]; may be a memory map.
        frontend: a FrontEnd, config or preset name.
        batch_size: clips per torch call.
        device: torch device to compute on ("cpu", "cuda", ...).
        out: optional float32 (N, frames, bins) array to fill (e.g. a memory map).

    Returns:
        float32 (N, frames, bins), `out` when given.
    """
    import torch

    from tinykws.progress import track

    frontend = frontend if isinstance(frontend, FrontEnd) else FrontEnd(frontend)
    out = np.zeros(_features_shape(frontend, waveforms), np.float32) if out is None else out
    starts = range(0, waveforms.shape[0], batch_size)
    with torch.inference_mode():
        for start in track(starts, "features"):
            block = np.asarray(waveforms[start : start + batch_size])
            if block.dtype == np.int16:
                block = block.astype(np.float32) / 32768.0
            x = torch.from_numpy(block.astype(np.float32, copy=False)).to(device)
            out[start : start + batch_size] = frontend.torch(x).cpu().numpy()
    return out


def cached_features(
    cache_dir: str | os.PathLike | None,
    frontend: FrontEnd | FrontEndConfig | str,
    waveforms: np.ndarray,
    waveforms_key: str,
    batch_size: int = 256,
) -> np.ndarray:
    """`compute_features`, kept on disk as a memory-mapped float32 .npy.

    The file is named by a hash of the front-end config and `waveforms_key` (a key that names
    the clips, e.g. `tinykws.data.speech_commands.waveforms_key`), so a change to either gives a
    new file and an unchanged pair reads the existing one without computing anything.
    """
    frontend = frontend if isinstance(frontend, FrontEnd) else FrontEnd(frontend)
    shape = _features_shape(frontend, waveforms)

    def fill(out: np.ndarray) -> None:
        compute_features(waveforms, frontend, batch_size, out=out)

    key = content_key(frontend.config, waveforms_key)
    return cached_array(cache_dir, "features", key, shape, np.float32, fill)
