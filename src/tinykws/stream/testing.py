"""A tiny integer-graph keyword spotter and tone streams with ground truth, for tests, examples
and benchmarks of the streaming detector (no training, no torch).

The "network" is one FULLY_CONNECTED layer over a half-second window of 10 log-mel bands: the
class "high" scores the energy of the upper bands, "low" that of the lower bands, `_silence_`
is a constant. A tone burst of 3 kHz is therefore heard as "high", 300 Hz as "low".

Example:
    >>> predictor = tiny_predictor()
    >>> samples, truth = tone_stream(seconds=6.0, seed=0)
    >>> predictor.labels, len(samples), truth[0][2]
    (('high', 'low', '_unknown_', '_silence_'), 96000, 'low')
"""

from __future__ import annotations

import numpy as np

from tinykws.config import to_dict
from tinykws.features.config import FrontEndConfig
from tinykws.features.frontend import FrontEnd
from tinykws.ir import GraphBuilder, QuantParams, Weights
from tinykws.measure.predictors import GraphPredictor

TINY_LABELS = ("high", "low", "_unknown_", "_silence_")
TINY_FRONTEND = FrontEndConfig(
    clip_samples=8000, window_ms=30.0, hop_ms=20.0, n_bands=10, fmin_hz=100.0, fmax_hz=7000.0
)
TONES_HZ = {"high": 3000.0, "low": 300.0}
NOISE_STD = 0.003


def tiny_graph(frontend: FrontEndConfig = TINY_FRONTEND):
    """The tiny spotter as an `Graph` (float features in, float logits out) with metadata."""

    frames, bins = FrontEnd(frontend).output_shape
    band = np.arange(bins) >= bins // 2  # upper half of the bands
    per_class = np.stack([np.where(band, 10, -10), np.where(band, -10, 10)])
    data = np.zeros((len(TINY_LABELS), frames * bins), np.int8)
    data[:2] = np.tile(per_class, (1, frames))
    data[2] = np.tile(np.where(np.arange(bins) % 2, 3, -3), frames)
    b = GraphBuilder("tiny_stream")
    x = b.quantize(b.input("features", (1, frames, bins, 1)), QuantParams(0.1, 0))
    x = b.reshape(x, (1, frames * bins))
    scale = 2.0 / (frames * bins)
    bias = np.array([0, 0, 0, round(1.5 / (0.1 * scale))], np.int32)
    weights = Weights(data, np.full(len(TINY_LABELS), scale, np.float32), bias)
    graph = b.build(b.dequantize(b.fully_connected(x, weights, QuantParams(0.1, 0))))
    graph.metadata = {
        "labels": list(TINY_LABELS),
        "frontend": to_dict(frontend),
        "normalization": {"mean": _noise_means(frontend), "std": [1.5] * bins},
    }
    return graph


def _noise_means(frontend: FrontEndConfig) -> list[float]:
    """Each band's mean log energy in the streams' background noise (so that noise is ~0)."""

    noise = np.random.default_rng(0).normal(0.0, NOISE_STD, frontend.clip_samples)
    features = FrontEnd(frontend).numpy(noise.astype(np.float32))
    return [round(float(v), 3) for v in features.mean(axis=0)]


def tiny_predictor(frontend: FrontEndConfig = TINY_FRONTEND):
    """`tiny_graph` run by the integer interpreter, as a predictor."""

    graph = tiny_graph(frontend)
    return GraphPredictor(graph, dict(graph.metadata))


def tone_stream(seconds: float = 20.0, seed: int = 0, sample_rate_hz: int = 16000):
    """A stream of 0.4 s tone bursts ("high" / "low") in quiet noise, with its truth.

    Returns:
        (float32 samples, [(onset_s, offset_s, label), ...]).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate_hz)
    samples = rng.normal(0.0, NOISE_STD, n)
    truth, t = [], 1.0 + rng.uniform(0.0, 1.0)
    while t + 0.4 < seconds - 0.5:
        label = ("high", "low")[int(rng.integers(2))]
        start, length = int(t * sample_rate_hz), int(0.4 * sample_rate_hz)
        phase = 2 * np.pi * TONES_HZ[label] * np.arange(length) / sample_rate_hz
        samples[start : start + length] += 0.3 * np.sin(phase) * np.hanning(length)
        truth.append((round(t, 4), round(t + 0.4, 4), label))
        t += 0.4 + rng.uniform(1.2, 2.5)
    return samples.astype(np.float32), truth
