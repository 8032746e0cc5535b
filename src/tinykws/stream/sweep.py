"""The detection threshold swept over one pass of the network: false-reject rate against false
accepts per hour, and the threshold that meets a false-accept budget.

The network's scores and their averages do not depend on the threshold, so they are computed
once (`tinykws.stream.detector.detect` keeps every hop's probabilities) and only the decision
step is replayed per threshold.

Example:
    >>> points = [{"threshold": 0.5, "false_accepts_per_hour": 3.0, "false_reject_rate": 0.02},
    ...           {"threshold": 0.8, "false_accepts_per_hour": 0.5, "false_reject_rate": 0.1}]
    >>> threshold_for(points, 1.0)["threshold"]
    0.8
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinykws.io import atomic_write
from tinykws.stream.recognize import Recognizer, smooth
from tinykws.stream.score import score_events

DEFAULT_THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.30, 0.995, 0.01))


def sweep_thresholds(detector, truth, duration_s: float, thresholds=DEFAULT_THRESHOLDS) -> list:
    """Score the detector's stream (`detector.scores`) at each threshold.

    Args:
        detector: a `StreamDetector` that kept its scores (the second value of `detect`).
        truth: rows (onset_s, offset_s, label).
        duration_s: the stream's length.
        thresholds: the thresholds to try.

    Returns:
        [{"threshold", "hits", "misses", "false_accepts", "false_accepts_per_hour",
          "false_reject_rate", ...}, ...] in the order of `thresholds`.
    """
    config, scores = detector.config, detector.scores
    valid, top, score = smooth(scores.times, scores.probs, detector.window, config.minimum_count)
    keep = valid & (score > min(thresholds))  # hops no threshold can accept play no part
    times, top, score = scores.times[keep], top[keep], score[keep]
    suppression = config.suppression_samples(detector.sample_rate_hz)
    points = []
    for threshold in thresholds:
        recognizer = Recognizer(
            detector.predictor.labels, threshold, suppression, detector.sample_rate_hz
        )
        events = recognizer.decide(times, np.ones(len(times), bool), top, score)
        points.append({"threshold": threshold, **score_events(events, truth, duration_s)})
    return points


def threshold_for(points: list[dict], max_false_accepts_per_hour: float) -> dict | None:
    """The point with the lowest false-reject rate among those within the false-accept budget
    (the lowest such threshold on ties); None when no threshold meets it."""
    within = [p for p in points if p["false_accepts_per_hour"] <= max_false_accepts_per_hour]
    if not within:
        return None
    return min(within, key=lambda p: (p["false_reject_rate"], p["threshold"]))


def plot_curve(points: list[dict], path: str | Path, chosen: dict | None = None, title="") -> Path:
    """PNG of the false-reject rate against false accepts per hour (one point per threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fa = [p["false_accepts_per_hour"] for p in points]
    frr = [100.0 * p["false_reject_rate"] for p in points]
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    ax.plot(fa, frr, "o-", markersize=3)
    if chosen is not None:
        ax.plot(
            [chosen["false_accepts_per_hour"]], [100.0 * chosen["false_reject_rate"]], "r*",
            markersize=12, label=f"threshold {chosen['threshold']:g}",
        )  # fmt: skip
        ax.legend()
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title(title or "streaming detection: threshold sweep")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
