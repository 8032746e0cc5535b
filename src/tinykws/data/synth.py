"""The built-in synthetic corpus: Speech Commands words said by espeak-ng and flite voices.

`synthesize(out_dir, SynthConfig(...))` writes the Speech Commands layout: one folder per word
holding `<speaker>_nohash_0.wav` clips (1 s, 16 kHz, int16, the word at a random offset),
`_background_noise_/` with synthetic noises, and `validation_list.txt` / `testing_list.txt` from
the dataset's speaker-hash rule. A synthetic speaker is one draw of engine, voice, variant,
pitch, speed and loudness; it says a fixed group of words, so the hash split keeps each speaker
in one split, as in the real dataset. Speaker ids are picked so that the hash rule sends 10 %
of each word's speakers to validation and 10 % to test, even in a small corpus.

Everything follows from the seed: the same config gives byte-identical files whatever the number
of worker processes. Files are written atomically and existing ones are kept, so an interrupted
run resumes where it stopped and a larger `per_word` only adds clips.

Example:
    >>> config = SynthConfig(per_word=5, words=("finesse", "elbow"))
    >>> report = synthesize("corpus", config)  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    corpus: 185 clips written, 0 kept from before, 7 noise files, 4.1 s (45.1 clips/s)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.children import die_with_parent
from tinykws.config import check_range, to_dict
from tinykws.data import tts
from tinykws.data.audio import CLIP_SAMPLES, SAMPLE_RATE_HZ, to_int16, write_wav
from tinykws.data.layout import BACKGROUND, TESTING_LIST, VALIDATION_LIST, WORDS, which_set
from tinykws.data.noise import NOISES, NoiseJob, render_noise
from tinykws.errors import TinyKWSError
from tinykws.io import write_json, write_text
from tinykws.log import logger
from tinykws.progress import make_progress

# The 35 words of Speech Commands v0.02.
SPEECH_COMMANDS_WORDS = WORDS

# Words that sound close to the ten commands; as `_unknown_` examples they teach a model not to
# fire on them (a yes/no model has been seen taking "finesse" for "yes" and "elbow" for "no").
NEAR_MISS_WORDS = (
    "yet", "yeah", "yell", "guess", "chess", "finesse",  # yes
    "know", "snow", "now", "note", "elbow", "nope",  # no
    "cup", "pup", "hop",  # up
    "town", "gown", "crown", "dawn",  # down
    "lift", "loft", "theft", "lest",  # left
    "write", "bright", "light", "ride",  # right
    "own", "an", "upon",  # on
    "of", "cough", "scoff",  # off
    "shop", "top", "step", "stock",  # stop
    "goat", "ghost", "gold", "grow",  # go
)  # fmt: skip

MARKER = ".tinykws_synth.json"
LIST_FILES = {"validation": VALIDATION_LIST, "test": TESTING_LIST}
# A speaker says the words of one group: ~5 of the 35 words, like a real contributor.
WORD_GROUPS = 7
# Split of speaker `index` (by index % 10); speaker ids are chosen to land there.
SPLIT_CYCLE = ("train", "validation", "test", *["train"] * 7)
_WORD_PATTERN = re.compile(r"[a-z][a-z0-9'_-]*")


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize.

    Attributes:
        per_word: clips (speakers) per word.
        seed: fixes every speaker, offset, gain and noise.
        jobs: worker processes; 0 uses every core.
        words: words added to `base_words`: a keyword of your own or near-miss negatives
            (NEAR_MISS_WORDS). Lower-case; "_" between words is spoken as a space.
        base_words: the main vocabulary, by default the 35 Speech Commands words.
        flite_fraction: share of speakers drawn from flite voices (the rest are espeak-ng).
        noise_seconds: length of each background-noise file.
    """

    per_word: int = 20
    seed: int = 0
    jobs: int = 0
    words: tuple[str, ...] = ()
    base_words: tuple[str, ...] = SPEECH_COMMANDS_WORDS
    flite_fraction: float = 0.25
    noise_seconds: float = 30.0

    def __post_init__(self):
        check_range("per_word", self.per_word, 1, 100_000)
        check_range("seed", self.seed, 0, 2**63 - 1)
        check_range("jobs", self.jobs, 0, 4096)
        check_range("flite_fraction", self.flite_fraction, 0.0, 1.0)
        check_range("noise_seconds", self.noise_seconds, 1.0, 600.0)
        for word in (*self.base_words, *self.words):
            if not _WORD_PATTERN.fullmatch(word):
                raise TinyKWSError(
                    f"word {word!r}: use lower-case letters, digits, ' - or _ and start with a "
                    "letter (e.g. --words finesse,hey_tiny)"
                )
        if not self.all_words:
            raise TinyKWSError("no words to synthesize; give base_words or words")

    @property
    def all_words(self) -> tuple[str, ...]:
        """base_words then words, without repeats."""
        return tuple(dict.fromkeys((*self.base_words, *self.words)))

    def identity(self) -> dict:
        """The settings that decide the corpus content (everything but `jobs`)."""
        return {k: v for k, v in to_dict(self).items() if k != "jobs"}


