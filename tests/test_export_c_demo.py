"""End to end from WAV files: the generated kws_demo (C front end + C network, built by the
generated Makefile) against the Python pipeline (numpy front end + interpret) on the tone
corpus; bad WAV files are refused with a message and exit status 2."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from c_support import needs_gcc
from conftest import TONE_WORDS

from tinykws.data.audio import load_clip
from tinykws.export.c import export_c
from tinykws.export.c.build import build_demo
from tinykws.features.frontend import FrontEnd, Normalization
from tinykws.ir import interpret
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

TOP1_AGREEMENT = 0.995
SMALL_DSCNN = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}


def corpus_clips(root: Path) -> tuple[list[Path], np.ndarray]:
    paths = sorted(p for word in TONE_WORDS for p in (root / word).glob("*.wav"))
    labels = np.array([TONE_WORDS.index(p.parent.name) for p in paths])
    return paths, labels


def train_briefly(features, labels, norm: Normalization, n_classes: int = len(TONE_WORDS)):
    """A small DS-CNN fitted to the clips for a few epochs (deterministic)."""
    torch.manual_seed(0)
    model = build_model(model_config(SMALL_DSCNN, n_classes, features.shape[1:]))
    x = torch.from_numpy(norm.apply_numpy(features)).unsqueeze(1)
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(12):
        for batch in torch.randperm(len(x), generator=order).split(16):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def demo(tone_corpus, tmp_path_factory):
    """(kws_demo path, graph, front end, normalisation, clips, labels)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    torch.set_num_threads(1)
    frontend = FrontEnd("mfcc")
    paths, labels = corpus_clips(tone_corpus)
    features = frontend.numpy(np.stack([load_clip(p) for p in paths]))
    norm = Normalization.fit(features)
    model = train_briefly(features, labels, norm)
    graph = lower(quantize(model, QuantConfig(weight_bits=4), QuantData(features, norm)))
    graph.metadata.update(labels=list(TONE_WORDS), frontend="mfcc", normalization=norm.to_dict())
    folder = export_c(graph, tmp_path_factory.mktemp("c"), cortex_m4="off")
    if shutil.which("make"):
        subprocess.run(
            ["make", "-s", "CC=gcc", "CFLAGS=-std=c99 -Wall -Wextra -Werror -O2"],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        binary = folder / "kws_demo"
    else:
        binary = build_demo(folder)
    return binary, graph, frontend, norm, paths, labels


def run_demo(binary: Path, wav: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), str(wav)], capture_output=True, text=True)


@needs_gcc
def test_demo_top1_agrees_with_python_pipeline(demo):
    binary, graph, frontend, norm, paths, labels = demo
    features = frontend.numpy(np.stack([load_clip(p) for p in paths]))
    logits = interpret(graph, norm.apply_numpy(features)[..., None])[graph.outputs[0]]
    python_top1 = [TONE_WORDS[i] for i in logits.argmax(axis=1)]
    c_top1 = []
    for path in paths:
        result = run_demo(binary, path)
        assert result.returncode == 0, result.stderr
        lines = [line.split() for line in result.stdout.splitlines()]
        scores = [float(score) for _, score in lines]
        assert sorted(label for label, _ in lines) == sorted(TONE_WORDS)
        assert scores == sorted(scores, reverse=True)
        c_top1.append(lines[0][0])
    agreement = np.mean([a == b for a, b in zip(c_top1, python_top1)])
    assert agreement >= TOP1_AGREEMENT
    assert len(set(python_top1)) >= 6  # a real classifier, not a constant answer
    assert np.mean(logits.argmax(axis=1) == labels) > 0.5


@needs_gcc
def test_demo_centres_short_and_long_files_like_load_clip(demo, tmp_path):
    binary, graph, frontend, norm, paths, _ = demo
    audio, _ = sf.read(paths[0], dtype="int16")
    for n in (9000, 23000):
        wav = tmp_path / f"clip{n}.wav"
        sf.write(wav, np.resize(audio, n), 16000, subtype="PCM_16")
        x = norm.apply_numpy(frontend.numpy(load_clip(wav)))[None, ..., None]
        expected = TONE_WORDS[int(interpret(graph, x)[graph.outputs[0]].argmax())]
        result = run_demo(binary, wav)
        assert result.returncode == 0 and result.stdout.split()[0] == expected


@needs_gcc
@pytest.mark.parametrize(
    "channels, rate_hz, subtype, reason",
    [
        (2, 16000, "PCM_16", "2 channel(s), 16 bits, 16000 Hz"),
        (1, 8000, "PCM_16", "1 channel(s), 16 bits, 8000 Hz"),
        (1, 16000, "FLOAT", "format 3, 1 channel(s), 32 bits"),
        (1, 16000, "PCM_24", "1 channel(s), 24 bits"),
    ],
)
def test_demo_refuses_wrong_wav_format(demo, tmp_path, channels, rate_hz, subtype, reason):
    wav = tmp_path / "bad.wav"
    sf.write(wav, np.zeros((rate_hz, channels)), rate_hz, subtype=subtype)
    result = run_demo(demo[0], wav)
    assert result.returncode == 2 and result.stdout == ""
    assert "expected 16-bit PCM mono at 16000 Hz" in result.stderr and reason in result.stderr


@needs_gcc
def test_demo_refuses_missing_and_non_wav_files(demo, tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    for path, message in [
        (tmp_path / "none.wav", "cannot open"),
        (tmp_path / "text.wav", "not a RIFF/WAVE file"),
    ]:
        result = run_demo(demo[0], path)
        assert result.returncode == 2 and message in result.stderr
    usage = subprocess.run([str(demo[0])], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: kws_demo" in usage.stderr


def test_export_without_front_end_has_no_demo(tmp_path):
    from c_support import every_op_graph

    (tmp_path / "main.c").write_text("/* from an earlier export */")
    export_c(every_op_graph(np.random.default_rng(0)), tmp_path, cortex_m4="off")
    assert not (tmp_path / "main.c").exists() and not (tmp_path / "frontend.c").exists()
    assert "all: libtinykws.a" in (tmp_path / "Makefile").read_text()
