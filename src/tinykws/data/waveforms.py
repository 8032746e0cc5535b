"""Decoding clips into 1 s, 16 kHz waveforms, in parallel and cached on disk.

`load_waveforms(clips, cache_dir)` returns int16 (N, 16000): every clip read, resampled, mixed to
mono and centred (`tinykws.data.audio.load_clip`); a silence clip is its segment of a background
recording times its gain. The array is cached as a memory-mapped .npy keyed by the clips' paths,
sizes and modification times, so a changed file gives a new cache entry.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from tinykws.cache import cached_array, content_key
from tinykws.data.audio import CLIP_SAMPLES, pad_or_trim, read_audio, to_int16
from tinykws.data.layout import BACKGROUND
from tinykws.progress import track

if TYPE_CHECKING:
    from tinykws.data.speech_commands import Clip, Dataset

# Threads are enough: libsndfile and scipy's resampler release the GIL while they work.
MAX_THREADS = 8


def load_clip_audio(clip: Clip, noises: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The clip as float32 (16000,) in [-1, 1].

    Args:
        clip: a word clip (centred in 1 s) or a silence clip (a segment of a recording).
        noises: decoded background recordings by path, so that many silence clips cut from one
            recording decode it once; recordings not in it are read from disk.
    """
    if clip.word == BACKGROUND:
        recording = noises[clip.path] if noises and clip.path in noises else read_audio(clip.path)
        segment = recording[clip.offset : clip.offset + CLIP_SAMPLES]
        samples = np.pad(segment, (0, CLIP_SAMPLES - segment.shape[0]))
    else:
        samples = pad_or_trim(read_audio(clip.path), CLIP_SAMPLES)
    return (samples * np.float32(clip.gain)).astype(np.float32)


def waveforms_key(clips: list[Clip]) -> str:
    """A short hash naming the waveform array of `clips` (changes when any file changes)."""
    return content_key("waveforms-v1", CLIP_SAMPLES, [c.key() for c in clips])


def load_waveforms(
    clips: list[Clip], cache_dir: str | os.PathLike | None = None, jobs: int = 0
) -> np.ndarray:
    """Decode `clips` into int16 (N, 16000), using `jobs` threads (0 = up to 8).

    With a `cache_dir` the result is a read-only memory map that later calls reuse.

    Raises:
        TinyKWSError: a clip is missing, empty, truncated, not audio, or contains NaN.
    """
    key = waveforms_key(clips) if cache_dir is not None else ""

    def fill(out: np.ndarray) -> None:
        recordings = sorted({c.path for c in clips if c.word == BACKGROUND})
        noises = {path: read_audio(path) for path in recordings}
        threads = jobs or min(MAX_THREADS, os.cpu_count() or 1)
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            decoded = pool.map(lambda c: to_int16(load_clip_audio(c, noises)), clips)
            for i, wave in enumerate(track(decoded, "decoding clips", total=len(clips))):
                out[i] = wave
        finally:
            # On a bad file, stop at once instead of decoding the rest first.
            pool.shutdown(wait=True, cancel_futures=True)

    return cached_array(cache_dir, "waveforms", key, (len(clips), CLIP_SAMPLES), np.int16, fill)


def load_noises(dataset: Dataset) -> list[np.ndarray]:
    """The dataset's background recordings as float32 16 kHz arrays (for noise augmentation)."""
    return [read_audio(path) for path in dataset.noise_files]