@dataclass(frozen=True)
class SynthReport:
    """What `synthesize` did; `str()` gives a one-line summary."""

    out_dir: str
    clips_written: int
    clips_kept: int
    noises_written: int
    seconds: float

    @property
    def clips_per_second(self) -> float:
        return self.clips_written / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.out_dir}: {self.clips_written} clips written, {self.clips_kept} kept from "
            f"before, {self.noises_written} noise files, {self.seconds:.1f} s "
            f"({self.clips_per_second:.1f} clips/s)"
        )


@dataclass(frozen=True)
class SpeakerJob:
    """The clips of one speaker: `voice` says each of `texts`.

    Clip k is written to `paths[k]` and placed by a Generator seeded with `entropies[k]`.
    """

    voice: tts.Voice
    texts: tuple[str, ...]
    paths: tuple[str, ...]
    entropies: tuple[tuple[int, ...], ...]

    def missing(self) -> int:
        """How many of the clips are not on disk yet."""
        return sum(not os.path.exists(path) for path in self.paths)


def stable_hash(text: str) -> int:
    """A 32-bit number from `text` that is the same in every process and Python version."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def word_group(word: str) -> int:
    """The group of words that `word` shares its speakers with, in [0, WORD_GROUPS)."""
    return stable_hash(word) % WORD_GROUPS


def draw_speaker(
    index: int, group: int, config: SynthConfig, inventory: tts.VoiceInventory
) -> tuple[str, tts.Voice]:
    """Speaker `index` of word group `group`: its 8-hex id and voice.

    The draw depends on (seed, index, group) only, so adding words or clips never changes the
    speakers already drawn. The id hashes the draw (a different voice is a new name) and is
    the first such hash that the dataset's hash rule puts in split SPLIT_CYCLE[index % 10], so
    every word gets 10 % validation and 10 % test clips even in a small corpus.
    """
    rng = np.random.default_rng([config.seed, index, group])
    use_flite = rng.random() < config.flite_fraction and bool(inventory.flite_voices)
    voice = _draw_flite(rng, inventory) if use_flite else _draw_espeak(rng, inventory)
    target = SPLIT_CYCLE[index % len(SPLIT_CYCLE)]
    draw = f"{config.seed}/{index}/{group}/{voice}"
    ids = (hashlib.sha1(f"{draw}/{n}".encode()).hexdigest()[:8] for n in itertools.count())
    return next(i for i in ids if which_set(f"{i}_nohash_0.wav") == target), voice


def _draw_espeak(rng: np.random.Generator, inventory: tts.VoiceInventory) -> tts.Voice:
    return tts.Voice(
        tts.ESPEAK,
        str(rng.choice(inventory.espeak_voices)),
        variant=str(rng.choice(("", *inventory.espeak_variants))),
        pitch=int(rng.integers(15, 86)),
        speed=int(rng.integers(130, 211)),
        amplitude=int(rng.integers(50, 131)),  # louder can clip inside espeak-ng
    )


def _draw_flite(rng: np.random.Generator, inventory: tts.VoiceInventory) -> tts.Voice:
    return tts.Voice(
        tts.FLITE,
        str(rng.choice(inventory.flite_voices)),
        pitch=round(float(rng.uniform(0.8, 1.25)), 3),
        speed=round(float(rng.uniform(0.85, 1.2)), 3),
    )


def trim_silence(samples: np.ndarray, threshold_db: float = -35.0) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than `threshold_db` below the loudest.

    Example:
        >>> x = np.zeros(1600, np.float32); x[800:960] = 0.5
        >>> trim_silence(x).size  # the loud frame plus one frame of margin each side
        480
    """
    frame = SAMPLE_RATE_HZ // 100
    frames = np.pad(samples, (0, -samples.size % frame)).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20.0))
    if loud.size == 0:
        return samples
    start, stop = max(loud[0] - 1, 0), min(loud[-1] + 2, len(frames))
    return samples[start * frame : stop * frame]


