"""Synthetic background noises for `_background_noise_/`: coloured noise, mains hum, babble, water.

Every generator takes a numpy Generator and a length and returns float32 samples at 16 kHz,
peak-normalised to `NOISE_PEAK`, so a seed fixes the result. Babble is made of overlapped
synthetic speech (espeak-ng/flite) saying everyday words that are not keywords.

Example:
    >>> import numpy as np
    >>> x = NOISES["pink_noise"](np.random.default_rng(0), 16000, None)
    >>> x.shape, x.dtype, round(float(abs(x).max()), 3)
    ((16000,), dtype('float32'), 0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from tinykws.data import tts
from tinykws.data.audio import SAMPLE_RATE_HZ, write_wav

NOISE_PEAK = 0.5
BABBLE_STREAMS = 6
BABBLE_WORDS = (
    "the", "and", "people", "morning", "weather", "coffee", "window", "table", "because",
    "really", "maybe", "think", "time", "little", "number", "water", "paper", "music", "garden",
    "travel", "dinner", "market", "question", "answer", "family", "picture", "summer", "winter",
    "money", "letter", "station", "minute", "basket", "pencil", "orange", "kitchen", "holiday",
)  # fmt: skip


def _normalise(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples))) or 1.0
    return (samples * (NOISE_PEAK / peak)).astype(np.float32)


def _coloured(rng: np.random.Generator, n_samples: int, inventory, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), shaped by FFT."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs_hz = np.fft.rfftfreq(n_samples, 1.0 / SAMPLE_RATE_HZ)
    # Below 20 Hz the 1/f gain would explode into an inaudible drift; hold it flat there.
    spectrum *= np.maximum(freqs_hz, 20.0) ** (-exponent / 2.0)
    spectrum[0] = 0.0
    return _normalise(np.fft.irfft(spectrum, n_samples))


def _mains_hum(rng: np.random.Generator, n_samples: int, inventory, base_hz: float) -> np.ndarray:
    """Mains hum: the base frequency and harmonics with 1/k amplitudes, slow drift, faint hiss."""
    t_s = np.arange(n_samples) / SAMPLE_RATE_HZ
    drift_hz = 0.05 * np.sin(2 * np.pi * rng.uniform(0.02, 0.1) * t_s + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(base_hz + drift_hz) / SAMPLE_RATE_HZ
    hum = np.zeros(n_samples)
    for k in range(1, 9):
        amplitude = rng.uniform(0.5, 1.0) / k
        hum += amplitude * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    hiss = 0.01 * rng.standard_normal(n_samples)
    return _normalise(hum + hiss)


def _running_water(rng: np.random.Generator, n_samples: int, inventory) -> np.ndarray:
    """Band-limited noise (300-5000 Hz) with a random spectral tilt and a fast random tremolo."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs_hz = np.fft.rfftfreq(n_samples, 1.0 / SAMPLE_RATE_HZ)
    band = (freqs_hz > 300) & (freqs_hz < 5000)
    tilt = np.maximum(freqs_hz, 1.0) ** rng.uniform(-0.8, -0.2)
    noise = np.fft.irfft(spectrum * band * tilt, n_samples)
    # A smoothed random walk of gains (10 ms steps) gives the gurgling variation of a tap.
    steps = rng.uniform(0.3, 1.0, n_samples // 160 + 2)
    envelope = np.interp(np.arange(n_samples) / 160.0, np.arange(steps.size), steps)
    return _normalise(noise * envelope)


def _babble(rng: np.random.Generator, n_samples: int, inventory: tts.VoiceInventory) -> np.ndarray:
    """Several synthetic talkers saying everyday words at once, each looped to `n_samples`."""
    mix = np.zeros(n_samples)
    words_per_stream = max(4, round(n_samples / SAMPLE_RATE_HZ * 2.5))
    for _ in range(BABBLE_STREAMS):
        voice = tts.Voice(
            tts.ESPEAK,
            str(rng.choice(inventory.espeak_voices)),
            variant=str(rng.choice(("", *inventory.espeak_variants))),
            pitch=int(rng.integers(20, 80)),
            speed=int(rng.integers(150, 200)),
        )
        text = " ".join(rng.choice(BABBLE_WORDS, size=words_per_stream))
        talker = _normalise(tts.speak(text, voice))
        # np.resize repeats the talker; a random start stops all talkers pausing together.
        looped = np.resize(talker, n_samples + talker.size)
        start = int(rng.integers(0, talker.size))
        mix += rng.uniform(0.5, 1.0) * looped[start : start + n_samples]
    return _normalise(mix)


NoiseFn = Callable[[np.random.Generator, int, "tts.VoiceInventory | None"], np.ndarray]
NOISES: dict[str, NoiseFn] = {
    "white_noise": partial(_coloured, exponent=0.0),
    "pink_noise": partial(_coloured, exponent=1.0),
    "brown_noise": partial(_coloured, exponent=2.0),
    "mains_hum_50hz": partial(_mains_hum, base_hz=50.0),
    "mains_hum_60hz": partial(_mains_hum, base_hz=60.0),
    "running_water": _running_water,
    "babble": _babble,
}


@dataclass(frozen=True)
class NoiseJob:
    """One background-noise file to make: `kind` from NOISES, seeded by `entropy`."""

    path: str
    kind: str
    entropy: tuple[int, ...]
    n_samples: int
    inventory: tts.VoiceInventory


def render_noise(job: NoiseJob) -> int:
    """Generate one noise file and write it (atomically) as 16 kHz int16 WAV. Returns 1."""
    rng = np.random.default_rng(list(job.entropy))
    samples = NOISES[job.kind](rng, job.n_samples, job.inventory)
    write_wav(job.path, samples)
    return 1
