"""Speech Commands datasets: labels, splits, `_unknown_` and `_silence_` classes, waveforms.

`load_dataset(root, DataConfig(...))` turns a folder into a `Dataset`: three splits of `Clip`s,
each labelled in the model's output order (`Dataset.labels`).

- Splits come from `validation_list.txt` / `testing_list.txt` when the folder has them, otherwise
  from the speaker-hash rule (`which_set`); `split="random"` gives a seeded 70/15/15 file split.
- Any word that is not a command is `_unknown_`. A deterministic `unknown_fraction` of those clips
  is kept in every split carved from a dataset folder: train, validation and test (as TensorFlow's
  input_data does, so test has the class balance of validation). An official test-set folder and
  `all_clips` keep every clip.
- `_silence_` clips are 1 s segments of the background recordings at a random gain 10^U(-4, 0).
  The train split gets `silence_count` of them (auto: the mean size of a command class in train);
  validation and test get the same share of their size. Each split cuts its segments from its
  own part of every recording (train the first 80 %, validation the next 10 %, test the last
  10 %), so no segment is in two splits.

Example:
    >>> ds = load_dataset("speech_commands_v0.02", DataConfig(preset="real10"))  # doctest: +SKIP
    >>> ds.labels[-2:], ds.class_counts("validation")["yes"]  # doctest: +SKIP
    (('_unknown_', '_silence_'), 397)
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinykws.config import check_choice, check_range
from tinykws.data.audio import CLIP_SAMPLES
from tinykws.data.layout import (
    BACKGROUND,
    COMMAND_PRESETS,
    LABEL_PRESETS,
    SILENCE,
    SPLIT_MODES,
    SPLITS,
    SPLITTERS,
    UNKNOWN,
    WORDS,
    FileEntry,
    SplitRule,
    check_root,
    has_lists,
    is_test_set,
    noise_files,
    scan_dataset,
    scan_test_set,
    seeded_hash,
    which_set,
)
from tinykws.errors import TinyKWSError
from tinykws.log import logger

__all__ = [
    "BACKGROUND",
    "COMMAND_PRESETS",
    "LABEL_PRESETS",
    "SILENCE",
    "UNKNOWN",
    "WORDS",
    "Clip",
    "DataConfig",
    "Dataset",
    "all_clips",
    "load_dataset",
    "which_set",
]

# Where each split cuts its silence segments, as fractions of every background recording.
SILENCE_REGIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}


@dataclass(frozen=True)
class DataConfig:
    """How a Speech Commands folder becomes labelled splits.

    Attributes:
        preset: label set: "12", "real10", "yesno4", "all36", "gostop" or "gostop2" (see
            `LABEL_PRESETS`).
        commands: command words overriding the preset; labels are then the commands followed
            by `_unknown_` and `_silence_`.
        unknown_fraction: share of the non-command clips kept as `_unknown_` in each split.
        silence_count: `_silence_` clips in train; -1 = the mean size of a command class there.
        split: "lists" (the list files, or the hash rule when the folder has none), "hash"
            (always the speaker-hash rule) or "random" (seeded file split, leaks speakers).
        split_fractions: train/validation/test fractions of `split="random"`.
        validation_percent / testing_percent: the hash rule's percentages.
        seed: seeds the unknown subset, the silence segments and the random split.
        clips_per_word: keep at most this many clips of each word (a seeded subset, taken
            before splitting; 0 keeps every clip). The go/stop study used ~800 of each word.
        extra_unknown_roots: folders (e.g. synthetic near-miss words) whose clips are all added
            to `_unknown_` in train; sub-folders named like a command word are skipped.
    """

    preset: str = "12"
    commands: tuple[str, ...] = ()
    unknown_fraction: float = 0.2
    silence_count: int = -1
    split: str = "lists"
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    validation_percent: float = 10.0
    testing_percent: float = 10.0
    seed: int = 0
    extra_unknown_roots: tuple[str, ...] = ()
    clips_per_word: int = 0

    def __post_init__(self):
        check_choice("data.preset", self.preset, tuple(LABEL_PRESETS))
        check_choice("data.split", self.split, SPLIT_MODES)
        check_range("data.unknown_fraction", self.unknown_fraction, 0.0, 1.0)
        check_range("data.silence_count", self.silence_count, -1, 10**9)
        check_range("data.clips_per_word", self.clips_per_word, 0, 10**9)
        check_range("data.validation_percent", self.validation_percent, 0.0, 100.0)
        check_range("data.testing_percent", self.testing_percent, 0.0, 100.0)
        check_range(
            "data.validation_percent + data.testing_percent",
            self.validation_percent + self.testing_percent,
            0.0,
            100.0,
        )
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0:
            raise TinyKWSError("data.split_fractions must be three numbers >= 0 (train, val, test)")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise TinyKWSError(f"data.split_fractions must sum to 1; got {self.split_fractions}")
        bad = [w for w in self.commands if not w or w.startswith("_")]
        if bad or len(set(self.commands)) != len(self.commands):
            raise TinyKWSError(
                f"data.commands must be distinct words not starting with '_'; got {self.commands}"
            )

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in model output order."""
        if self.commands:
            return (*self.commands, UNKNOWN, SILENCE)
        return LABEL_PRESETS[self.preset]

    @property
    def command_words(self) -> tuple[str, ...]:
        """The words that are classes of their own (everything else is `_unknown_`)."""
        return self.commands or COMMAND_PRESETS[self.preset]

    def split_rule(self) -> SplitRule:
        return SplitRule(
            self.validation_percent, self.testing_percent, self.split_fractions, self.seed
        )