def place_in_clip(word: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale `word` to a random peak in [0.25, 0.9] and put it at a random offset in a 1 s clip.

    Returns:
        int16 (CLIP_SAMPLES,).
    """
    if word.size > CLIP_SAMPLES:
        # The slowest voices can run past 1 s; fade the cut end so it does not click.
        word = word[:CLIP_SAMPLES] * np.minimum(1.0, np.arange(CLIP_SAMPLES - 1, -1, -1) / 160.0)
    peak = float(np.max(np.abs(word))) or 1.0
    gain = rng.uniform(0.25, 0.9) / peak
    offset = int(rng.integers(0, CLIP_SAMPLES - word.size + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset : offset + word.size] = word * gain
    return to_int16(clip)


def render_speaker(job: SpeakerJob) -> int:
    """Say a speaker's words and write (atomically) the clips not on disk yet. Returns their count.

    Every word is said even when only some clips are missing, because espeak-ng says them in one
    run: a resumed run then writes the same bytes as an uninterrupted one.
    """
    written = 0
    words = tts.speak_words(job.texts, job.voice)
    for path, entropy, word in zip(job.paths, job.entropies, words):
        if not os.path.exists(path):
            rng = np.random.default_rng(list(entropy))
            write_wav(path, place_in_clip(trim_silence(word), rng))
            written += 1
    return written


def plan_speakers(
    out_dir: Path, config: SynthConfig, inventory: tts.VoiceInventory
) -> list[SpeakerJob]:
    """Every speaker of the corpus with the words it says, by index then word group."""
    groups: dict[int, list[str]] = {}
    for word in sorted(config.all_words):
        groups.setdefault(word_group(word), []).append(word)
    jobs = []
    for index in range(config.per_word):
        for group, words in sorted(groups.items()):
            speaker_id, voice = draw_speaker(index, group, config, inventory)
            paths = tuple(str(out_dir / word / f"{speaker_id}_nohash_0.wav") for word in words)
            texts = tuple(word.replace("_", " ") for word in words)
            entropies = tuple((config.seed, stable_hash(word), index) for word in words)
            jobs.append(SpeakerJob(voice, texts, paths, entropies))
    return jobs


def plan_noises(
    out_dir: Path, config: SynthConfig, inventory: tts.VoiceInventory
) -> list[NoiseJob]:
    """One file per kind in NOISES under `_background_noise_/`."""
    n_samples = round(config.noise_seconds * SAMPLE_RATE_HZ)
    jobs = []
    for kind in NOISES:
        path = str(out_dir / BACKGROUND / f"{kind}.wav")
        jobs.append(NoiseJob(path, kind, (config.seed, stable_hash(kind)), n_samples, inventory))
    return jobs


_RENDERERS = {SpeakerJob: render_speaker, NoiseJob: render_noise}


def _render(job: SpeakerJob | NoiseJob) -> int:
    return _RENDERERS[type(job)](job)


def _run_jobs(jobs: list, n_files: int, workers: int) -> None:
    """Render `jobs` in `workers` processes (in this one when 1), with a progress bar."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if workers <= 1:
        _track(map(_render, jobs), n_files)
        return
    import scipy.signal  # noqa: F401  (for resampling: imported once, inherited by forked workers)

    pool = ProcessPoolExecutor(
        workers, mp_context=_pool_context(), initializer=die_with_parent, initargs=(os.getpid(),)
    )
    try:
        # The first submit starts every worker, before the progress bar starts its thread.
        futures = [pool.submit(_render, job) for job in jobs]
        _track((future.result() for future in as_completed(futures)), n_files)
    except BaseException:
        # On an error or an interrupt, stop the workers now rather than after their queue.
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True)


