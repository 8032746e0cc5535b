"""The streaming detector: chunks of audio in, keyword events out, with any model backend.

`StreamDetector(predictor, config)` feeds samples to the incremental front end
(`tinykws.features.incremental`), runs the network on the last window every `hop_ms` (the windows
that complete within one `push` go to the predictor as one batch) and turns the scores into
events with RecognizeCommands' smoothing (`tinykws.stream.recognize`). The predictor is any of
`measure.predictors.load_predictor`'s: float PyTorch, the integer graph, LiteRT, ONNX Runtime.

Example:
    >>> import numpy as np
    >>> from tinykws.stream.testing import tiny_predictor
    >>> detector = StreamDetector(tiny_predictor(), StreamConfig(hop_ms=40))
    >>> events = detector.push(np.zeros(24000, np.float32))
    >>> detector.hops, detector.scores.times[:2].tolist()
    (26, [7840, 8480])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.features.incremental import StreamingFrontEnd
from tinykws.stream.recognize import Event, Recognizer, probabilities, smooth
from tinykws.stream_config import StreamConfig
from tinykws.train.model_file import frontend


@dataclass
class HopScores:
    """Every hop's time (samples, end of the window) and class probabilities, float64 (H, C)."""

    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    probs: np.ndarray | None = None

    def append(self, times: np.ndarray, probs: np.ndarray) -> None:
        self.times = np.concatenate([self.times, times])
        self.probs = probs if self.probs is None else np.concatenate([self.probs, probs])


class StreamDetector:
    """Keyword events from a stream of audio.

    Args:
        predictor: a loaded model (`tinykws.measure.predictors.load_predictor`).
        config: hop, smoothing and decision settings.
        keep_scores: keep every hop's probabilities in `scores` (for threshold sweeps); else
            only the results the averaging window needs are kept.
    """

    def __init__(self, predictor, config: StreamConfig | None = None, keep_scores=True) -> None:
        self.predictor, self.config = predictor, config or StreamConfig()
        self.frontend = StreamingFrontEnd(frontend(predictor.meta))
        rate = self.frontend.frontend.config.sample_rate_hz
        self.sample_rate_hz, self.keep_scores = rate, keep_scores
        fe_hop = self.frontend.hop_samples
        hop = self.config.hop_samples(rate)
        if hop % fe_hop:
            raise TinyKWSError(
                f"stream.hop_ms={self.config.hop_ms} is not a multiple of the front end's hop "
                f"({fe_hop * 1000 / rate:g} ms); choose e.g. "
                f"{max(1, round(hop / fe_hop)) * fe_hop * 1000 / rate:g}"
            )
        self.hop_frames = hop // fe_hop
        self.window = self.config.window_samples(rate)
        suppression = self.config.suppression_samples(rate)
        self.recognizer = Recognizer(predictor.labels, self.config.threshold, suppression, rate)
        self.scores = HopScores()
        self.hops = 0

    def push(self, samples: np.ndarray) -> list[Event]:
        """Add float32 samples in [-1, 1]; return the events they complete."""
        windows, times = [], []
        samples, position = np.asarray(samples), 0
        while position < len(samples):  # pieces that end where the next hop's frame completes
            f = self.frontend
            target = f.frames + self.hops * self.hop_frames
            needed = (target - 1) * f.hop_samples + f.window_samples - f.samples_seen
            f.push(samples[position : position + needed])
            position += needed
            if f.frames_done == target:
                windows.append(f.window())
                times.append((target - 1) * f.hop_samples + f.window_samples)
                self.hops += 1
        if not windows:
            return []
        logits = self.predictor.logits(np.stack(windows))
        return self._decide(np.asarray(times, np.int64), probabilities(logits))

    def _decide(self, times: np.ndarray, probs: np.ndarray) -> list[Event]:
        history = len(self.scores.times)
        self.scores.append(times, probs)
        valid, top, score = smooth(
            self.scores.times, self.scores.probs, self.window, self.config.minimum_count, history
        )
        if not self.keep_scores:  # keep what the next hop's average can still use
            keep = self.scores.times >= times[-1] - self.window
            self.scores = HopScores(self.scores.times[keep], self.scores.probs[keep])
        return self.recognizer.decide(times, valid, top, score)


def detect(predictor, samples: np.ndarray, config: StreamConfig | None = None, chunk_s=10.0):
    """Events in a whole recording, pushed `chunk_s` seconds at a time.

    Returns:
        (events, detector): the detector holds every hop's scores (`detector.scores`).

    Raises:
        TinyKWSError: a recording shorter than one window of the model.
    """
    detector = StreamDetector(predictor, config)
    clip = detector.frontend.frontend.config.clip_samples
    if len(samples) < clip:
        raise TinyKWSError(
            f"the audio is {len(samples) / detector.sample_rate_hz:.2f} s long, shorter than "
            f"the model's {clip / detector.sample_rate_hz:g} s window; nothing to detect"
        )
    chunk = max(1, int(chunk_s * detector.sample_rate_hz))
    events = []
    for start in range(0, len(samples), chunk):
        events += detector.push(samples[start : start + chunk])
    return events, detector
