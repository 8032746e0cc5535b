"""Front-end configs: every field of a `FrontEndConfig`, validated, and the named presets.

Presets (`FRONTEND_PRESETS`), shapes as (frames, bins) of a 1 s clip at 16 kHz:

=========  ========================================================================  ========
logmel     30 ms / 10 ms, 512 FFT, 40 HTK mel bands 20 Hz-8 kHz, ln(x + 1e-6)           98x40
mfcc       DS-CNN ("Hello Edge"): 40 ms / 20 ms, 40 mel 20 Hz-4 kHz, 10 MFCC             49x10
bark       MATLAB's speech-command example: 25 ms / 10 ms periodic Hann, 512 FFT,
           50 Bark bands 0-8 kHz, log10(x + 1e-6)                                        98x50
micro      TFLite Micro micro_speech input shape: 30 ms / 20 ms, 40 mel 125-7500 Hz      49x40
           (same shape, computed as float log-mel, not TFLM's fixed-point front end)
cnn3       STFT 256 / 128 samples, 64 mel 0-8 kHz, ln(x + 1e-6), resized to 128x64      128x64
gostop     32 ms / 32 ms, 25 mel 0-8 kHz, 13 MFCC                                        31x13
=========  ========================================================================  ========

Example:
    >>> frontend_config({"preset": "bark", "n_bands": 32}).window_ms
    25.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tinykws.config import check_choice, from_dict, to_dict, unknown_key_message
from tinykws.errors import TinyKWSError
from tinykws.features.filterbanks import WINDOW_COEFFICIENTS

KINDS = ("logmel", "mfcc", "bark")
MEL_SCALES = ("htk", "slaney")
BAND_NORMS = ("none", "area")
LOG_BASES = ("ln", "log10")


@dataclass(frozen=True)
class FrontEndConfig:
    """How a clip becomes a (frames, bins) feature matrix.

    Attributes:
        kind: "logmel", "mfcc" or "bark".
        sample_rate_hz: rate of the input samples.
        clip_samples: clip length the model sees (fixes `FrontEnd.output_shape`).
        window_ms: frame length; window_ms * sample_rate_hz / 1000 samples (rounded).
        hop_ms: frame step, at most `window_ms`.
        n_fft: FFT length, at least the window length (frames are zero-padded at the end).
        window: "hann" or "hamming", both periodic.
        n_bands: number of mel (or Bark) filters.
        fmin_hz, fmax_hz: filterbank range, 0 <= fmin_hz < fmax_hz <= sample_rate_hz / 2.
        mel_scale: "htk" or "slaney" (ignored by "bark", which uses the Bark scale).
        band_norm: "none" (triangles peak at 1) or "area" (librosa's norm="slaney").
        log: "ln" or "log10".
        log_offset: added before the log, > 0.
        n_mfcc: DCT coefficients kept by "mfcc", 1..n_bands (ignored by other kinds).
        resize: optional (frames, bins) output shape, bilinear.
    """

    kind: str = "logmel"
    sample_rate_hz: int = 16000
    clip_samples: int = 16000
    window_ms: float = 30.0
    hop_ms: float = 10.0
    n_fft: int = 512
    window: str = "hann"
    n_bands: int = 40
    fmin_hz: float = 20.0
    fmax_hz: float = 8000.0
    mel_scale: str = "htk"
    band_norm: str = "none"
    log: str = "ln"
    log_offset: float = 1e-6
    n_mfcc: int = 13
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.resize is not None:  # a list from Python code; TOML/JSON go through from_dict
            object.__setattr__(self, "resize", tuple(self.resize))
        check_choice("frontend.kind", self.kind, KINDS)
        check_choice("frontend.window", self.window, tuple(WINDOW_COEFFICIENTS))
        check_choice("frontend.mel_scale", self.mel_scale, MEL_SCALES)
        check_choice("frontend.band_norm", self.band_norm, BAND_NORMS)
        check_choice("frontend.log", self.log, LOG_BASES)
        for rule_holds, message in _config_rules(self):
            if not rule_holds:
                raise TinyKWSError(f"frontend: {message}")

    @property
    def window_samples(self) -> int:
        return round(self.window_ms * self.sample_rate_hz / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_ms * self.sample_rate_hz / 1000)

    @property
    def scale(self) -> str:
        """The filterbank's frequency scale: "bark" for kind bark, else `mel_scale`."""
        return "bark" if self.kind == "bark" else self.mel_scale


def _config_rules(c: FrontEndConfig) -> list[tuple[bool, str]]:
    """(holds, what is wrong and how to fix it) for every numeric constraint, in order."""
    nyquist = c.sample_rate_hz / 2
    return [
        (c.sample_rate_hz > 0, f"sample_rate_hz must be > 0; got {c.sample_rate_hz}"),
        (c.window_ms > 0 and c.hop_ms > 0, "window_ms and hop_ms must be > 0"),
        (c.window_samples >= 2, f"window_ms={c.window_ms} is under 2 samples; lengthen it"),
        (
            c.hop_ms <= c.window_ms,
            f"hop_ms ({c.hop_ms}) exceeds window_ms ({c.window_ms}); shorten the hop",
        ),
        (
            c.n_fft >= c.window_samples,
            f"n_fft ({c.n_fft}) is shorter than the window ({c.window_samples} samples); "
            "raise n_fft",
        ),
        (
            c.clip_samples >= c.window_samples,
            f"clip_samples ({c.clip_samples}) is shorter than one window ({c.window_samples})",
        ),
        (c.n_bands > 0, f"n_bands must be > 0; got {c.n_bands}"),
        (
            0 <= c.fmin_hz < c.fmax_hz,
            f"need 0 <= fmin_hz < fmax_hz; got fmin_hz={c.fmin_hz}, fmax_hz={c.fmax_hz}",
        ),
        (
            c.fmax_hz <= nyquist,
            f"fmax_hz ({c.fmax_hz}) is above half the sample rate ({nyquist}); lower it",
        ),
        (c.log_offset > 0, f"log_offset must be > 0; got {c.log_offset}"),
        (
            c.kind != "mfcc" or 1 <= c.n_mfcc <= c.n_bands,
            f"n_mfcc must be in [1, n_bands={c.n_bands}]; got {c.n_mfcc}",
        ),
        (
            c.resize is None or (len(c.resize) == 2 and min(c.resize) > 0),
            f"resize must be two positive sizes [frames, bins] or absent; got {c.resize}",
        ),
    ]


FRONTEND_PRESETS: dict[str, FrontEndConfig] = {
    "logmel": FrontEndConfig(),
    "mfcc": FrontEndConfig(
        kind="mfcc", window_ms=40.0, hop_ms=20.0, n_fft=1024, fmax_hz=4000.0, n_mfcc=10
    ),
    "bark": FrontEndConfig(
        kind="bark", window_ms=25.0, n_bands=50, fmin_hz=0.0, log="log10", band_norm="none"
    ),
    "micro": FrontEndConfig(hop_ms=20.0, fmin_hz=125.0, fmax_hz=7500.0),
    "cnn3": FrontEndConfig(
        window_ms=16.0, hop_ms=8.0, n_fft=256, n_bands=64, fmin_hz=0.0, resize=(128, 64)
    ),
    "gostop": FrontEndConfig(
        kind="mfcc", window_ms=32.0, hop_ms=32.0, n_bands=25, fmin_hz=0.0, n_mfcc=13
    ),
}


def frontend_config(spec: str | dict[str, Any] | FrontEndConfig) -> FrontEndConfig:
    """A config from a preset name, a config, or a dict with an optional "preset" plus overrides.

    Example:
        >>> frontend_config({"preset": "mfcc", "n_mfcc": 13}).n_mfcc
        13
    """
    if isinstance(spec, FrontEndConfig):
        return spec
    if isinstance(spec, str):
        return _preset(spec)
    if not isinstance(spec, dict):
        raise TinyKWSError(f"frontend: expected a preset name or a table; got {spec!r}")
    overrides = dict(spec)
    preset = overrides.pop("preset", None)
    base = to_dict(_preset(preset)) if preset is not None else {}
    valid = [f.name for f in dataclasses.fields(FrontEndConfig)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TinyKWSError(unknown_key_message(unknown[0], ["preset", *valid], "frontend"))
    return from_dict(FrontEndConfig, {**base, **overrides}, "frontend")


def _preset(name: str) -> FrontEndConfig:
    if name not in FRONTEND_PRESETS:
        raise TinyKWSError(
            f"frontend: unknown preset {name!r}; choose one of {', '.join(FRONTEND_PRESETS)}"
        )
    return FRONTEND_PRESETS[name]
