"""tinykws.stream: config, incremental front end, RecognizeCommands smoothing, detector, scoring."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tinykws.config import dump_toml, load_toml
from tinykws.errors import TinyKWSError
from tinykws.features.frontend import FrontEnd, frontend_config
from tinykws.features.incremental import StreamingFrontEnd
from tinykws.stream.detector import StreamDetector, detect
from tinykws.stream.recognize import Recognizer, probabilities, smooth
from tinykws.stream.score import read_truth, score_events
from tinykws.stream.sweep import sweep_thresholds, threshold_for
from tinykws.stream.testing import TINY_LABELS, tiny_predictor, tone_stream
from tinykws.stream_config import StreamConfig


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    config = StreamConfig(hop_ms=20.0, threshold=0.85, minimum_count=5)
    path = tmp_path / "s.toml"
    path.write_text(dump_toml({"stream": config.to_dict()}))
    assert StreamConfig.from_dict(load_toml(path)["stream"]) == config
    with pytest.raises(TinyKWSError, match="threshold"):
        StreamConfig(threshold=1.5)
    with pytest.raises(TinyKWSError, match="minimum_count"):
        StreamConfig(minimum_count=0)
    with pytest.raises(TinyKWSError, match="did you mean 'threshold'"):
        StreamConfig.from_dict({"treshold": 0.5})


def quantize_like_the_network(features: np.ndarray) -> np.ndarray:
    """What the int8 input of a model normalised with mean 0, std 1 and scale 0.05 would be."""
    from tinykws.ir.kernels import quantize_f32_s8

    return quantize_f32_s8(features.astype(np.float32), 0.05, 0)


@pytest.mark.parametrize("preset", ["micro", "mfcc", "cnn3"])
def test_incremental_frames_equal_the_clip_front_end(preset, monkeypatch):
    """Chunks of random sizes: every window equals the clip front end on the same samples
    (float within 1e-5; identical after input quantization), and each frame is computed once."""
    frontend, reference = FrontEnd(frontend_config(preset)), FrontEnd(frontend_config(preset))
    stream = StreamingFrontEnd(frontend)
    computed = []
    numpy = stream.raw.numpy
    monkeypatch.setattr(stream.raw, "numpy", lambda x: computed.append(numpy(x)) or computed[-1])
    rng = np.random.default_rng(1)
    audio = (rng.normal(0, 0.05, 40000) * np.sin(np.arange(40000) / 900.0)).astype(np.float32)
    c, position, checked = frontend.config, 0, 0
    while position < len(audio):
        size = int(rng.integers(1, 3000))
        if stream.push(audio[position : position + size]) and stream.frames_done >= stream.frames:
            first = (stream.frames_done - stream.frames) * c.hop_samples
            expected = reference.numpy(audio[first : first + c.clip_samples])
            window = stream.window()
            assert np.abs(window - expected).max() <= 1e-5
            np.testing.assert_array_equal(
                quantize_like_the_network(window), quantize_like_the_network(expected)
            )
            checked += 1
        position += size
    assert checked > 5
    total = sum(len(rows) for rows in computed)
    assert total == stream.frames_done == reference.n_frames(len(audio))


def reference_recognize(times, probs, labels, config: StreamConfig, rate: int):
    """A line-by-line port of TFLite Micro's RecognizeCommands::ProcessLatestResults (with
    filler labels never firing), the reference for `smooth` + `Recognizer`."""
    window = config.window_samples(rate)
    suppression = config.suppression_samples(rate)
    queue, events, last_top, last_time = collections.deque(), [], None, 0
    for time, row in zip(times, probs):
        queue.append((time, row))
        while queue and queue[0][0] < time - window:
            queue.popleft()
        if len(queue) < config.minimum_count or 4 * (time - queue[0][0]) < window:
            continue
        total = [0.0] * len(row)
        for _, previous in queue:
            total = [a + b for a, b in zip(total, previous)]
        average = [t / len(queue) for t in total]
        top = max(range(len(average)), key=lambda i: (average[i], -i))
        if labels[top].startswith("_") or not average[top] > config.threshold:
            continue
        if top == last_top and time - last_time <= suppression:
            continue
        last_top, last_time = top, time
        events.append((time / rate, labels[top], average[top]))
    return events


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smoothing_and_decisions_follow_recognize_commands(seed):
    rng = np.random.default_rng(seed)
    labels = ("yes", "no", "_unknown_", "_silence_")
    config = StreamConfig(hop_ms=20.0, window_ms=300.0, threshold=0.55, suppression_ms=400.0)
    times = np.cumsum(rng.choice([320, 320, 640], 600)) + 16000
    # Runs of one dominant class, so that detections, suppressions and switches all happen.
    dominant = np.repeat(rng.integers(0, 4, 60), 10)
    logits = rng.normal(0, 1, (600, 4)) + 4.0 * np.eye(4)[dominant] * rng.uniform(0, 1, (600, 1))
    probs = probabilities(logits.astype(np.float32))
    valid, top, score = smooth(times, probs, config.window_samples(16000), config.minimum_count)
    recognizer = Recognizer(labels, config.threshold, config.suppression_samples(16000), 16000)
    events = recognizer.decide(times, valid, top, score)
    expected = reference_recognize(times.tolist(), probs.tolist(), labels, config, 16000)
    assert [(e.time_s, e.label, e.score) for e in events] == expected
    assert len(expected) > 5


def test_probabilities_are_a_softmax():
    logits = np.random.default_rng(0).normal(0, 3, (20, 5)).astype(np.float32)
    z = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probabilities(logits), z / z.sum(1, keepdims=True), rtol=1e-15)


def test_detector_is_the_same_for_any_chunking():
    samples, _ = tone_stream(seconds=12.0, seed=3)
    whole, reference = detect(tiny_predictor(), samples, StreamConfig(), chunk_s=100.0)
    for size in (1, 333, 7919):
        detector = StreamDetector(tiny_predictor(), StreamConfig())
        events = []
        for start in range(0, len(samples), size):
            events += detector.push(samples[start : start + size])
        assert events == whole
        np.testing.assert_array_equal(detector.scores.times, reference.scores.times)
        np.testing.assert_allclose(detector.scores.probs, reference.scores.probs, atol=1e-6)


def test_detector_finds_every_tone_and_nothing_else():
    samples, truth = tone_stream(seconds=60.0, seed=0)
    events, detector = detect(tiny_predictor(), samples, StreamConfig())
    score = score_events(events, truth, 60.0)
    assert (score["hits"], score["misses"], score["false_accepts"]) == (len(truth), 0, 0)
    assert detector.hops == 1 + (len(samples) - 8000) // 640
    assert {e.label for e in events} <= set(TINY_LABELS[:2])


def test_scoring_rules():
    """MLPerf Tiny streaming rules: window [onset, offset + 1 s], wrong keyword = false accept
    and miss, false accepts less than 1 s apart count once."""
    from tinykws.stream.recognize import Event

    truth = [(10.0, 10.5, "yes"), (20.0, 20.5, "no"), (30.0, 30.4, "_unknown_")]
    events = [
        Event(11.49, "yes", 0.9),  # hit (within 1 s of the offset)
        Event(11.4, "yes", 0.9),  # the same keyword again: ignored
        Event(20.3, "yes", 0.9),  # wrong keyword: false accept, "no" missed
        Event(30.6, "no", 0.8),  # on an other word: false accept ...
        Event(31.2, "no", 0.8),  # ... 0.6 s later: counted once
        Event(50.0, "yes", 0.8),  # false accept
    ]
    s = score_events(events, truth, duration_s=1800.0)
    assert (s["hits"], s["misses"], s["false_accepts"]) == (1, 1, 3)
    assert s["false_accepts_per_hour"] == 6.0 and s["false_reject_rate"] == 0.5
    late = score_events([Event(11.51, "yes", 0.9)], truth, 1800.0)
    assert (late["hits"], late["false_accepts"]) == (0, 1)


def test_truth_file_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("onset_s,offset_s,label\n1.0,1.5,yes\n")
    assert read_truth(path, 10.0) == [(1.0, 1.5, "yes")]
    for text, message in [
        ("start,end,label\n", "header"),
        ("onset_s,offset_s,label\n1.0,x,yes\n", "line 2"),
        ("onset_s,offset_s,label\n2.0,1.0,yes\n", "line 2"),
        ("onset_s,offset_s,label\n1.0,1.5\n", "line 2"),
        ("onset_s,offset_s,label\n1.0,1.5,yes\n99.0,99.5,no\n", "past the end"),
    ]:
        path.write_text(text)
        with pytest.raises(TinyKWSError, match=message):
            read_truth(path, 10.0)


def test_threshold_sweep_matches_detection_at_each_threshold():
    samples, truth = tone_stream(seconds=40.0, seed=5)
    samples = samples + np.random.default_rng(0).normal(0, 0.02, len(samples)).astype(np.float32)
    _, detector = detect(tiny_predictor(), samples, StreamConfig())
    thresholds = (0.4, 0.6, 0.75, 0.9)
    points = sweep_thresholds(detector, truth, 40.0, thresholds)
    for threshold, point in zip(thresholds, points):
        events, _ = detect(tiny_predictor(), samples, StreamConfig(threshold=threshold))
        expected = score_events(events, truth, 40.0)
        assert {k: point[k] for k in expected} == expected
    best = threshold_for(points, 1e9)
    assert best["false_reject_rate"] == min(p["false_reject_rate"] for p in points)


def test_short_audio_is_refused():
    with pytest.raises(TinyKWSError, match="shorter than the model's 0.5 s window"):
        detect(tiny_predictor(), np.zeros(4000, np.float32))
