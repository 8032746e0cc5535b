"""tinykws.data.speech_commands: splits (lists, hash rule, random), label presets, the unknown
subset, silence segments, the official test-set layout, class weights, waveform loading, and
one-line errors for bad folders."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tinykws import TinyKWSError
from tinykws.config import from_dict
from tinykws.data import speech_commands as sc
from tinykws.data.audio import read_audio, to_int16, write_wav
from tinykws.data.layout import list_key, which_set
from tinykws.data.speech_commands import (
    SILENCE,
    UNKNOWN,
    DataConfig,
    all_clips,
    load_clip_audio,
    load_dataset,
    load_noises,
    load_waveforms,
    waveforms_key,
)
from tinykws.log import logger


@pytest.fixture
def warnings_seen(caplog):
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="tinykws")
    yield caplog
    logger.removeHandler(caplog.handler)


def speaker_id(n: int) -> str:
    return f"{n * 2654435761 % 2**32:08x}"


def tiny_clip(seed: int, samples: int = 1600) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def make_layout(root: Path, words: dict[str, int], noise_seconds: float = 20.0) -> Path:
    """A dataset-layout folder: `count` short clips per word and two background recordings."""
    for w, (word, count) in enumerate(sorted(words.items())):
        for n in range(count):
            write_wav(root / word / f"{speaker_id(n)}_nohash_{w % 3}.wav", tiny_clip(100 * w + n))
    if noise_seconds:
        for k, name in enumerate(("hum.wav", "white.flac")):
            path = root / "_background_noise_" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            import soundfile as sf

            sf.write(path, tiny_clip(9000 + k, int(16000 * noise_seconds)), 16000)
    return root


def write_lists(root: Path, validation: list[str], testing: list[str]) -> None:
    (root / "validation_list.txt").write_text("".join(f"{p}\n" for p in validation))
    (root / "testing_list.txt").write_text("".join(f"{p}\n" for p in testing))


WORDS_12 = {"yes": 30, "no": 24, "up": 18, "bed": 20, "cat": 20, "wow": 10}


@pytest.fixture
def layout(tmp_path) -> Path:
    return make_layout(tmp_path / "sc", WORDS_12)


# ---- the speaker-hash rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,split",
    [  # entries of the dataset's own validation_list.txt / testing_list.txt
        ("bed/105e72bb_nohash_0.wav", "validation"),
        ("backward/7a49163e_nohash_0.wav", "validation"),
        ("bed/6d818f6c_nohash_2.wav", "validation"),
        ("go/3f2b358d_nohash_0.wav", "test"),
        ("down/1528225c_nohash_0.wav", "test"),
        ("five/0aad3227_nohash_0.wav", "test"),
    ],
)
def test_which_set_reproduces_the_dataset_lists(name, split):
    assert which_set(name) == split
    # Everything from _nohash_ on is ignored: other clips of the speaker go to the same split.
    assert which_set(name.replace("_nohash_0", "_nohash_7")) == split


@pytest.mark.devdata
def test_which_set_matches_every_listed_dev_file(dev_data):
    validation = (dev_data / "validation_list.txt").read_text().split()
    testing = (dev_data / "testing_list.txt").read_text().split()
    assert len(validation) > 600 and len(testing) > 10
    assert {which_set(p) for p in validation} == {"validation"}
    assert {which_set(p) for p in testing} == {"test"}
    listed = {list_key(p) for p in validation + testing}
    others = [p for p in sorted(dev_data.glob("yes/*.flac")) if f"yes/{p.stem}" not in listed]
    assert others and {which_set(p.name) for p in others} == {"train"}


@pytest.mark.devdata
def test_dev_data_counts_follow_the_lists(dev_data):
    ds = load_dataset(dev_data, DataConfig(preset="real10"))
    assert ds.split_source == "lists"
    validation = Counter(
        p.split("/")[0] for p in (dev_data / "validation_list.txt").read_text().split()
    )
    testing = Counter(p.split("/")[0] for p in (dev_data / "testing_list.txt").read_text().split())
    for word in ("yes", "no", "up", "down", "left", "right", "stop", "go"):
        on_disk = len(list((dev_data / word).glob("*.flac")))
        assert ds.class_counts("validation")[word] == validation[word]
        assert ds.class_counts("test")[word] == testing[word]
        assert ds.class_counts("train")[word] == on_disk - validation[word] - testing[word]
    unknown_validation = sum(n for w, n in validation.items() if w not in ds.labels)
    assert ds.class_counts("validation")[UNKNOWN] == round(0.2 * unknown_validation)


# ---- splits -----------------------------------------------------------------------------------


def test_lists_decide_the_split_and_match_across_suffixes(tmp_path):
    root = make_layout(tmp_path / "sc", {"yes": 4, "no": 4})
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("[a-z]*/*.wav"))
    # Lists written for .flac files select the same clips stored as .wav.
    write_lists(root, [files[0].replace(".wav", ".flac")], [files[1], "./" + files[2]])
    ds = load_dataset(root, DataConfig(preset="yesno4"))
    assert ds.split_source == "lists"
    as_rel = {
        split: [Path(c.path).relative_to(root).as_posix() for c in clips if c.label != SILENCE]
        for split, clips in ds.splits.items()
    }
    assert as_rel["validation"] == [files[0]]
    assert as_rel["test"] == [files[1], files[2]]
    assert as_rel["train"] == files[3:]


def test_without_lists_the_hash_rule_keeps_speakers_apart(layout, warnings_seen):
    ds = load_dataset(layout, DataConfig(unknown_fraction=1.0, silence_count=0))
    assert ds.split_source == "hash"
    assert any("speaker hash" in r.getMessage() for r in warnings_seen.records)
    for split, clips in ds.splits.items():
        for clip in clips:
            assert which_set(clip.path) == split
    speakers = {s: {c.speaker for c in clips} for s, clips in ds.splits.items()}
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["test"]
    assert sum(len(c) for c in ds.splits.values()) == sum(WORDS_12.values())


def test_random_split_is_seeded_per_word_and_warns(layout, warnings_seen):
    config = DataConfig(split="random", unknown_fraction=1.0, silence_count=0, seed=3)
    ds = load_dataset(layout, config)
    assert any("random file split" in r.getMessage() for r in warnings_seen.records)
    for word, count in WORDS_12.items():
        per_split = [
            sum(c.word == word for c in ds.clips(s)) for s in ("train", "validation", "test")
        ]
        n_train, n_val = round(0.7 * count), round(0.15 * count)
        assert per_split == [n_train, n_val, count - n_train - n_val]
    again = load_dataset(layout, config)
    assert again.splits == ds.splits
    other = load_dataset(layout, DataConfig(split="random", unknown_fraction=1.0, seed=4))
    assert other.clips("validation") != ds.clips("validation")


# ---- labels, unknown subset, silence --------------------------------------------------------


def test_label_presets_and_order():
    assert DataConfig().labels == (
        "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", UNKNOWN, SILENCE
    )  # fmt: skip
    assert DataConfig(preset="real10").labels[-2:] == (UNKNOWN, SILENCE)
    assert len(DataConfig(preset="real10").labels) == 10
    assert DataConfig(preset="yesno4").labels == (SILENCE, UNKNOWN, "yes", "no")
    assert DataConfig(preset="gostop").labels == ("go", "stop", UNKNOWN, SILENCE)
    all36 = DataConfig(preset="all36").labels
    assert len(all36) == 36 and UNKNOWN not in all36 and all36[-1] == SILENCE
    assert DataConfig(commands=("marvin",)).labels == ("marvin", UNKNOWN, SILENCE)


def test_non_commands_are_unknown_and_a_seeded_fraction_is_kept(layout):
    config = DataConfig(preset="yesno4", split="random", silence_count=0, seed=1)
    full = load_dataset(layout, replace(config, unknown_fraction=1.0))
    ds = load_dataset(layout, config)
    for split in ds.splits:
        unknown_all = [c for c in full.clips(split) if c.label == UNKNOWN]
        kept = [c for c in ds.clips(split) if c.label == UNKNOWN]
        assert {c.word for c in unknown_all} <= {"up", "bed", "cat", "wow"}
        assert len(kept) == round(0.2 * len(unknown_all))
        assert set(kept) <= set(unknown_all)
        # commands are never subsampled
        assert [c for c in ds.clips(split) if c.label in ("yes", "no")] == [
            c for c in full.clips(split) if c.label in ("yes", "no")
        ]
    assert load_dataset(layout, config).splits == ds.splits
    reseeded = load_dataset(layout, DataConfig(preset="yesno4", split="random", seed=2))
    assert reseeded.clips("train") != ds.clips("train")
    none = load_dataset(layout, DataConfig(preset="yesno4", unknown_fraction=0.0))
    assert none.class_counts("train")[UNKNOWN] == 0


def test_all36_leaves_out_words_outside_the_vocabulary(tmp_path, warnings_seen):
    root = make_layout(tmp_path / "sc", {"yes": 3, "finesse": 2})
    ds = all_clips(root, DataConfig(preset="all36"))
    assert [c.word for c in ds.clips("all")] == ["yes"] * 3
    assert any("2 clips" in r.getMessage() for r in warnings_seen.records)


def test_silence_segments(layout):
    config = DataConfig(preset="yesno4", split="random", seed=5)
    ds = load_dataset(layout, config)
    train = ds.class_counts("train")
    # auto: the mean command-class size in train
    assert train[SILENCE] == round((train["yes"] + train["no"]) / 2)
    for split in ds.splits:
        non_silence = len(ds.clips(split)) - ds.class_counts(split)[SILENCE]
        share = round(train[SILENCE] * non_silence / (len(ds.clips("train")) - train[SILENCE]))
        assert ds.class_counts(split)[SILENCE] == share
        low, high = sc.SILENCE_REGIONS[split]
        for clip in ds.clips(split):
            if clip.label != SILENCE:
                continue
            assert clip.word == sc.BACKGROUND and clip.path in ds.noise_files
            assert 1e-4 <= clip.gain <= 1.0
            length = 16000 * 20
            assert low * length <= clip.offset <= high * length - 16000
    assert load_dataset(layout, config).splits == ds.splits
    fixed = load_dataset(layout, DataConfig(preset="yesno4", silence_count=7))
    assert fixed.class_counts("train")[SILENCE] == 7


def test_no_background_folder_means_no_silence_with_a_warning(tmp_path, warnings_seen):
    root = make_layout(tmp_path / "sc", {"yes": 5, "no": 5}, noise_seconds=0)
    ds = load_dataset(root, DataConfig(preset="yesno4"))
    assert all(ds.class_counts(s)[SILENCE] == 0 for s in ds.splits)
    assert any("_background_noise_" in r.getMessage() for r in warnings_seen.records)


def test_extra_unknown_roots_join_train_and_skip_command_folders(layout, tmp_path, warnings_seen):
    extra = make_layout(tmp_path / "near", {"finesse": 3, "yes": 2}, noise_seconds=0)
    base = load_dataset(layout, DataConfig(preset="yesno4", silence_count=0))
    ds = load_dataset(
        layout, DataConfig(preset="yesno4", silence_count=0, extra_unknown_roots=(str(extra),))
    )
    added = ds.clips("train")[len(base.clips("train")) :]
    assert [(c.label, c.word) for c in added] == [(UNKNOWN, "finesse")] * 3
    assert any("yes are commands" in r.getMessage() for r in warnings_seen.records)


# ---- official test-set layout and --split all ----------------------------------------------


def make_test_set(root: Path) -> Path:
    for i in range(3):
        write_wav(root / "_unknown_" / f"bed_{speaker_id(i)}_nohash_0.wav", tiny_clip(i))
        write_wav(root / "_unknown_" / f"on_{speaker_id(i)}_nohash_1.wav", tiny_clip(10 + i))
        write_wav(root / "_silence_" / f"noise_{i}_nohash_0.wav", tiny_clip(20 + i, 16000))
        write_wav(root / "yes" / f"{speaker_id(i)}_nohash_0.wav", tiny_clip(30 + i))
        write_wav(root / "off" / f"{speaker_id(i)}_nohash_0.wav", tiny_clip(40 + i))
    return root


def test_official_test_set_layout_loads_as_test_split(tmp_path):
    root = make_test_set(tmp_path / "test_set")
    ds = load_dataset(root, DataConfig(preset="real10"))
    assert ds.split_source == "test set"
    assert ds.clips("train") == [] and ds.clips("validation") == []
    counts = ds.class_counts("test")
    assert counts["yes"] == 3 and counts[SILENCE] == 3
    assert counts[UNKNOWN] == 9  # bed and on (in _unknown_) and off (not a real10 command)
    words = Counter((c.word, c.label) for c in ds.clips("test"))
    assert words[("bed", UNKNOWN)] == 3 and words[("off", UNKNOWN)] == 3
    assert {c.speaker for c in ds.clips("test") if c.word == "bed"} == {
        speaker_id(i) for i in range(3)
    }
    # With preset 12, "on" inside _unknown_/ and "off" are commands in their own right.
    twelve = load_dataset(root, DataConfig(preset="12")).class_counts("test")
    assert twelve["on"] == 3 and twelve["off"] == 3 and twelve[UNKNOWN] == 3
    # Silence clips of the test set are whole files, read as they are.
    silence = next(c for c in ds.clips("test") if c.label == SILENCE)
    np.testing.assert_allclose(load_clip_audio(silence), read_audio(silence.path))


def test_all_clips_keeps_every_file(layout, tmp_path):
    ds = all_clips(layout, DataConfig(preset="yesno4"))
    assert list(ds.splits) == ["all"]
    assert len(ds.clips("all")) == sum(WORDS_12.values())
    assert ds.class_counts("all") == {SILENCE: 0, UNKNOWN: 68, "yes": 30, "no": 24}
    test_set = all_clips(make_test_set(tmp_path / "ts"), DataConfig(preset="yesno4"))
    assert test_set.class_counts("all") == {SILENCE: 3, UNKNOWN: 9, "yes": 3, "no": 0}


# ---- weights, calibration -------------------------------------------------------------------


def test_class_weights_are_inverse_frequency_with_mean_one(layout):
    ds = load_dataset(layout, DataConfig(preset="12", split="random", silence_count=0))
    counts = np.array(list(ds.class_counts("train").values()), dtype=float)
    weights = ds.class_weights("train")
    assert weights.dtype == np.float32 and weights.shape == (12,)
    np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-6)
    present = counts > 0
    np.testing.assert_allclose(
        weights[present] * counts[present], (weights * counts)[present][0], rtol=1e-6
    )
    np.testing.assert_array_equal(weights[~present], 1.0)


def test_calibration_set_draws_n_per_class(layout):
    ds = load_dataset(layout, DataConfig(preset="yesno4", split="random", seed=0))
    picked = ds.calibration_set(5, seed=1)
    per_label = Counter(c.label for c in picked)
    counts = ds.class_counts("train")
    assert per_label == {label: min(5, counts[label]) for label in ds.labels}
    assert len(set(picked)) == len(picked)
    assert ds.calibration_set(5, seed=1) == picked
    assert ds.calibration_set(5, seed=2) != picked


def test_label_indices_follow_label_order(layout):
    ds = load_dataset(layout, DataConfig(preset="yesno4"))
    index = ds.label_indices("train")
    assert [ds.labels[i] for i in index] == [c.label for c in ds.clips("train")]


# ---- waveforms -----------------------------------------------------------------------------


def test_waveforms_equal_the_files_and_silence_segments(layout, tmp_path):
    ds = load_dataset(layout, DataConfig(preset="yesno4", split="random", silence_count=6))
    clips = ds.clips("train")[:3] + [c for c in ds.clips("train") if c.label == SILENCE][:3]
    waves = load_waveforms(clips, jobs=2)
    assert waves.dtype == np.int16 and waves.shape == (6, 16000)
    for wave, clip in zip(waves[:3], clips[:3]):
        pcm = to_int16(read_audio(clip.path))  # 1600 samples, centred
        np.testing.assert_array_equal(wave[7200:8800], pcm)
        assert not wave[:7200].any() and not wave[8800:].any()
    noises = dict(zip(ds.noise_files, load_noises(ds)))
    for wave, clip in zip(waves[3:], clips[3:]):
        segment = noises[clip.path][clip.offset : clip.offset + 16000] * clip.gain
        np.testing.assert_array_equal(wave, to_int16(segment))


def test_waveform_cache_is_reused_and_rebuilt_when_a_file_changes(layout, tmp_path, monkeypatch):
    clips = load_dataset(layout, DataConfig(preset="yesno4", split="random")).clips("validation")
    cache = tmp_path / "cache"
    first = load_waveforms(clips, cache_dir=cache)
    assert isinstance(first, np.memmap) and len(list(cache.glob("waveforms-*.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("tinykws.data.waveforms.read_audio", no_decoding)
    np.testing.assert_array_equal(load_waveforms(clips, cache_dir=cache), first)
    monkeypatch.undo()

    key = waveforms_key(clips)
    word_clip = next(c for c in clips if c.label != SILENCE)
    write_wav(word_clip.path, np.zeros(1600, np.float32))
    os.utime(word_clip.path, ns=(1, 1))
    assert waveforms_key(clips) != key
    rebuilt = load_waveforms(clips, cache_dir=cache)
    assert not rebuilt[clips.index(word_clip)].any()


def test_a_bad_clip_stops_loading_with_its_name(layout):
    clips = load_dataset(layout, DataConfig(preset="yesno4", split="random")).clips("train")
    Path(clips[1].path).write_bytes(b"")
    with pytest.raises(TinyKWSError, match=f"{clips[1].path}: empty file"):
        load_waveforms(clips)


# ---- bad folders and configs ----------------------------------------------------------------


def test_bad_folders_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "no_audio" / "yes").mkdir(parents=True)
    (tmp_path / "no_audio" / "yes" / "readme.txt").write_text("x")
    cases = {
        "missing": "no such folder",
        "file.txt": "not a folder",
        "empty": "no word folders with .wav/.flac clips",
        "no_audio": "no word folders with .wav/.flac clips",
    }
    for name, expected in cases.items():
        for loader in (load_dataset, all_clips):
            with pytest.raises(TinyKWSError) as info:
                loader(tmp_path / name, DataConfig())
            assert str(info.value).startswith(f"{tmp_path / name}: {expected}")
            assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"preset": "13"}, "data.preset must be one of"),
        ({"split": "speaker"}, "data.split must be one of"),
        ({"unknown_fraction": 1.5}, "data.unknown_fraction must be in"),
        ({"split_fractions": [0.5, 0.2, 0.2]}, "must sum to 1"),
        ({"commands": ["yes", "yes"]}, "distinct words"),
        ({"unknown_fractoin": 0.1}, "did you mean 'unknown_fraction'"),
    ],
)
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(TinyKWSError, match=message):
        from_dict(DataConfig, data, "data")