@dataclass(frozen=True)
class Clip:
    """One labelled example.

    A `_silence_` clip cut from a background recording has `word == "_background_noise_"`,
    `path` = the recording, `offset` = its first sample (at 16 kHz) and `gain` = its scale.
    """

    path: str
    label: str
    word: str
    speaker: str
    offset: int = 0
    gain: float = 1.0

    def key(self) -> str:
        """A stable identity: path, size and modification time of the file, offset and gain."""
        try:
            stat = os.stat(self.path)
        except OSError:
            raise TinyKWSError(f"{self.path}: clip file is missing; reload the dataset") from None
        return f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}|{self.offset}|{self.gain!r}"


@dataclass
class Dataset:
    """Labelled splits of a Speech Commands folder.

    Attributes:
        root: the folder.
        config: the DataConfig it was built with.
        labels: class names in model output order.
        splits: "train", "validation", "test" (each possibly empty), or "all" from `all_clips`.
        noise_files: the background recordings (for silence clips and noise augmentation).
        split_source: how splits were made: "lists", "hash", "random", "test set" or "all".
    """

    root: str
    config: DataConfig
    labels: tuple[str, ...]
    splits: dict[str, list[Clip]]
    noise_files: list[str] = field(default_factory=list)
    split_source: str = "lists"

    def clips(self, split: str) -> list[Clip]:
        """The clips of one split."""
        check_choice("split", split, tuple(self.splits))
        return self.splits[split]

    def class_counts(self, split: str) -> dict[str, int]:
        """Number of clips per label (every label, in output order, zeros included)."""
        counts = dict.fromkeys(self.labels, 0)
        for clip in self.clips(split):
            counts[clip.label] += 1
        return counts

    def label_indices(self, split: str) -> np.ndarray:
        """int64 (N,) class index of each clip of `split`, in `labels` order."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[c.label] for c in self.clips(split)], dtype=np.int64)

    def class_weights(self, split: str = "train") -> np.ndarray:
        """float32 (n_classes,): inverse class frequency, scaled so present classes average 1.

        A class with no clips gets weight 1 (it never occurs as a target), so the mean over all
        classes is 1 too.
        """
        counts = np.array(list(self.class_counts(split).values()), dtype=np.float64)
        weights = np.ones_like(counts)
        present = counts > 0
        if present.any():
            inverse = 1.0 / counts[present]
            weights[present] = inverse / inverse.mean()
        return weights.astype(np.float32)

    def calibration_set(self, n_per_class: int, split: str = "train", seed: int = 0) -> list[Clip]:
        """Up to `n_per_class` clips of every label, drawn without replacement, seeded."""
        rng = np.random.default_rng(seed)
        chosen = []
        for label in self.labels:
            members = [c for c in self.clips(split) if c.label == label]
            picks = rng.choice(len(members), min(n_per_class, len(members)), replace=False)
            chosen += [members[i] for i in sorted(picks)]
        return chosen


def load_dataset(root: str | os.PathLike, config: DataConfig | None = None) -> Dataset:
    """Label and split a dataset-layout folder, or load an official test-set folder as "test".

    Raises:
        TinyKWSError: the folder is missing, empty or holds no word folders with clips.
    """
    config = config or DataConfig()
    path = check_root(root)
    if is_test_set(path):
        clips = label_entries(scan_test_set(path), config.labels, path)
        splits = {"train": [], "validation": [], "test": clips}
        return Dataset(str(path), config, config.labels, splits, noise_files(path), "test set")
    entries = keep_clips_per_word(require_entries(path, scan_dataset(path)), config)
    source = config.split
    if source == "lists" and not has_lists(path):
        logger.info(f"{path}: no validation/testing list files; splitting by the speaker hash")
        source = "hash"
    if source == "random":
        logger.warning(
            "a random file split puts clips of one speaker in several splits, so validation and "
            "test accuracy come out optimistic; use split='hash' for a speaker-independent split"
        )
    parts = SPLITTERS[source](path, entries, config.split_rule())
    splits = {
        name: keep_unknown_fraction(label_entries(parts[name], config.labels, path), config, name)
        for name in SPLITS
    }
    splits["train"] += extra_unknown_clips(config)
    noises = noise_files(path)
    add_silence(splits, noises, config)
    return Dataset(str(path), config, config.labels, splits, noises, source)


def all_clips(root: str | os.PathLike, config: DataConfig | None = None) -> Dataset:
    """Every clip of a folder, unsplit and not subsampled, as the split "all".

    Non-command words are `_unknown_` (all of them); a test-set folder's `_silence_/` clips are
    included; no silence segments are generated from background recordings.
    """
    config = config or DataConfig()
    path = check_root(root)
    scan = scan_test_set if is_test_set(path) else scan_dataset
    clips = label_entries(require_entries(path, scan(path)), config.labels, path)
    return Dataset(str(path), config, config.labels, {"all": clips}, noise_files(path), "all")


def require_entries(root: Path, entries: list[FileEntry]) -> list[FileEntry]:
    if not entries:
        raise TinyKWSError(
            f"{root}: no word folders with .wav/.flac clips; expected the Speech Commands "
            "layout <root>/<word>/<speaker>_nohash_<n>.wav"
        )
    return entries


def keep_clips_per_word(entries: list[FileEntry], config: DataConfig) -> list[FileEntry]:
    """At most `config.clips_per_word` clips of each word: those first in a seeded hash order
    (of seed and relative path, so the choice does not depend on the other clips)."""
    if not config.clips_per_word:
        return entries
    by_word: dict[str, list[FileEntry]] = {}
    for entry in entries:
        by_word.setdefault(entry.word, []).append(entry)
    kept = set()
    for group in by_word.values():
        ranked = sorted(group, key=lambda e: seeded_hash(config.seed, e.relpath))
        kept.update(e.relpath for e in ranked[: config.clips_per_word])
    return [e for e in entries if e.relpath in kept]


def label_entries(entries: list[FileEntry], labels: tuple[str, ...], root: Path) -> list[Clip]:
    """Clips with labels: a command word is its own class, silence stays, the rest is unknown.

    Clips whose label is not in `labels` (non-commands when there is no `_unknown_` class, as in
    all36) are left out with a warning.
    """
    clips, dropped = [], 0
    for entry in entries:
        label = entry.word if entry.word == SILENCE or entry.word in labels else UNKNOWN
        if label not in labels:
            dropped += 1
            continue
        clips.append(Clip(entry.path, label, entry.word, entry.speaker))
    if dropped:
        logger.warning(f"{root}: {dropped} clips of words outside the labels were left out")
    return clips


def keep_unknown_fraction(clips: list[Clip], config: DataConfig, split: str) -> list[Clip]:
    """Keep round(fraction * n) of the `_unknown_` clips: those first in a seeded hash order.

    The hash of (seed, word, file name) decides, so the choice does not depend on where the
    dataset lives or on the other clips' order.
    """
    unknown = [c for c in clips if c.label == UNKNOWN]
    n_keep = round(config.unknown_fraction * len(unknown))
    ranked = sorted(unknown, key=lambda c: seeded_hash(config.seed, unknown_name(c)))
    kept = {c.path for c in ranked[:n_keep]}
    return [c for c in clips if c.label != UNKNOWN or c.path in kept]


def unknown_name(clip: Clip) -> str:
    return f"{clip.word}/{os.path.basename(clip.path)}"


def extra_unknown_clips(config: DataConfig) -> list[Clip]:
    """All clips of `config.extra_unknown_roots` as `_unknown_` (command-word folders skipped)."""
    clips = []
    for root in config.extra_unknown_roots:
        path = check_root(root)
        entries = require_entries(path, scan_dataset(path))
        skipped = sorted({e.word for e in entries if e.word in config.command_words})
        if skipped:
            logger.warning(f"{path}: folders {', '.join(skipped)} are commands, not unknown words")
        clips += [
            Clip(e.path, UNKNOWN, e.word, e.speaker) for e in entries if e.word not in skipped
        ]
    return clips


def add_silence(splits: dict[str, list[Clip]], noises: list[str], config: DataConfig) -> None:
    """Append seeded `_silence_` segments to every split (see the module docstring)."""
    if SILENCE not in config.labels:
        return
    if not noises:
        logger.warning("no _background_noise_ recordings: the _silence_ class has no clips")
        return
    counts = silence_counts(splits, config)
    lengths = [noise_length(p) for p in noises]
    for split, count in counts.items():
        splits[split] += silence_segments(noises, lengths, split, count, config.seed)


def silence_counts(splits: dict[str, list[Clip]], config: DataConfig) -> dict[str, int]:
    """Silence clips per split: the train count, and the same share of the other splits."""
    train = splits["train"]
    n_train = config.silence_count
    if n_train < 0:
        per_label = Counter(c.label for c in train)
        sizes = [per_label[w] for w in config.command_words]
        n_train = round(float(np.mean(sizes))) if sizes else 0
    if not train:
        return dict.fromkeys(SPLITS, 0)
    return {name: round(n_train * len(splits[name]) / len(train)) for name in SPLITS}


def silence_segments(
    noises: list[str], lengths: list[int], split: str, count: int, seed: int
) -> list[Clip]:
    """`count` seeded 1 s segments of the recordings, from this split's region of each."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    low, high = SILENCE_REGIONS[split]
    clips = []
    for _ in range(count):
        which = int(rng.integers(len(noises)))
        first, last = int(low * lengths[which]), int(high * lengths[which]) - CLIP_SAMPLES
        if last < first:  # region shorter than a clip: use the whole recording
            first, last = 0, max(0, lengths[which] - CLIP_SAMPLES)
        offset = int(rng.integers(first, last + 1))
        gain = float(10.0 ** rng.uniform(-4.0, 0.0))
        clips.append(Clip(noises[which], SILENCE, BACKGROUND, "", offset, gain))
    return clips


def noise_length(path: str) -> int:
    """Length of a recording in 16 kHz samples, read from its header (no decoding)."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception as exc:  # libsndfile errors come as several exception types
        reason = str(exc).split("\n")[0]
        raise TinyKWSError(f"{path}: not a readable WAV/FLAC file ({reason})") from None
    return int(info.frames * CLIP_SAMPLES // info.samplerate)


# Waveform loading lives in its own module; re-exported here as part of the dataset API.
from tinykws.data.waveforms import (  # noqa: E402
    load_clip_audio,
    load_noises,
    load_waveforms,
    waveforms_key,
)

__all__ += ["load_clip_audio", "load_noises", "load_waveforms", "waveforms_key"]
