"""The generated C detector (stream.c, kws_stream) against the Python detector on the integer
graph: identical events, network scores equal to the interpreter's at every hop."""

from __future__ import annotations

import numpy as np
import pytest
from c_support import needs_gcc
from export_helpers import int8_graph

from tinykws.data.audio import read_audio, write_wav
from tinykws.export.c import export_c
from tinykws.features.incremental import StreamingFrontEnd
from tinykws.ir import interpret
from tinykws.ir.kernels import quantize_f32_s8
from tinykws.measure.predictors import GraphPredictor
from tinykws.stream.detector import detect
from tinykws.stream.native import build_kws_stream, read_trace, run_kws_stream
from tinykws.stream.testing import tiny_graph, tone_stream
from tinykws.stream_config import StreamConfig

pytestmark = needs_gcc


def rounded(events) -> list[tuple]:
    """Events as kws_stream prints them (time and score to 4 decimals)."""
    return [(f"{e.time_s:.4f}", e.label, f"{e.score:.4f}") for e in events]


def python_inputs(graph, samples: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The int8 network input of the window ending at each time, as the Python detector makes
    it (incremental front end, normalisation, the graph's input quantization)."""
    from tinykws.train.model_file import frontend, normalization

    meta = graph.metadata
    stream = StreamingFrontEnd(frontend(meta))
    q = graph.tensor(graph.ops[0].outputs[0])
    out, done = [], 0
    for end in times:
        stream.push(samples[done:end])
        done = end
        features = normalization(meta).apply_numpy(stream.window())
        out.append(quantize_f32_s8(features, q.scale[0], q.zero_point[0]))
    return np.stack(out)


def check_c_equals_python(graph, wav, tmp_path, config: StreamConfig):
    graph.metadata["stream"] = config.to_dict()
    folder = export_c(graph, tmp_path / "c", cortex_m4="off", emulate="off")
    binary = build_kws_stream(folder)
    samples = read_audio(wav)
    events, detector = detect(GraphPredictor(graph, dict(graph.metadata)), samples, config)
    c_events, _ = run_kws_stream(binary, wav, trace=tmp_path / "trace.bin")
    assert rounded(c_events) == rounded(events)
    x = graph.tensor(graph.inputs[0])
    classes = graph.tensor(graph.outputs[0]).shape[-1]
    trace = read_trace(tmp_path / "trace.bin", x.shape[1], x.shape[2], classes)
    np.testing.assert_array_equal(trace.times, detector.scores.times)
    int8 = graph_without_float_boundary(graph)
    scores = np.concatenate(
        [
            interpret(int8, trace.inputs[i : i + 64, ..., None])[int8.outputs[0]]
            for i in range(0, len(trace.inputs), 64)
        ]
    )
    np.testing.assert_array_equal(trace.scores, scores.reshape(len(trace.inputs), -1))
    # The C front end (float32 after a double FFT) rounds a rare value to the other integer.
    expected = python_inputs(graph, samples, trace.times)
    differ = np.abs(trace.inputs.astype(int) - expected.astype(int))
    assert differ.max() <= 1 and differ.mean() < 1e-3
    return events


def graph_without_float_boundary(graph):
    from tinykws.export.c.generate import int8_graph as strip

    return strip(graph)


def test_tiny_model_c_events_equal_python(tmp_path):
    samples, truth = tone_stream(seconds=60.0, seed=2)
    samples = samples + np.random.default_rng(1).normal(0, 0.01, len(samples)).astype(np.float32)
    wav = tmp_path / "tones.wav"
    write_wav(wav, samples)
    events = check_c_equals_python(tiny_graph(), wav, tmp_path, StreamConfig())
    assert len(events) >= len(truth)


def test_trained_model_c_events_equal_python(tone_corpus, tmp_path):
    """A trained TinyConv (conv, fully connected) on a test stream made from the tone corpus."""
    from tinykws.data.stream_test import StreamTestConfig, write_stream_test

    config = StreamTestConfig(
        split="train", minutes=1.0, keywords=12, preset="12", seed=4, snr_db=(30.0, 40.0)
    )
    wav, _ = write_stream_test(tmp_path / "stream.wav", tone_corpus, config)
    graph = int8_graph(tone_corpus, "tinyconv")
    events = check_c_equals_python(graph, wav, tmp_path, StreamConfig(threshold=0.5))
    assert len(events) >= 3


def test_threshold_option_and_bad_files(tmp_path):
    graph = tiny_graph()
    folder = export_c(graph, tmp_path / "c", cortex_m4="off", emulate="off")
    binary = build_kws_stream(folder)
    samples, _ = tone_stream(seconds=20.0, seed=0)
    write_wav(tmp_path / "a.wav", samples)
    strict, _ = run_kws_stream(binary, tmp_path / "a.wav", threshold=0.999)
    loose, _ = run_kws_stream(binary, tmp_path / "a.wav", threshold=0.5)
    assert all(e.score >= 0.999 for e in strict) and min(e.score for e in loose) < 0.9
    assert strict[0].time_s > loose[0].time_s
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234WAVEjunk")
    from tinykws.errors import TinyKWSError

    with pytest.raises(TinyKWSError, match="damaged"):
        run_kws_stream(binary, tmp_path / "bad.wav")
