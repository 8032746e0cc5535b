"""The `[stream]` recipe stage: the run's final model listening to a long test stream.

    [stream]
    minutes = 20          # the test stream (tinykws.data.stream_test), from the run's data
    keywords = 50
    split = "validation"
    seed = 0
    target_fa_per_hour = 1.0
    [stream.detector]     # StreamConfig: hop_ms, window_ms, threshold, suppression_ms, ...
    threshold = 0.7

The stage writes stream/test.wav + test.csv (the stream and its truth), stream/result.json
(events, score at the threshold, the threshold sweep, the threshold meeting the false-accept
budget) and stream/curve.png, adds a "stream" entry to metrics.json, and a report section.

Example:
    >>> config = StreamStageConfig.from_dict({"minutes": 5, "detector": {"threshold": 0.8}})
    >>> config.detector.threshold, config.detector.hop_ms
    (0.8, 40.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tinykws.config import check_range, from_dict
from tinykws.data.stream_test import StreamTestConfig, write_stream_test
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.measure.predictors import load_predictor
from tinykws.run.stages.data import dataset_root
from tinykws.stream.evaluate import stream_recording, summary_lines
from tinykws.stream.sweep import plot_curve
from tinykws.stream_config import StreamConfig
from tinykws.train.model_file import FINAL_MODEL_FILE


@dataclass(frozen=True)
class StreamStageConfig:
    """The test stream and the detector of the `[stream]` stage.

    Attributes:
        minutes, keywords, split, seed, snr_db: the test stream (`StreamTestConfig`).
        target_fa_per_hour: the false-accept budget whose threshold is named.
        backend: how the final model runs ("auto": as deployed, the integer graph).
        detector: the `StreamConfig`.
    """

    minutes: float = 20.0
    keywords: int = 50
    split: str = "validation"
    seed: int = 0
    snr_db: tuple[float, float] = (10.0, 25.0)
    target_fa_per_hour: float = 1.0
    backend: str = "auto"
    detector: StreamConfig = field(default_factory=StreamConfig)

    def __post_init__(self) -> None:
        check_range("stream.target_fa_per_hour", self.target_fa_per_hour, 0.0, 1e6)
        self.test_config("real10")  # validates the stream's settings

    @classmethod
    def from_dict(cls, data: dict | None) -> StreamStageConfig:
        return from_dict(cls, data, "stream")

    def test_config(self, preset: str):
        return StreamTestConfig(
            split=self.split, minutes=self.minutes, keywords=self.keywords,
            snr_db=self.snr_db, preset=preset, seed=self.seed,
        )  # fmt: skip


def stage_stream(run) -> dict:
    """Make the test stream, run the final model on it, score it; see the module docstring."""
    config = StreamStageConfig.from_dict(run.recipe.extra.get("stream"))
    folder = run.stage_dir("stream")
    preset = run.recipe.data.dataset.preset
    wav, csv = write_stream_test(folder / "test.wav", dataset_root(run), config.test_config(preset))
    predictor = load_predictor(run.dir, backend=config.backend)
    result = stream_recording(predictor, wav, config.detector, csv, config.target_fa_per_hour)
    result["model"] = json.loads((run.dir / FINAL_MODEL_FILE).read_text())["model"]
    write_json(folder / "result.json", result)
    plot_curve(result["sweep"], folder / "curve.png", result["at_target"], title=run.recipe.name)
    for line in summary_lines(result):
        logger.info(f"stream: {line}")
    metrics = {k: result["score"][k] for k in ("hits", "misses", "false_accepts")}
    metrics["false_accepts_per_hour"] = result["score"]["false_accepts_per_hour"]
    metrics["false_reject_rate"] = result["score"]["false_reject_rate"]
    if result["at_target"] is not None:
        metrics["threshold_at_target"] = result["at_target"]["threshold"]
        metrics["false_reject_rate_at_target"] = result["at_target"]["false_reject_rate"]
    run.update_metrics("stream", metrics)
    return metrics
