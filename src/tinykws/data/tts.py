"""Text-to-speech through the espeak-ng and flite command-line programs.

Each engine run is one subprocess whose WAV output is read from stdout (no temporary files),
then resampled to 16 kHz mono float32. A `Voice` holds everything that makes one synthetic
speaker sound the way it does, so the same `Voice` and text always give the same samples.
`speak_words` says several words in one espeak-ng run, which is several times faster than one
run per word.

Example:
    >>> voice = Voice("espeak-ng", "en-us", variant="f3", pitch=60, speed=160)
    >>> samples = speak("yes", voice)  # doctest: +SKIP
    >>> samples.dtype, samples.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np

from tinykws.data.audio import SAMPLE_RATE_HZ, resample
from tinykws.errors import TinyKWSError
from tinykws.log import logger

INSTALL_HINT = "install it with: apt-get install espeak-ng flite"
ESPEAK = "espeak-ng"
FLITE = "flite"
# General flite voices; `flite -lv` confirms which ones this build has. awb_time is left out: it
# is a limited-domain voice that only says clock times and turns other words into a short buzz.
FLITE_VOICES = ("awb", "kal", "kal16", "rms", "slt")
# Pause between the words of one espeak-ng run; no word has a silence half as long inside it.
PAUSE_MS = 600


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: engine, voice, variant, pitch, speed and loudness.

    Attributes:
        engine: "espeak-ng" or "flite".
        name: espeak-ng voice ("en-gb-x-rp") or flite voice ("slt").
        variant: espeak-ng voice variant ("f3", "klatt2"); "" for the voice's own.
        pitch: espeak-ng base pitch 0-99 (`-p`); for flite the f0 scale factor (`f0_shift`).
        speed: espeak-ng words per minute (`-s`); for flite the duration stretch (> 1 = slower).
        amplitude: espeak-ng amplitude 0-200 (`-a`); flite ignores it.
    """

    engine: str
    name: str
    variant: str = ""
    pitch: float = 50.0
    speed: float = 175.0
    amplitude: int = 100


@dataclass(frozen=True)
class VoiceInventory:
    """The voices installed on this machine, sorted so that random draws are reproducible."""

    espeak_voices: tuple[str, ...]
    espeak_variants: tuple[str, ...]
    flite_voices: tuple[str, ...]


def discover_voices() -> VoiceInventory:
    """List the installed English espeak-ng voices and variants and the working flite voices.

    mbrola voices are skipped (they need separately installed databases). A missing espeak-ng
    is an error; a missing flite is a warning and only espeak-ng is used.
    """
    if shutil.which(ESPEAK) is None:
        raise TinyKWSError(f"{ESPEAK} not found; {INSTALL_HINT}")
    voices = {lang for lang, file in _espeak_rows("en") if not file.startswith(("mb/", "!v/"))}
    if not voices:
        raise TinyKWSError(f"{ESPEAK}: no English voices installed; {INSTALL_HINT}")
    rows = _espeak_rows("variant")
    variants = {file.removeprefix("!v/") for _, file in rows if file.startswith("!v/")}
    return VoiceInventory(tuple(sorted(voices)), tuple(sorted(variants)), _working_flite_voices())


def _espeak_rows(which: str) -> list[tuple[str, str]]:
    """(language, file) of each row of `espeak-ng --voices=<which>`."""
    text = _run([ESPEAK, f"--voices={which}"]).decode("utf-8", "replace")
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        # Columns: priority, language, age/gender, name, file, (other languages)...; a file
        # name with a space ("Mr serious") cannot be passed to -v, so such rows are skipped.
        if len(fields) >= 5 and (len(fields) == 5 or fields[5].startswith("(")):
            rows.append((fields[1], fields[4]))
    return rows


def _working_flite_voices() -> tuple[str, ...]:
    if shutil.which(FLITE) is None:
        logger.warning(f"{FLITE} not found, using {ESPEAK} voices only; {INSTALL_HINT}")
        return ()
    listed = set(_run([FLITE, "-lv"]).decode("utf-8", "replace").split())
    working = []
    for name in sorted(listed & set(FLITE_VOICES)):
        try:  # parsing the output is check enough; resampling it would only cost time
            _synthesize("a", Voice(FLITE, name, pitch=1.0, speed=1.0))
            working.append(name)
        except TinyKWSError as exc:
            logger.warning(f"skipping flite voice {name}: {exc}")
    return tuple(working)


def speak(text: str, voice: Voice) -> np.ndarray:
    """Say `text` with `voice`. Returns float32 (samples,) at 16 kHz, as the engine made it."""
    samples, rate_hz = _synthesize(text, voice)
    return _to_16k(samples, rate_hz)


