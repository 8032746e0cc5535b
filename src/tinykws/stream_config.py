"""The streaming detector's settings: how often the network runs and how its scores become
detections (TensorFlow Lite Micro's RecognizeCommands).

Example:
    >>> config = StreamConfig(threshold=0.8)
    >>> StreamConfig.from_dict(config.to_dict()) == config
    True
    >>> config.hop_samples(16000), config.window_samples(16000)
    (640, 8000)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinykws.config import check_range, from_dict, to_dict
from tinykws.errors import TinyKWSError


@dataclass(frozen=True)
class StreamConfig:
    """How a keyword spotter listens to a stream.

    Attributes:
        hop_ms: the network runs on the last window of features every `hop_ms` (a multiple of
            the front end's hop; 40 ms = 25 inferences per second).
        window_ms: scores are averaged over the results of the last `window_ms`
            (RecognizeCommands' averaging_window_duration_ms).
        threshold: a keyword is detected when its averaged probability is above this
            (detection_threshold, here a probability in [0, 1] rather than a uint8 score).
        suppression_ms: after a detection, the same keyword is not detected again for this
            long (suppression_ms); a different keyword may fire at once.
        minimum_count: no decision is made from fewer results than this in the window
            (minimum_count), nor from results spanning less than a quarter of `window_ms`.
    """

    hop_ms: float = 40.0
    window_ms: float = 500.0
    threshold: float = 0.7
    suppression_ms: float = 1000.0
    minimum_count: int = 3

    def __post_init__(self) -> None:
        check_range("stream.hop_ms", self.hop_ms, 1e-3, 10_000.0)
        check_range("stream.window_ms", self.window_ms, 0.0, 60_000.0)
        check_range("stream.threshold", self.threshold, 0.0, 1.0)
        check_range("stream.suppression_ms", self.suppression_ms, 0.0, 3_600_000.0)
        if not isinstance(self.minimum_count, int) or self.minimum_count < 1:
            raise TinyKWSError(
                f"stream.minimum_count must be an integer >= 1; got {self.minimum_count!r}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StreamConfig:
        """Build from plain data (a TOML table); unknown keys are an error naming the valid ones."""
        return from_dict(cls, data, "stream")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def hop_samples(self, sample_rate_hz: int) -> int:
        return round(self.hop_ms * sample_rate_hz / 1000)

    def window_samples(self, sample_rate_hz: int) -> int:
        return round(self.window_ms * sample_rate_hz / 1000)

    def suppression_samples(self, sample_rate_hz: int) -> int:
        return round(self.suppression_ms * sample_rate_hz / 1000)
