"""Reading a Speech Commands folder: names, label presets, list files and the split rules.

Two layouts are understood:

- the dataset layout, `<root>/<word>/<speaker>_nohash_<n>.{wav,flac}` with
  `_background_noise_/`, `validation_list.txt` and `testing_list.txt`;
- the official test-set layout, with `_unknown_/<word>_<speaker>_nohash_<n>.wav`,
  `_silence_/*.wav` and one folder per command word.

This module only lists and names files (standard library only, no audio is decoded), so
`tinykws data stats` stays fast on a full 105,000-clip dataset.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinykws.errors import TinyKWSError

UNKNOWN = "_unknown_"
SILENCE = "_silence_"
BACKGROUND = "_background_noise_"
AUDIO_SUFFIXES = (".wav", ".flac")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
SPLITS = ("train", "validation", "test")
SPLIT_MODES = ("lists", "hash", "random")

# TensorFlow's speech_commands input_data.py: the hash is reduced modulo 2^27 so that adding
# clips to the dataset never moves an existing speaker to another split.
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1

#: The 35 words of Speech Commands v0.02 (v0.01 has the first 30 of these without
#: backward, follow, forward, learn, visual).
WORDS = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "follow", "forward", "learn", "visual",
)  # fmt: skip

COMMAND_PRESETS: dict[str, tuple[str, ...]] = {
    "12": ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"),
    "real10": ("yes", "no", "up", "down", "left", "right", "stop", "go"),
    "yesno4": ("yes", "no"),
    "all36": WORDS,
    "gostop": ("go", "stop"),
    "gostop2": ("go", "stop"),
}

#: Model output order for each preset. yesno4 follows TFLite Micro's micro_speech
#: (silence, unknown, yes, no); all36 has no _unknown_ class (every word is a command);
#: gostop2 is the go/stop study's binary task (two outputs, other words left out).
LABEL_PRESETS: dict[str, tuple[str, ...]] = {
    "12": (*COMMAND_PRESETS["12"], UNKNOWN, SILENCE),
    "real10": (*COMMAND_PRESETS["real10"], UNKNOWN, SILENCE),
    "yesno4": (SILENCE, UNKNOWN, "yes", "no"),
    "all36": (*WORDS, SILENCE),
    "gostop": ("go", "stop", UNKNOWN, SILENCE),
    "gostop2": ("go", "stop"),
}


@dataclass(frozen=True)
class FileEntry:
    """One audio file found in a folder.

    Attributes:
        path: absolute path.
        relpath: path relative to the dataset root with '/' separators, e.g. "yes/a_nohash_0.wav".
        word: the spoken word (folder name, or the name prefix in `_unknown_/`); `_silence_` for
            the test set's silence clips.
        speaker: the speaker id (the file name before `_nohash_`).
    """

    path: str
    relpath: str
    word: str
    speaker: str


def which_set(filename: str, validation_percent: float = 10.0, testing_percent: float = 10.0):
    """The split of a file under the dataset's speaker-hash rule: "train", "validation" or "test".

    Exactly TensorFlow's `input_data.which_set`: everything from `_nohash_` on is dropped from the
    base name, so all clips of one speaker land in the same split; the sha1 of the rest is mapped
    to a percentage. TensorFlow calls the last split "testing"; here it is "test".

    Example:
        >>> which_set("yes/0a7c2a8d_nohash_0.wav") == which_set("no/0a7c2a8d_nohash_3.wav")
        True
    """
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(filename))
    digest = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percent:
        return "validation"
    if percentage < validation_percent + testing_percent:
        return "test"
    return "train"


def speaker_of(filename: str) -> str:
    """The speaker id: the base name before `_nohash_` (the whole stem if there is none)."""
    stem = posixpath.splitext(posixpath.basename(filename))[0]
    return stem.split("_nohash_")[0]


def list_key(relpath: str) -> str:
    """How a clip is matched against the list files: relative path without its suffix.

    Dropping the suffix lets lists written for .wav clips select the same clips stored as .flac.
    """
    return posixpath.splitext(relpath.strip().replace("\\", "/").removeprefix("./"))[0]


def audio_files(folder: Path) -> list[str]:
    """Sorted names of the .wav/.flac files directly in `folder` (none if it does not exist)."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.name.lower().endswith(AUDIO_SUFFIXES) and e.is_file()]
    return sorted(names)


def word_folders(root: Path) -> list[str]:
    """Sorted names of the sub-folders of `root` that hold words (not `_..._` or hidden ones)."""
    with os.scandir(root) as it:
        names = [e.name for e in it if e.is_dir() and not e.name.startswith(("_", "."))]
    return sorted(names)


def is_test_set(root: Path) -> bool:
    """True for the official test-set layout (it has `_unknown_/` or `_silence_/` folders)."""
    return (root / UNKNOWN).is_dir() or (root / SILENCE).is_dir()


