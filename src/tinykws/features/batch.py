"""The torch batch front end: the features of `tinykws.features.frontend.FrontEnd`, many clips at
a time on any device, and dataset features computed once and kept on disk.

The FFT is float64 (see `spectrum`), the rest runs in the samples' dtype; the result agrees with
the numpy reference `FrontEnd.numpy` to 1e-4 on log features.

Example:
    >>> import numpy as np, torch
    >>> frontend = FrontEnd("mfcc")
    >>> clips = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
    >>> reference = frontend.numpy(clips)
    >>> batched = batch_features(frontend, torch.from_numpy(clips)).numpy()
    >>> reference.shape, bool(np.abs(reference - batched).max() < 1e-4)
    ((2, 49, 10), True)
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import numpy as np
import torch

from tinykws.cache import cached_array, content_key
from tinykws.config import check_choice
from tinykws.errors import TinyKWSError
from tinykws.features.config import FrontEndConfig
from tinykws.features.filterbanks import bilinear_matrix
from tinykws.features.frontend import FrontEnd
from tinykws.features.spectrum import power_spectrum_cpu
from tinykws.progress import track

TORCH_LOGS = {"ln": torch.log, "log10": torch.log10}

# Torch copies of a front end's matrices, made once per front end, device and dtype.
_CONSTANTS: weakref.WeakKeyDictionary[FrontEnd, dict] = weakref.WeakKeyDictionary()


def batch_features(frontend: FrontEnd, samples: torch.Tensor, fft_backend: str = "auto"):
    """Batched features on the samples' device, in their dtype (float32 normally).

    Not differentiable: the front end is fixed preprocessing.

    Args:
        frontend: the `FrontEnd` whose features to compute.
        samples: torch float tensor (B, n) (or (n,)), values in [-1, 1].
        fft_backend: "auto" (numpy's pocketfft for CPU tensors, torch.fft elsewhere),
            "numpy" or "torch".

    Returns:
        tensor (B, frames, bins) (or (frames, bins)) on the same device.
    """
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TinyKWSError("frontend: torch path needs a floating-point torch tensor")
    check_choice("fft_backend", fft_backend, ("auto", "numpy", "torch"))
    c = frontend.config
    frontend.n_frames(samples.shape[-1])
    x = samples.detach().reshape(-1, samples.shape[-1])
    k = _constants(frontend, x.device, x.dtype)
    if fft_backend == "numpy" or (fft_backend == "auto" and x.device.type == "cpu"):
        power = power_spectrum_cpu(x.cpu().numpy(), frontend.framing, torch.get_num_threads())
        power = torch.from_numpy(power).to(device=x.device, dtype=x.dtype)
    else:
        power = power_spectrum_torch(x, k["window64"], c.hop_samples, c.n_fft)
    features = TORCH_LOGS[c.log](power @ k["filterbank_t"] + c.log_offset)
    if "dct_t" in k:
        features = features @ k["dct_t"]
    if c.resize is not None:
        features = _resize_rows(frontend, features.shape[-2], x.device, x.dtype) @ features
        features = features @ k["columns_t"]
    return features.reshape(*samples.shape[:-1], *features.shape[-2:])


def power_spectrum_torch(samples, window64, hop: int, n_fft: int):
    """Tensor version of `tinykws.features.spectrum.power_spectrum_cpu` with torch.fft, for any
    device.

    Args:
        samples: float tensor (B, n).
        window64: float64 tensor (window_length,) on the samples' device.
        hop: frame step in samples.
        n_fft: FFT length >= window_length.

    Returns:
        tensor (B, frames, n_fft // 2 + 1) in the samples' dtype.
    """
    frames = samples.to(torch.float64).unfold(-1, window64.shape[0], hop) * window64
    spectrum = torch.view_as_real(torch.fft.rfft(frames, n=n_fft))
    return spectrum.square().sum(-1).to(samples.dtype)


def _constants(frontend: FrontEnd, device, dtype) -> dict[str, Any]:
    """Torch copies of the front end's matrices, made once per device and dtype."""
    per_frontend = _CONSTANTS.setdefault(frontend, {})
    key = (str(device), dtype)
    if key not in per_frontend:

        def tensor(array: np.ndarray, as_dtype=dtype):
            return torch.tensor(np.ascontiguousarray(array), dtype=as_dtype, device=device)

        k = {
            "window64": tensor(frontend.window, torch.float64),
            "filterbank_t": tensor(frontend.filterbank.T),
            "rows": {},
        }
        if frontend.dct is not None:
            k["dct_t"] = tensor(frontend.dct.T)
        if frontend.config.resize is not None:
            bins = frontend.dct.shape[0] if frontend.dct is not None else frontend.config.n_bands
            k["columns_t"] = tensor(bilinear_matrix(frontend.config.resize[1], bins).T)
        per_frontend[key] = k
    return per_frontend[key]


def _resize_rows(frontend: FrontEnd, n_frames: int, device, dtype):
    rows = _constants(frontend, device, dtype)["rows"]
    if n_frames not in rows:
        matrix = bilinear_matrix(frontend.config.resize[0], n_frames)
        rows[n_frames] = torch.tensor(matrix, dtype=dtype, device=device)
    return rows[n_frames]


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
    frontend = frontend if isinstance(frontend, FrontEnd) else FrontEnd(frontend)
    out = np.zeros(_features_shape(frontend, waveforms), np.float32) if out is None else out
    starts = range(0, waveforms.shape[0], batch_size)
    with torch.inference_mode():
        for start in track(starts, "features"):
            block = np.asarray(waveforms[start : start + batch_size])
            if block.dtype == np.int16:
                block = block.astype(np.float32) / 32768.0
            x = torch.from_numpy(block.astype(np.float32, copy=False)).to(device)
            out[start : start + batch_size] = batch_features(frontend, x).cpu().numpy()
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
