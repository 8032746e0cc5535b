"""Scores to detections with the semantics of TensorFlow Lite Micro's RecognizeCommands.

At each hop the network's logits become probabilities (`probabilities`); the results of the
last `window_ms` are averaged (`smooth`), the best class is taken, and it is a detection when
its average is above `threshold` and it is not the keyword detected last less than
`suppression_ms` ago (`Recognizer`). No decision is made from fewer than `minimum_count`
results, nor from results spanning less than a quarter of the window. One deviation from
RecognizeCommands: the filler classes (`_silence_`, `_unknown_`, any label starting with "_")
are never detected, so they neither produce events nor reset the suppression of a keyword.

Every sum here runs in float64 in a fixed order (classes in output order; results oldest
first) and `exp` is the C library's (`math.exp`), so the generated C detector
(`templates/stream.c`) computes the very same numbers and makes the same decisions.

Times are sample indices of the stream (the end of the audio the network saw), so that no
rounding of milliseconds enters a decision.

Example:
    >>> import numpy as np
    >>> times = np.arange(1, 6) * 640
    >>> probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    >>> valid, top, score = smooth(times, probs, window=1600, minimum_count=3)
    >>> valid.tolist(), top.tolist()
    ([False, False, True, True, True], [0, 0, 1, 1, 1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_exp = np.frompyfunc(math.exp, 1, 1)


@dataclass(frozen=True)
class Event:
    """One detection: `time_s` (end of the audio the network saw), label, smoothed score."""

    time_s: float
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "label": self.label, "score": self.score}


def probabilities(logits: np.ndarray) -> np.ndarray:
    """float64 (H, C) softmax of float32 (H, C) logits, in the C detector's order of operations.

    Example:
        >>> probabilities(np.array([[0.0, 0.0]], np.float32)).tolist()
        [[0.5, 0.5]]
    """
    z = np.asarray(logits, np.float32).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = _exp(z).astype(np.float64)
    total = np.zeros(len(e))
    for c in range(e.shape[1]):  # sequentially over the classes, as the C loop does
        total = total + e[:, c]
    return e / total[:, None]


def smooth(times: np.ndarray, probs: np.ndarray, window: int, minimum_count: int, first=0):
    """Average each hop's probabilities over the results of the last `window` samples.

    Args:
        times: int (H,) increasing hop times in samples.
        probs: float64 (H, C) probabilities.
        window: averaging window in samples (results with time >= t - window are kept).
        minimum_count: fewest results to decide on.
        first: smooth hops first..H-1 only (earlier rows are history).

    Returns:
        (valid bool (n,), top int (n,), score float64 (n,)) for the n = H - first hops; where
        `valid` is False there were too few results and top / score are 0.
    """
    times = np.asarray(times, np.int64)
    hops = np.arange(first, len(times))
    start = np.searchsorted(times, times[hops] - window, side="left")
    count = hops - start + 1
    total = np.zeros((len(hops), probs.shape[1]))
    for offset in range(int(count.max()) if len(hops) else 0):  # oldest result first
        index = start + offset
        use = index <= hops
        total[use] += probs[index[use]]
    average = total / count[:, None]
    valid = (count >= minimum_count) & (4 * (times[hops] - times[start]) >= window)
    top = np.where(valid, average.argmax(axis=1), 0)
    score = np.where(valid, average[np.arange(len(hops)), top], 0.0)
    return valid, top, score


class Recognizer:
    """The decision step: threshold and suppression over smoothed scores (kept across calls).

    Args:
        labels: class names in output order.
        threshold: a detection needs an average probability above this.
        suppression: samples during which the last keyword is not detected again.
        sample_rate_hz: for event times in seconds.
    """

    def __init__(self, labels, threshold: float, suppression: int, sample_rate_hz: int) -> None:
        self.labels = tuple(labels)
        self.threshold, self.suppression = float(threshold), int(suppression)
        self.sample_rate_hz = sample_rate_hz
        self.last_top: int | None = None
        self.last_time = 0

    def decide(self, times, valid, top, score) -> list[Event]:
        """Events among hops with smoothed (valid, top, score) at `times` (samples)."""
        events = []
        for time, ok, index, value in zip(times.tolist(), valid, top.tolist(), score.tolist()):
            if not ok or value <= self.threshold or self.labels[index].startswith("_"):
                continue
            if index == self.last_top and time - self.last_time <= self.suppression:
                continue
            self.last_top, self.last_time = index, time
            events.append(Event(time / self.sample_rate_hz, self.labels[index], value))
        return events
