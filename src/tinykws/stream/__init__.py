"""Streaming keyword detection: continuous audio in, keyword events out.

- `StreamConfig` (`config`): hop, averaging window, threshold, suppression, minimum count;
- `StreamingFrontEnd` (`frontend`): feature frames computed once each, as audio arrives;
- `StreamDetector`, `detect` (`detector`): the network every hop on any backend, smoothed into
  events with TensorFlow Lite Micro's RecognizeCommands semantics (`recognize`);
- `score_events`, `read_truth` (`score`): hits, misses, false accepts per hour (MLPerf Tiny
  streaming rules); `sweep_thresholds`, `threshold_for` (`sweep`): the threshold curve;
- `stage_stream` (`stage`): the `[stream]` recipe stage.

The same detector is generated in C (`tinykws.export.c.stream`) and emits identical events.
"""

from __future__ import annotations

from tinykws.stream.recognize import Event
from tinykws.stream_config import StreamConfig

__all__ = ["Event", "StreamConfig"]