def speak_words(texts: Sequence[str], voice: Voice) -> list[np.ndarray]:
    """Say each of `texts` on its own with `voice`; one float32 16 kHz array per text.

    espeak-ng says them all in one run, with long pauses between, and the audio is cut at the
    pauses: starting the program costs more than saying a word. If the cut does not give one
    piece per text, each text is said in a run of its own.
    """
    if voice.engine == ESPEAK and len(texts) > 1:
        pause = f'<break time="{PAUSE_MS}ms"/>'
        # <s> makes each word a sentence of its own, said as if alone (final lengthening).
        ssml = pause.join(f"<s>{escape(text)}</s>" for text in texts)
        samples, rate_hz = _synthesize(ssml, voice)
        pieces = split_at_pauses(samples, rate_hz, min_pause_ms=PAUSE_MS // 2)
        if len(pieces) == len(texts):
            return [_to_16k(piece, rate_hz) for piece in pieces]
    return [speak(text, voice) for text in texts]


def split_at_pauses(
    samples: np.ndarray, rate_hz: int, min_pause_ms: float, threshold_db: float = -50.0
) -> list[np.ndarray]:
    """Cut `samples` at pauses: runs of 10 ms frames `threshold_db` below the loudest frame.

    Example:
        >>> x = np.zeros(4000, np.float32); x[500:900] = 0.5; x[2500:3000] = 0.5
        >>> [piece.size for piece in split_at_pauses(x, 1000, min_pause_ms=300)]
        [400, 500]
    """
    frame = max(rate_hz // 100, 1)
    frames = np.pad(samples, (0, -samples.size % frame)).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20.0))
    if loud.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(loud) - 1 >= min_pause_ms / 10.0)
    starts = np.r_[loud[0], loud[cuts + 1]]
    stops = np.r_[loud[cuts], loud[-1]] + 1
    return [samples[a * frame : b * frame] for a, b in zip(starts, stops)]


def _synthesize(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    command = _COMMANDS[voice.engine](text, voice)
    return parse_wav_bytes(_run(command), " ".join(command[:3]))


def _to_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    return resample(samples, rate_hz, SAMPLE_RATE_HZ) if rate_hz != SAMPLE_RATE_HZ else samples


def _espeak_command(text: str, voice: Voice) -> list[str]:
    name = f"{voice.name}+{voice.variant}" if voice.variant else voice.name
    settings = ["-p", str(round(voice.pitch)), "-s", str(round(voice.speed))]
    # -m reads SSML, for the <break> tags of speak_words; plain words read the same either way.
    return [ESPEAK, "--stdout", "-m", "-v", name, *settings, "-a", str(voice.amplitude), text]


def _flite_command(text: str, voice: Voice) -> list[str]:
    settings = ["--setf", f"f0_shift={voice.pitch:.3f}"]
    settings += ["--setf", f"duration_stretch={voice.speed:.3f}"]
    # flite writes its WAV sequentially, so /dev/stdout works even when stdout is a pipe.
    return [FLITE, "-voice", voice.name, *settings, "-t", text, "-o", "/dev/stdout"]


_COMMANDS = {ESPEAK: _espeak_command, FLITE: _flite_command}


def _run(command: list[str]) -> bytes:
    try:
        done = subprocess.run(command, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise TinyKWSError(f"{command[0]} not found; {INSTALL_HINT}") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TinyKWSError(f"`{' '.join(command)}` failed: {reason[-1] if reason else '?'}")
    return done.stdout


def parse_wav_bytes(data: bytes, source: str = "wav") -> tuple[np.ndarray, int]:
    """Decode 16-bit mono PCM WAV bytes as written by espeak-ng and flite.

    espeak-ng streams to stdout, so its header holds a placeholder data size; the data chunk
    is therefore taken to run to the end of the bytes.

    Returns:
        (float32 samples in [-1, 1), sample rate in Hz).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TinyKWSError(f"{source}: produced no WAV audio")
    pos, rate_hz = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            rate_hz = int.from_bytes(data[pos + 12 : pos + 16], "little")
            bits = int.from_bytes(data[pos + 22 : pos + 24], "little")
            if channels != 1 or bits != 16:
                raise TinyKWSError(f"{source}: expected 16-bit mono WAV, got {channels}x{bits}")
        elif chunk == b"data":
            pcm = data[pos + 8 : pos + 8 + size]
            pcm = pcm[: len(pcm) // 2 * 2]
            if not rate_hz or not pcm:
                break
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate_hz
        pos += 8 + size + (size & 1)
    raise TinyKWSError(f"{source}: produced no audio samples")
