"""Audio I/O: read WAV/FLAC as 16 kHz mono float32, write 16-bit WAV, pad or trim to a clip.

Samples are float32 in [-1, 1]; int16 files map with a scale of 1/32768. Reading checks the file
(exists, decodes, non-empty, finite) and raises `TinyKWSError` naming the file and the problem.
"""

from __future__ import annotations

import os
import re
import struct
from math import gcd
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.io import atomic_write
from tinykws.ir.fixedpoint import round_half_away
from tinykws.log import logger

SAMPLE_RATE_HZ = 16000
CLIP_SAMPLES = 16000


def read_audio(path: str | os.PathLike, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Read a WAV or FLAC file as mono float32 at `sample_rate_hz`, at its own length.

    Multi-channel audio is averaged to mono (with a warning); other sample rates are resampled
    with a polyphase filter.

    Returns:
        float32 array, shape (samples,), values in [-1, 1].
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise TinyKWSError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise TinyKWSError(f"{path}: empty file (0 bytes)")
    try:
        check_wav_length(path)
    except OSError as exc:
        raise TinyKWSError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        reason = str(exc).split("\n")[0].strip() or type(exc).__name__
        # libsndfile repeats the file name ("Error opening 'x.wav': ..."); we print it once.
        reason = re.sub(r"^Error opening .*?: ", "", reason)
        raise TinyKWSError(f"{path}: not a readable WAV/FLAC file ({reason})") from None
    if samples.shape[0] == 0:
        raise TinyKWSError(f"{path}: contains no audio samples")
    if not np.isfinite(samples).all():
        raise TinyKWSError(f"{path}: contains NaN or infinite samples")
    if samples.shape[1] > 1:
        logger.warning(f"{path}: {samples.shape[1]} channels mixed down to mono")
    mono = samples.mean(axis=1, dtype=np.float32)
    for problem in audio_problems(mono, rate):
        logger.warning(f"{path}: {problem}")
    if rate != sample_rate_hz:
        mono = resample(mono, rate, sample_rate_hz)
    return mono


# What a speech recording looks like; outside these, results are flagged (not refused).
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 48000
MIN_DURATION_S = 0.1  # a spoken word lasts longer than this
CLIPPED_FRACTION = 0.1  # this share of samples at full scale means heavy clipping


def audio_problems(samples: np.ndarray, rate_hz: int) -> list[str]:
    """Why a recording (float32 samples at its own rate) may not be speech that a model can
    score: an unusual sample rate, too short, beyond full scale, or heavily clipped.

    Example:
        >>> audio_problems(np.zeros(16000, np.float32), 16000)
        []
        >>> audio_problems(np.full(10, 0.5, np.float32), 1)
        ['sample rate 1 Hz is outside 8000-48000 Hz; is it really audio?']
        >>> audio_problems(np.full(800, 2.0, np.float32), 16000)[0]
        'only 50 ms of audio; a word needs at least 100 ms, so its scores mean little'
    """
    problems = []
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        problems.append(
            f"sample rate {rate_hz} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz; "
            "is it really audio?"
        )
    duration_s = samples.shape[0] / max(rate_hz, 1)
    if duration_s < MIN_DURATION_S and not problems:
        problems.append(
            f"only {duration_s * 1000:.0f} ms of audio; a word needs at least "
            f"{MIN_DURATION_S * 1000:.0f} ms, so its scores mean little"
        )
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 1.0:
        problems.append(
            f"peak amplitude {peak:.3g} is beyond full scale (1.0); the samples are not "
            "normalised audio, so its scores mean little"
        )
    elif samples.size and np.mean(np.abs(samples) >= 0.999) >= CLIPPED_FRACTION:
        problems.append("heavily clipped (many samples at full scale); scores may be unreliable")
    return problems


def check_wav_length(path: Path) -> None:
    """Raise if a RIFF/WAVE file holds fewer audio bytes than its header declares.

    libsndfile silently reads what is there from a cut-off WAV, so a truncated download would
    pass as a shorter clip; the header's data-chunk size tells us what should be there.
    Streams written with an unknown length (size 0 or 0xFFFFFFFF) are not checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        position = 12
        while position + 8 <= size:
            f.seek(position)
            chunk_id, chunk_bytes = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - position - 8
                if chunk_bytes not in (0, 0xFFFFFFFF) and available < chunk_bytes:
                    raise TinyKWSError(
                        f"{path}: truncated WAV file (header declares {chunk_bytes} bytes of "
                        f"audio, the file holds {available}); copy or download it again"
                    )
                return
            position += 8 + chunk_bytes + (chunk_bytes & 1)  # chunks are padded to even size


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly with its default Kaiser window)."""
    from scipy.signal import resample_poly

    g = gcd(int(from_hz), int(to_hz))
    out = resample_poly(samples.astype(np.float64), to_hz // g, from_hz // g)
    return out.astype(np.float32)


def pad_or_trim(samples: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Centre `samples` in a clip of `length`: zero-pad both sides, or cut both ends equally.

    Example:
        >>> pad_or_trim(np.ones(2, np.float32), 4).tolist()
        [0.0, 1.0, 1.0, 0.0]
        >>> pad_or_trim(np.arange(6, dtype=np.float32), 4).tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    n = samples.shape[0]
    if n == length:
        return samples
    if n > length:
        start = (n - length) // 2
        return samples[start : start + length]
    out = np.zeros(length, dtype=samples.dtype)
    start = (length - n) // 2
    out[start : start + n] = samples
    return out


def load_clip(path: str | os.PathLike, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Read a file and centre it in a 1 s (by default) 16 kHz clip. float32, shape (length,)."""
    return pad_or_trim(read_audio(path), length)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> int16, scaled by 32768, rounded half away from zero, clipped.

    The inverse of `to_float32` (and of soundfile's int16 -> float reading), so an int16 file
    read as float and converted back gives its samples unchanged; +1.0 clips to 32767.

    Example:
        >>> to_int16(to_float32(np.array([-32768, -1, 0, 1, 32767], np.int16))).tolist()
        [-32768, -1, 0, 1, 32767]
    """
    scaled = np.clip(samples.astype(np.float64) * 32768.0, -32768, 32767)
    return round_half_away(scaled).astype(np.int16)


def to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1) (divide by 32768, soundfile's convention)."""
    return samples.astype(np.float32) / 32768.0


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz=SAMPLE_RATE_HZ) -> None:
    """Write mono 16-bit PCM WAV atomically. float input is converted with `to_int16`."""
    import soundfile as sf

    pcm = samples if samples.dtype == np.int16 else to_int16(samples)
    with atomic_write(path, "wb") as f:
        sf.write(f, pcm, sample_rate_hz, subtype="PCM_16", format="WAV")