def _pool_context():
    """fork on Linux: workers start at once, and a script without a `__main__` guard works."""
    import multiprocessing

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _track(files_done: Iterable[int], n_files: int) -> None:
    with make_progress() as progress:
        bar = progress.add_task("synthesizing", total=n_files, status="")
        for count in files_done:
            progress.advance(bar, count)


def _worker_count(jobs: int) -> int:
    if jobs:
        return jobs
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _prepare_folder(out_dir: Path, config: SynthConfig) -> None:
    """Check that `out_dir` is new, empty or a corpus of ours, and mark it as incomplete."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TinyKWSError(f"{out_dir}: exists and is not a folder; choose another output folder")
    # Never add clips to (and rewrite the lists of) a folder that holds someone else's data.
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise TinyKWSError(
            f"{out_dir}: not empty and not a synthetic corpus made by tinykws; "
            "choose a new or empty output folder"
        )
    write_json(out_dir / MARKER, {"complete": False, "config": config.identity()})
    # Temporary files of an interrupted run (the atomic writer's hidden .tmp files).
    for stale in sorted([*out_dir.glob(".*.tmp"), *out_dir.glob("*/.*.tmp")]):
        stale.unlink(missing_ok=True)


def synthesize(out_dir: str | os.PathLike, config: SynthConfig) -> SynthReport:
    """Write (or complete) the synthetic corpus in `out_dir`; existing clips are kept.

    Raises:
        TinyKWSError: espeak-ng is not installed, or `out_dir` is not a usable folder.
    """
    start_s = time.perf_counter()
    out_dir = Path(out_dir)
    inventory = tts.discover_voices()
    _prepare_folder(out_dir, config)
    speakers = plan_speakers(out_dir, config, inventory)
    missing = [job.missing() for job in speakers]
    noises = plan_noises(out_dir, config, inventory)
    todo_noises = [job for job in noises if not os.path.exists(job.path)]
    todo = [*todo_noises, *(job for job, n in zip(speakers, missing) if n)]
    n_noises, n_clips = len(todo_noises), sum(missing)
    workers = min(_worker_count(config.jobs), max(len(todo), 1))
    _run_jobs(todo, n_noises + n_clips, workers)
    write_split_lists(out_dir)
    marker = {"complete": True, "config": config.identity(), "voices": to_dict(inventory)}
    write_json(out_dir / MARKER, marker)
    kept = sum(len(job.paths) for job in speakers) - n_clips
    seconds = time.perf_counter() - start_s
    return SynthReport(str(out_dir), n_clips, kept, n_noises, seconds)


def write_split_lists(out_dir: str | os.PathLike) -> dict[str, int]:
    """Write validation_list.txt and testing_list.txt for every clip in the word folders.

    Returns:
        number of clips listed per split, e.g. {"validation": 70, "test": 68}.
    """
    out_dir = Path(out_dir)
    clips = sorted(
        path.relative_to(out_dir).as_posix()
        for path in out_dir.glob("*/*_nohash_*.wav")
        if not path.parent.name.startswith(("_", "."))
    )
    listed: dict[str, list[str]] = {split: [] for split in LIST_FILES}
    for clip in clips:
        listed.get(which_set(clip), []).append(clip)
    for split, names in listed.items():
        write_text(out_dir / LIST_FILES[split], "".join(f"{name}\n" for name in names))
    return {split: len(names) for split, names in listed.items()}


def ensure_corpus(out_dir: str | os.PathLike, config: SynthConfig) -> Path:
    """Return `out_dir` holding the corpus for `config`, synthesizing (or resuming) if needed.

    A corpus whose completion marker records the same settings (all but `jobs`) is reused as is.
    """
    out_dir = Path(out_dir)
    try:
        marker = json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    if marker.get("complete") and marker.get("config") == config.identity():
        return out_dir
    logger.info(f"synthesizing the corpus in {out_dir}")
    logger.info(str(synthesize(out_dir, config)))
    return out_dir
