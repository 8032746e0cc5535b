"""Synthetic corpus: config checks, clip placement, noises, layout, determinism and resuming."""

from __future__ import annotations

import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tinykws.config import from_dict
from tinykws.data import noise, synth, tts
from tinykws.data.layout import which_set
from tinykws.errors import TinyKWSError

requires_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)
SMALL = synth.SynthConfig(
    per_word=3, base_words=("yes", "no"), words=("finesse",), noise_seconds=2.0, jobs=1
)


def read_int16(path: Path) -> tuple[np.ndarray, int]:
    """Samples and rate of a WAV file, checking it is 16-bit mono."""
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth()) == (1, 2)
        return np.frombuffer(f.readframes(f.getnframes()), "<i2"), f.getframerate()


def corpus_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != synth.MARKER
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("synth") / "corpus"
    report = synth.synthesize(root, SMALL)
    assert (report.clips_written, report.clips_kept, report.noises_written) == (9, 0, 7)
    return root


# --- no text-to-speech needed ---------------------------------------------------------------


@pytest.mark.parametrize("word", ["Yes", "../up", "_unknown_", "two words", ""])
def test_bad_word_is_a_one_line_error(word):
    with pytest.raises(TinyKWSError, match="use lower-case letters"):
        synth.SynthConfig(words=(word,))


def test_config_checks_ranges_and_keys():
    with pytest.raises(TinyKWSError, match="per_word must be in"):
        synth.SynthConfig(per_word=0)
    with pytest.raises(TinyKWSError, match="did you mean 'per_word'"):
        from_dict(synth.SynthConfig, {"perword": 3})
    config = from_dict(synth.SynthConfig, {"words": ["finesse", "yes"], "jobs": 2})
    assert config.all_words == (*synth.SPEECH_COMMANDS_WORDS, "finesse")
    assert "jobs" not in config.identity()


def test_word_lists():
    assert len(set(synth.SPEECH_COMMANDS_WORDS)) == 35
    assert {"finesse", "elbow", "yet", "know", "cup", "town", "lift"} <= set(synth.NEAR_MISS_WORDS)
    assert not set(synth.NEAR_MISS_WORDS) & set(synth.SPEECH_COMMANDS_WORDS)
    synth.SynthConfig(words=synth.NEAR_MISS_WORDS)  # all valid folder names


def test_speakers_follow_the_hash_rule_with_balanced_splits():
    inventory = tts.VoiceInventory(("en-us", "en-gb"), ("f3", "m1"), ("slt",))
    config = synth.SynthConfig(per_word=20)
    for group in range(synth.WORD_GROUPS):
        speakers = [synth.draw_speaker(i, group, config, inventory) for i in range(20)]
        ids = [speaker_id for speaker_id, _ in speakers]
        assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids) and len(set(ids)) == 20
        splits = [which_set(f"{i}_nohash_0.wav") for i in ids]
        assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (
            16, 2, 2,
        )  # fmt: skip
    again = synth.draw_speaker(5, 2, config, inventory)
    assert again == synth.draw_speaker(5, 2, synth.SynthConfig(per_word=3), inventory)
    assert again != synth.draw_speaker(5, 2, synth.SynthConfig(seed=1), inventory)


def test_trim_silence_keeps_the_loud_part_with_one_frame_margin():
    x = np.zeros(8000, np.float32)
    x[1600:3200] = np.sin(np.arange(1600) * 0.3)
    x[:800] = 1e-4  # far below -35 dB of the peak: trimmed as silence
    assert np.array_equal(synth.trim_silence(x), x[1440:3360])


def test_place_in_clip_scales_and_offsets_the_word():
    word = np.hanning(4000).astype(np.float32) * 0.05
    clips = [synth.place_in_clip(word, np.random.default_rng(s)) for s in range(20)]
    for clip in clips:
        assert clip.dtype == np.int16 and clip.shape == (16000,)
        nonzero = np.flatnonzero(clip)
        assert nonzero[-1] - nonzero[0] < 4000
        assert 0.25 * 32767 - 1 <= np.abs(clip).max() <= 0.9 * 32767 + 1
    assert len({int(np.flatnonzero(c)[0]) for c in clips}) > 10  # offsets vary
    long_word = np.ones(20000, np.float32)
    assert synth.place_in_clip(long_word, np.random.default_rng(0))[-1] == 0  # faded cut


