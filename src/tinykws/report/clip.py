"""One clip in one figure: waveform, magnitude spectrum, spectrogram, mel spectrogram and MFCC.

The spectrogram, band spectrogram and MFCC use the framing of the chosen front end, so the
picture shows what that front end sees. Example:

    tinykws data show data/sc/yes/0a7c2a8d_nohash_0.wav --out clip.png --frontend bark
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.data.audio import pad_or_trim, read_audio
from tinykws.features.frontend import FrontEnd, FrontEndConfig, frontend_config
from tinykws.io import save_figure

_DB_FLOOR = 1e-10  # power floor before dB: -100 dB, far below 16-bit quantisation noise
_DEFAULT_MFCC = 13


def plot_clip(
    path: str | os.PathLike,
    out_png: str | os.PathLike,
    frontend_name: str | dict[str, Any] | FrontEndConfig = "logmel",
) -> None:
    """Draw `path` (WAV/FLAC) with the front end `frontend_name` and save it to `out_png`.

    The clip is read at the front end's sample rate and centred in `clip_samples` samples, as
    for training. Raises `TinyKWSError` for an unreadable file or an unknown front end.
    """

    config = frontend_config(frontend_name)
    samples = pad_or_trim(read_audio(path, config.sample_rate_hz), config.clip_samples)
    title = f"{Path(path).name} - front end {_describe(frontend_name)}"
    save_figure(clip_figure(samples, config, title), out_png)


def _describe(frontend_name: Any) -> str:
    """The preset's name ("bark"; "bark, changed" for a recipe table that overrides it)."""
    if isinstance(frontend_name, str):
        return frontend_name
    if isinstance(frontend_name, dict) and isinstance(frontend_name.get("preset"), str):
        changed = set(frontend_name) - {"preset"}
        return frontend_name["preset"] + (", changed" if changed else "")
    return "custom"


def clip_figure(samples: np.ndarray, config: FrontEndConfig, title: str = ""):
    """A matplotlib Figure with the five panels of `plot_clip` for float32 (n,) samples."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 13), layout="constrained")
    axes = figure.subplots(5, 1)
    rate = config.sample_rate_hz
    duration_s = len(samples) / rate
    _plot_waveform(axes[0], samples, rate)
    _plot_magnitude_spectrum(axes[1], samples, rate)
    spectrogram = 10 * np.log10(FrontEnd(config).power_spectrogram(samples) + _DB_FLOOR)
    bands, cepstrum = _band_and_cepstrum_configs(config)
    images = [
        (spectrogram, rate / 2, "dB", "spectrogram", "frequency (Hz)"),
        (FrontEnd(bands).numpy(samples), _bins(bands), "", _band_title(bands), "band"),
        (
            FrontEnd(cepstrum).numpy(samples),
            cepstrum.n_mfcc,
            "",
            f"MFCC ({cepstrum.n_mfcc} coefficients)",
            "coefficient",
        ),
    ]
    for ax, (image, top, unit, panel_title, ylabel) in zip(axes[2:], images):
        _show(figure, ax, image, (0, duration_s, 0, top), unit)
        ax.set(title=panel_title, ylabel=ylabel)
    axes[4].set_xlabel("time (s)")
    if title:
        figure.suptitle(title)
    return figure


def _band_and_cepstrum_configs(config: FrontEndConfig) -> tuple[FrontEndConfig, FrontEndConfig]:
    """Band energies and MFCC with the front end's framing and bands; the one of the two the
    front end computes is exactly its output (resize included, e.g. cnn3's 128x64), the other
    is unresized (MFCC of a bark front end uses mel bands: MFCC is defined on the mel scale)."""
    if config.kind == "mfcc":
        return dataclasses.replace(config, kind="logmel", resize=None), config
    n_mfcc = min(_DEFAULT_MFCC, config.n_bands)
    cepstrum = dataclasses.replace(config, kind="mfcc", n_mfcc=n_mfcc, resize=None)
    return config, cepstrum


def _bins(config: FrontEndConfig) -> int:
    return config.resize[1] if config.resize else config.n_bands


def _band_title(config: FrontEndConfig) -> str:
    scale = "bark" if config.kind == "bark" else "mel"
    log = "log10" if config.log == "log10" else "ln"
    title = f"{scale} spectrogram ({config.n_bands} bands, {log}(x + {config.log_offset:g})"
    if config.resize:
        title += f", resized to {config.resize[0]}x{config.resize[1]}"
    return title + ")"


def _plot_waveform(ax, samples: np.ndarray, rate: int) -> None:
    ax.plot(np.arange(len(samples)) / rate, samples, linewidth=0.5)
    ax.set(title="waveform", xlabel="time (s)", ylabel="amplitude", ylim=(-1, 1))
    ax.set_xlim(0, len(samples) / rate)


def _plot_magnitude_spectrum(ax, samples: np.ndarray, rate: int) -> None:
    """Magnitude of the Hann-windowed FFT of the whole clip, in dB re full scale."""
    window = np.hanning(len(samples))
    magnitude = np.abs(np.fft.rfft(samples * window)) / window.sum()
    freqs_hz = np.fft.rfftfreq(len(samples), 1 / rate)
    ax.plot(freqs_hz, 20 * np.log10(magnitude + np.sqrt(_DB_FLOOR)), linewidth=0.5)
    ax.set(title="magnitude spectrum", xlabel="frequency (Hz)", ylabel="dB re full scale")
    ax.set_xlim(0, rate / 2)


def _show(figure, ax, frames_by_bins: np.ndarray, extent: tuple, unit: str) -> None:
    """(frames, bins) as an image: time across, bins upwards, with a colour bar."""
    image = ax.imshow(
        np.asarray(frames_by_bins).T, origin="lower", aspect="auto", extent=extent, cmap="magma"
    )
    figure.colorbar(image, ax=ax, label=unit)
