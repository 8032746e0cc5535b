"""Long test streams with ground truth: keyword clips, other words and pauses over background
noise, reproducible from a seed.

`make_stream_test(root, config)` picks `keywords` clips of the command words and as many other
words (`_unknown_`) from one split of a Speech Commands folder (any layout the loaders read,
the official test-set folder included), places them in a random order with random pauses over
`minutes` of the split's part of the background recordings (the part its `_silence_` clips
come from), each word at a random SNR, and returns the samples with truth rows
(onset_s, offset_s, label). Onsets and offsets are those of the spoken word inside its clip
(frames within 20 dB of the clip's loudest 10 ms frame).

Example:
    >>> config = StreamTestConfig(minutes=0.5, keywords=4, seed=1)
    >>> config.unknown_words, config.snr_db
    (4, (10.0, 25.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.config import check_choice, check_range
from tinykws.data.audio import read_audio, write_wav
from tinykws.data.layout import LABEL_PRESETS, SPLITS
from tinykws.data.speech_commands import SILENCE_REGIONS, DataConfig, load_clip_audio, load_dataset
from tinykws.errors import TinyKWSError
from tinykws.io import write_text
from tinykws.log import logger

SAMPLE_RATE_HZ = 16000
NOISE_RMS = 0.005  # level of the background bed; words are scaled to their SNR above it
FADE_SAMPLES = 160  # 10 ms fades at the joins of noise segments


@dataclass(frozen=True)
class StreamTestConfig:
    """What a test stream holds.

    Attributes:
        split: the split whose clips (and background region) are used.
        minutes: the stream's length.
        keywords: keyword clips in it (drawn without replacement).
        unknown: other words in it; -1 = as many as keywords.
        snr_db: range of each word's signal-to-noise ratio (uniform), dB.
        preset: the label preset that says which words are keywords (see `LABEL_PRESETS`).
        seed: seeds every choice.
    """

    split: str = "validation"
    minutes: float = 20.0
    keywords: int = 50
    unknown: int = -1
    snr_db: tuple[float, float] = (10.0, 25.0)
    preset: str = "real10"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        check_choice("preset", self.preset, tuple(LABEL_PRESETS))
        check_range("minutes", self.minutes, 0.05, 24 * 60.0)
        check_range("keywords", self.keywords, 1, 10**6)
        check_range("unknown", self.unknown, -1, 10**6)
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise TinyKWSError(f"snr_db must be (low, high) with low <= high; got {self.snr_db}")
        words = self.keywords + self.unknown_words
        if words * 2.0 > self.minutes * 60.0:
            raise TinyKWSError(
                f"{words} words do not fit in {self.minutes:g} minutes with pauses (each word "
                f"takes about 2 s); give more --minutes or fewer --keywords"
            )

    @property
    def unknown_words(self) -> int:
        return self.keywords if self.unknown < 0 else self.unknown


def make_stream_test(root, config: StreamTestConfig):
    """The samples (float32) and truth rows of a test stream; see the module docstring."""

    dataset = load_dataset(root, DataConfig(preset=config.preset, unknown_fraction=1.0))
    clips = dataset.clips(config.split)
    rng = np.random.default_rng(config.seed)
    chosen = _choose(clips, config, rng, root)
    n_samples = int(config.minutes * 60 * SAMPLE_RATE_HZ)
    samples = _noise_bed(dataset.noise_files, config, n_samples, rng)
    truth = []
    for clip, start in zip(chosen, _starts(len(chosen), n_samples, rng)):
        truth.append(_add_word(samples, clip, start, config, rng))
    return samples.astype(np.float32), truth


def _choose(clips, config: StreamTestConfig, rng, root) -> list:
    """Keyword and other-word clips in a random order."""
    keywords = [c for c in clips if not c.label.startswith("_")]
    others = [c for c in clips if c.label == "_unknown_"]
    for name, pool, wanted in (
        ("keyword", keywords, config.keywords),
        ("other-word", others, config.unknown_words),
    ):
        if len(pool) < wanted:
            raise TinyKWSError(
                f"{root}: the {config.split} split has {len(pool)} {name} clips, fewer than "
                f"the {wanted} asked for; ask for fewer or use another split"
            )
    picks = [keywords[i] for i in rng.choice(len(keywords), config.keywords, replace=False)]
    picks += [others[i] for i in rng.choice(len(others), config.unknown_words, replace=False)]
    return [picks[i] for i in rng.permutation(len(picks))]


def _starts(n_words: int, n_samples: int, rng) -> list[int]:
    """Clip start samples: random pauses, scaled so that the words fill the stream."""
    room = n_samples - n_words * SAMPLE_RATE_HZ - SAMPLE_RATE_HZ
    pauses = rng.uniform(0.5, 1.5, n_words + 1)
    pauses = np.floor(pauses / pauses.sum() * room).astype(np.int64)
    return (np.cumsum(pauses[:-1]) + np.arange(n_words) * SAMPLE_RATE_HZ).tolist()


def _noise_bed(noise_files: list[str], config: StreamTestConfig, n_samples: int, rng):
    """Random segments of the split's region of the background recordings, at NOISE_RMS."""

    if not noise_files:
        logger.warning("no _background_noise_ recordings: the stream's background is white noise")
        return rng.normal(0.0, NOISE_RMS, n_samples)
    low, high = SILENCE_REGIONS[config.split]
    regions = []
    for path in noise_files:
        audio = read_audio(path)
        regions.append(audio[int(low * len(audio)) : int(high * len(audio))])
    bed, position = np.zeros(n_samples), 0
    fade = np.linspace(0.0, 1.0, FADE_SAMPLES)
    while position < n_samples:
        region = regions[int(rng.integers(len(regions)))]
        length = min(len(region), int(rng.integers(2, 6) * SAMPLE_RATE_HZ), n_samples - position)
        first = int(rng.integers(0, len(region) - length + 1))
        piece = region[first : first + length].astype(np.float64)
        piece *= NOISE_RMS / max(float(np.sqrt(np.mean(piece**2))), 1e-9)
        edge = min(FADE_SAMPLES, length // 2)
        piece[:edge] *= fade[:edge]
        piece[length - edge :] *= fade[:edge][::-1]
        bed[position : position + length] = piece
        position += length
    return bed


def _add_word(samples: np.ndarray, clip, start: int, config: StreamTestConfig, rng) -> tuple:
    """Mix one clip in at `start` at a random SNR; its truth row."""

    audio = load_clip_audio(clip).astype(np.float64)
    onset, offset = _active_span(audio)
    rms = float(np.sqrt(np.mean(audio[onset:offset] ** 2)))
    gain = NOISE_RMS * 10.0 ** (rng.uniform(*config.snr_db) / 20.0) / max(rms, 1e-9)
    gain = min(gain, 0.9 / max(float(np.abs(audio).max()), 1e-9))  # no clipping
    samples[start : start + len(audio)] += gain * audio
    rate = SAMPLE_RATE_HZ
    return (round((start + onset) / rate, 4), round((start + offset) / rate, 4), clip.label)


def _active_span(audio: np.ndarray) -> tuple[int, int]:
    """[first, last) samples of the 10 ms frames within 20 dB of the loudest frame."""
    frame = SAMPLE_RATE_HZ // 100
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    active = np.flatnonzero(energy >= 0.1 * energy.max()) if energy.max() > 0 else [0]
    return int(active[0]) * frame, (int(active[-1]) + 1) * frame


TRUTH_HEADER = ("onset_s", "offset_s", "label")


def write_truth(path, truth: list[tuple]) -> None:
    """Write rows (onset_s, offset_s, label) as a truth CSV (header `onset_s,offset_s,label`)."""

    lines = [",".join(TRUTH_HEADER)] + [f"{a:.4f},{b:.4f},{label}" for a, b, label in truth]
    write_text(path, "\n".join(lines) + "\n")


def write_stream_test(out, root, config: StreamTestConfig):
    """Write OUT.wav (16-bit mono, 16 kHz) and OUT.csv (its truth); returns both paths."""

    out = Path(out)
    wav = out if out.suffix.lower() == ".wav" else out.with_name(out.name + ".wav")
    samples, truth = make_stream_test(root, config)
    wav.parent.mkdir(parents=True, exist_ok=True)
    write_wav(wav, samples)
    csv = wav.with_suffix(".csv")
    write_truth(csv, truth)
    return wav, csv