def check_root(root: str | os.PathLike) -> Path:
    """The dataset folder as a Path, or a one-line error when it does not exist."""
    path = Path(root).expanduser()
    hint = (
        "give a Speech Commands folder, or make one with `tinykws data synth OUT` or "
        "`tinykws data download OUT`"
    )
    if not path.exists():
        raise TinyKWSError(f"{path}: no such folder; {hint}")
    if not path.is_dir():
        raise TinyKWSError(f"{path}: not a folder; {hint}")
    return path.resolve()


def scan_dataset(root: Path) -> list[FileEntry]:
    """Every clip of a dataset-layout folder, sorted by relative path."""
    entries = []
    for word in word_folders(root):
        for name in audio_files(root / word):
            relpath = f"{word}/{name}"
            entries.append(FileEntry(str(root / word / name), relpath, word, speaker_of(name)))
    return entries


def scan_test_set(root: Path) -> list[FileEntry]:
    """Every clip of an official test-set folder, sorted by relative path."""
    entries = []
    for name in audio_files(root / UNKNOWN):
        prefix = speaker_of(name)  # "<word>_<speaker>"
        word, _, speaker = prefix.rpartition("_")
        entries.append(FileEntry(str(root / UNKNOWN / name), f"{UNKNOWN}/{name}", word, speaker))
    for name in audio_files(root / SILENCE):
        entries.append(FileEntry(str(root / SILENCE / name), f"{SILENCE}/{name}", SILENCE, ""))
    entries.extend(scan_dataset(root))
    return sorted(entries, key=lambda e: e.relpath)


def noise_files(root: Path) -> list[str]:
    """Absolute paths of the background recordings in `<root>/_background_noise_/`, sorted."""
    return [str(root / BACKGROUND / name) for name in audio_files(root / BACKGROUND)]


def read_list(path: Path) -> set[str]:
    """The `list_key`s named in a validation/testing list file (empty set if absent)."""
    if not path.is_file():
        return set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TinyKWSError(f"{path}: cannot read the list file ({exc}); fix or delete it") from None
    return {list_key(line) for line in lines if line.strip()}


def has_lists(root: Path) -> bool:
    """True when the folder carries its own validation/testing list files."""
    return (root / VALIDATION_LIST).is_file() or (root / TESTING_LIST).is_file()


@dataclass(frozen=True)
class SplitRule:
    """The parameters of the three split rules (taken from the data config)."""

    validation_percent: float = 10.0
    testing_percent: float = 10.0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


def split_by_lists(root: Path, entries: list[FileEntry], rule: SplitRule):
    """Validation/test from the list files (a missing one counts as empty), the rest train."""
    validation = read_list(root / VALIDATION_LIST)
    testing = read_list(root / TESTING_LIST)
    splits: dict[str, list[FileEntry]] = {name: [] for name in SPLITS}
    for entry in entries:
        key = list_key(entry.relpath)
        split = "validation" if key in validation else "test" if key in testing else "train"
        splits[split].append(entry)
    return splits


def split_by_hash(root: Path, entries: list[FileEntry], rule: SplitRule):
    """The speaker-hash rule (`which_set`): no speaker is in two splits."""
    splits: dict[str, list[FileEntry]] = {name: [] for name in SPLITS}
    for entry in entries:
        name = which_set(entry.relpath, rule.validation_percent, rule.testing_percent)
        splits[name].append(entry)
    return splits


def split_random(root: Path, entries: list[FileEntry], rule: SplitRule):
    """A seeded random file split with `rule.fractions`, done per word so classes stay balanced.

    Each word's clips are ordered by a keyed hash of their name (seed, word, file), which is a
    random permutation that does not change when other words gain or lose clips.
    """
    by_word: dict[str, list[FileEntry]] = {}
    for entry in entries:
        by_word.setdefault(entry.word, []).append(entry)
    splits: dict[str, list[FileEntry]] = {name: [] for name in SPLITS}
    for _, group in sorted(by_word.items()):
        order = sorted(group, key=lambda e: seeded_hash(rule.seed, e.relpath))
        n_train = round(rule.fractions[0] * len(order))
        n_validation = round(rule.fractions[1] * len(order))
        splits["train"] += order[:n_train]
        splits["validation"] += order[n_train : n_train + n_validation]
        splits["test"] += order[n_train + n_validation :]
    return {name: sorted(group, key=lambda e: e.relpath) for name, group in splits.items()}


SPLITTERS: dict[str, Callable[[Path, list[FileEntry], SplitRule], dict]] = {
    "lists": split_by_lists,
    "hash": split_by_hash,
    "random": split_random,
}


def seeded_hash(seed: int, text: str) -> str:
    """A sha1 of (seed, text): orders items pseudo-randomly, independent of the other items."""
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()
