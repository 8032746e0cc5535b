"""Shared fixtures: a tiny tone corpus in the Speech Commands layout (no TTS needed), the path of
the real development clips (tests using it skip when absent), and single-threaded torch under
pytest-xdist so two workers do not fight over two cores."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = REPO.parent / "shared" / "data" / "speech_commands_dev"

TONE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat")


def pytest_configure(config):
    os.environ.setdefault("TINYKWS_NO_PROGRESS", "1")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Every test that reads the development clips carries the `devdata` marker, so that
    `-m "not devdata"` deselects exactly the tests the `dev_data` fixture would skip."""
    for item in items:
        if "dev_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.devdata)


def tone_clip(word_index: int, speaker: int, rng: np.random.Generator) -> np.ndarray:
    """A 1 s 16 kHz clip: a word-specific two-tone chirp, speaker-specific pitch, random offset."""
    t = np.arange(8000) / 16000
    pitch = 1.0 + 0.04 * (speaker % 5 - 2)
    f0 = (300 + 140 * word_index) * pitch
    f1 = f0 * (1.5 if word_index % 2 else 0.7)
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2))
    word = chirp * np.hanning(t.size) * 0.5
    clip = np.zeros(16000)
    start = rng.integers(0, 8000)
    clip[start : start + word.size] = word
    return (clip + rng.normal(0, 0.003, 16000)).astype(np.float32)


def write_tone_corpus(root: Path, per_word: int = 12, seed: int = 0) -> Path:
    """Write the tone corpus (TONE_WORDS x per_word clips + two noise files) under `root`."""
    from tinykws.data.audio import write_wav

    rng = np.random.default_rng(seed)
    for w, word in enumerate(TONE_WORDS):
        for n in range(per_word):
            speaker = hashlib.sha1(f"spk{n}".encode()).hexdigest()[:8]
            path = root / word / f"{speaker}_nohash_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, tone_clip(w, n, rng))
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(parents=True, exist_ok=True)
    write_wav(noise_dir / "white_noise.wav", rng.normal(0, 0.1, 16000 * 3).astype(np.float32))
    pink = np.cumsum(rng.normal(0, 0.01, 16000 * 3))
    write_wav(noise_dir / "brown_noise.wav", (pink / np.abs(pink).max() * 0.3).astype(np.float32))
    return root


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> Path:
    """A tiny, learnable Speech Commands-layout corpus of tones (12 words x 12 speakers)."""
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """The real Speech Commands development clips (../shared/data/speech_commands_dev); skips
    the test when they are absent. Tests using it are marked `devdata`."""
    if not DEV_DATA.is_dir():
        pytest.skip("../shared/data/speech_commands_dev is not present")
    return DEV_DATA


@pytest.fixture
def no_subspectral_op(monkeypatch):
    """Every layer of the model families has an integer form; this takes SubSpectralNorm's
    away, so that BC-ResNet stands for a model with a layer tinykws cannot lower."""
    from tinykws.models import trace

    handlers = [h for h in trace.MODULE_HANDLERS if h[1] is not trace._subspectral]
    monkeypatch.setattr(trace, "MODULE_HANDLERS", handlers)