@pytest.mark.parametrize(
    ("kind", "slope"), [("white_noise", 0.0), ("pink_noise", -1.0), ("brown_noise", -2.0)]
)
def test_coloured_noise_has_the_named_spectral_slope(kind, slope):
    x = noise.NOISES[kind](np.random.default_rng(1), 160000, None)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs_hz = np.fft.rfftfreq(x.size, 1 / 16000)
    band = (freqs_hz > 50) & (freqs_hz < 7000)
    fitted = np.polyfit(np.log(freqs_hz[band]), np.log(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.1  # a least-squares fit over ~110k bins is tight
    assert x.dtype == np.float32 and np.abs(x).max() == pytest.approx(noise.NOISE_PEAK)


@pytest.mark.parametrize("base_hz", [50, 60])
def test_mains_hum_peaks_at_its_base_frequency(base_hz):
    x = noise.NOISES[f"mains_hum_{base_hz}hz"](np.random.default_rng(2), 32000, None)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(x.size, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(base_hz, abs=1)


def test_noise_is_deterministic_for_a_seed():
    make = noise.NOISES["running_water"]
    a, b = (make(np.random.default_rng(3), 16000, None) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make(np.random.default_rng(4), 16000, None))


def test_parse_wav_bytes_reads_a_streamed_header():
    pcm = np.array([0, 16384, -32768, 32767], "<i2")
    fmt = (1).to_bytes(2, "little") * 2 + (22050).to_bytes(4, "little")
    fmt += (44100).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    header = b"RIFF" + b"\xff\xff\xff\x7f" + b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt
    data = header + b"data" + b"\x00\xf0\xff\x7f" + pcm.tobytes()  # placeholder size, as espeak
    samples, rate_hz = tts.parse_wav_bytes(data)
    assert rate_hz == 22050
    assert np.array_equal(samples, pcm / 32768.0)
    with pytest.raises(TinyKWSError, match="produced no WAV audio"):
        tts.parse_wav_bytes(b"not a wav")


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TinyKWSError) as err:
        synth.synthesize(tmp_path / "out", SMALL)
    assert str(err.value) == "espeak-ng not found; install it with: apt-get install espeak-ng flite"
    assert not (tmp_path / "out").exists()


# --- with espeak-ng / flite -----------------------------------------------------------------


@pytest.mark.tts
@requires_espeak
def test_missing_flite_warns_and_uses_espeak_only(monkeypatch, tmp_path):
    (tmp_path / "espeak-ng").symlink_to(shutil.which("espeak-ng"))
    monkeypatch.setenv("PATH", str(tmp_path))
    warnings = []
    monkeypatch.setattr(tts.logger, "warning", warnings.append)
    inventory = tts.discover_voices()
    assert inventory.flite_voices == () and "en-us" in inventory.espeak_voices
    assert warnings and warnings[0].startswith("flite not found")
    config = synth.SynthConfig(per_word=30, flite_fraction=1.0)
    _, voice = synth.draw_speaker(0, synth.word_group("yes"), config, inventory)
    assert voice.engine == "espeak-ng"


@pytest.mark.tts
def test_layout_clips_and_split_lists(corpus):
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir()) == [
        "_background_noise_", "finesse", "no", "yes",
    ]  # fmt: skip
    clips = sorted(corpus.glob("*/*_nohash_*.wav"))
    assert len(clips) == 9
    for path in clips:
        assert re.fullmatch(r"[0-9a-f]{8}_nohash_0\.wav", path.name)
        samples, rate_hz = read_int16(path)
        assert rate_hz == 16000 and samples.shape == (16000,)
        assert 0.25 * 32767 - 1 <= np.abs(samples).max() <= 0.9 * 32767 + 1
    for kind in noise.NOISES:
        samples, rate_hz = read_int16(corpus / "_background_noise_" / f"{kind}.wav")
        assert (rate_hz, samples.shape) == (16000, (32000,))
    listed = {
        split: (corpus / name).read_text().split() for split, name in synth.LIST_FILES.items()
    }
    for path in clips:
        rel = path.relative_to(corpus).as_posix()
        expected = {which_set(rel)} & set(listed)
        assert {split for split, names in listed.items() if rel in names} == expected
    for word in ("yes", "no", "finesse"):  # per_word=3: one speaker of each split per word
        assert sorted(which_set(p.name) for p in (corpus / word).iterdir()) == [
            "test", "train", "validation",
        ]  # fmt: skip


@pytest.mark.tts
def test_same_seed_gives_identical_bytes_whatever_the_worker_count(corpus, tmp_path):
    again = synth.synthesize(tmp_path / "again", synth.SynthConfig(**{**vars(SMALL), "jobs": 2}))
    assert again.clips_written == 9
    assert corpus_files(tmp_path / "again") == corpus_files(corpus)
    other_seed = synth.SynthConfig(**{**vars(SMALL), "seed": 1})
    synth.synthesize(tmp_path / "seed1", other_seed)
    assert set(corpus_files(tmp_path / "seed1")).isdisjoint(
        name for name in corpus_files(corpus) if "_nohash_" in name
    )


@pytest.mark.tts
def test_rerun_only_makes_missing_files(corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    before = corpus_files(root)
    victim = sorted(root.glob("yes/*.wav"))[0]
    victim.unlink()
    (root / "_background_noise_" / "babble.wav").unlink()
    (root / "no" / ".half_written.wav.x1.tmp").write_bytes(b"RIFF")  # a killed run's leftover
    report = synth.synthesize(root, SMALL)
    assert (report.clips_written, report.clips_kept, report.noises_written) == (1, 8, 1)
    assert corpus_files(root) == before
    assert re.fullmatch(
        r".*: 1 clips written, 8 kept from before, 1 noise files, .* clips/s\)", str(report)
    )


@pytest.mark.tts
def test_speakers_stay_when_words_are_added(corpus):
    inventory = tts.discover_voices()
    more = synth.SynthConfig(**{**vars(SMALL), "words": ("finesse", "elbow"), "per_word": 5})
    paths = {path for job in synth.plan_speakers(corpus, more, inventory) for path in job.paths}
    assert {str(p) for p in corpus.glob("*/*_nohash_*.wav")} <= paths


@pytest.mark.tts
def test_ensure_corpus_reuses_a_complete_corpus(corpus, monkeypatch):
    def no_synthesis(*args):
        raise AssertionError("a complete corpus was synthesized again")

    monkeypatch.setattr(synth, "synthesize", no_synthesis)
    same_but_more_jobs = synth.SynthConfig(**{**vars(SMALL), "jobs": 4})
    assert synth.ensure_corpus(corpus, same_but_more_jobs) == corpus
    with pytest.raises(AssertionError, match="synthesized again"):
        synth.ensure_corpus(corpus, synth.SynthConfig(**{**vars(SMALL), "per_word": 4}))


@pytest.mark.tts
@requires_espeak
def test_refuses_a_folder_that_is_not_a_synthetic_corpus(tmp_path):
    (tmp_path / "validation_list.txt").write_text("yes/real_nohash_0.wav\n")
    with pytest.raises(TinyKWSError, match="not empty and not a synthetic corpus made by tinykws"):
        synth.synthesize(tmp_path, SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["validation_list.txt"]


@pytest.mark.tts
def test_interrupted_run_leaves_whole_files_and_resumes_to_the_same_bytes(
    corpus, tmp_path, monkeypatch
):
    calls = []
    real_speak_words = tts.speak_words

    def speak_then_fail(texts, voice):
        calls.append(texts)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_speak_words(texts, voice)

    monkeypatch.setattr(tts, "speak_words", speak_then_fail)
    root = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(root, SMALL)
    monkeypatch.undo()
    written = sorted(root.glob("*/*.wav"))
    assert written and not list(root.rglob("*.tmp"))
    assert all(read_int16(path)[0].size in (16000, 32000) for path in written)
    report = synth.synthesize(root, SMALL)
    assert report.clips_kept > 0 and report.clips_written + report.clips_kept == 9
    assert corpus_files(root) == corpus_files(corpus)


@pytest.mark.tts
@requires_espeak
def test_one_espeak_run_is_cut_into_one_piece_per_word(monkeypatch):
    voice = tts.Voice("espeak-ng", "en-us", variant="f3", pitch=50, speed=150)
    words = ("yes", "backward", "stop", "sheila")
    pieces = tts.speak_words(words, voice)
    assert len(pieces) == 4
    for piece, alone in zip(pieces, (tts.speak(word, voice) for word in words)):
        # Cut from one run, a word lasts as long as said alone, give or take two 10 ms frames
        # of the pause detector and the engine's own leading/trailing silence.
        trimmed, alone_trimmed = synth.trim_silence(piece), synth.trim_silence(alone)
        assert abs(trimmed.size - alone_trimmed.size) <= 480
    monkeypatch.setattr(tts, "split_at_pauses", lambda *args, **kwargs: [])
    fallback = tts.speak_words(words, voice)  # the cut failed: each word is said on its own
    assert all(np.array_equal(a, tts.speak(w, voice)) for a, w in zip(fallback, words))
