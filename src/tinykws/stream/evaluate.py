"""Streaming detection of whole recordings, scored against a truth file: what `tinykws stream`
and the `[stream]` recipe stage call.

Example:
    >>> import tempfile, pathlib
    >>> from tinykws.data.audio import write_wav
    >>> from tinykws.stream.testing import tiny_predictor, tone_stream
    >>> samples, truth = tone_stream(seconds=12.0, seed=0)
    >>> wav = pathlib.Path(tempfile.mkdtemp()) / "tones.wav"
    >>> write_wav(wav, samples)
    >>> result = stream_recording(tiny_predictor(), wav, StreamConfig(), truth=truth)
    >>> result["score"]["hits"], result["score"]["false_accepts"]
    (5, 0)
"""

from __future__ import annotations

from pathlib import Path

from tinykws.data.audio import read_audio
from tinykws.errors import TinyKWSError
from tinykws.features.config import frontend_config
from tinykws.log import logger
from tinykws.stream.detector import detect
from tinykws.stream.score import read_truth, score_events
from tinykws.stream.sweep import sweep_thresholds, threshold_for
from tinykws.stream_config import StreamConfig


def read_stream_audio(path, sample_rate_hz: int = 16000):
    """A recording as mono float32 at `sample_rate_hz`.

    Other sample rates are resampled (logged); multi-channel files are refused, since mixing
    the channels of a field recording down is a choice to make knowingly.

    Raises:
        TinyKWSError: a missing, corrupt or multi-channel file.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # read_audio names the problem (missing, empty, not audio, truncated)
        return read_audio(path, sample_rate_hz)
    if info.channels != 1:
        raise TinyKWSError(
            f"{path}: {info.channels} channels; give a mono recording "
            f"(e.g. sox IN.wav -c 1 OUT.wav, or pick one channel)"
        )
    if info.samplerate != sample_rate_hz:
        logger.info(f"{path}: resampled from {info.samplerate} Hz to {sample_rate_hz} Hz")
    return read_audio(path, sample_rate_hz)


def stream_recording(predictor, audio, config: StreamConfig, truth=None, target_fa_per_hour=1.0):
    """Detect keywords in a recording; with truth rows, score them and sweep the threshold.

    Args:
        predictor: a loaded model (`tinykws.measure.predictors.load_predictor`).
        audio: a WAV/FLAC path, or float32 samples at the model's rate.
        config: the detector's settings.
        truth: None, rows (onset_s, offset_s, label), or a truth CSV path.
        target_fa_per_hour: the false-accept budget whose best threshold is named.

    Returns:
        {"audio", "duration_s", "config", "events", "hops"} and, with truth, "score" (at
        `config.threshold`), "sweep" (one point per threshold), "target_fa_per_hour" and
        "at_target" (the best point within the budget, or None).
    """

    rate = predictor_rate(predictor)
    samples = read_stream_audio(audio, rate) if isinstance(audio, (str, Path)) else audio
    duration_s = len(samples) / rate
    events, detector = detect(predictor, samples, config)
    result = {
        "audio": str(audio) if isinstance(audio, (str, Path)) else "",
        "duration_s": duration_s,
        "config": config.to_dict(),
        "events": [e.to_dict() for e in events],
        "hops": detector.hops,
    }
    if truth is None:
        return result
    if isinstance(truth, (str, Path)):
        truth = read_truth(truth, duration_s)
    if not any(not label.startswith("_") for _, _, label in truth):
        raise TinyKWSError("the truth holds no keywords (every label starts with '_')")
    unknown = sorted({lab for _, _, lab in truth if lab not in predictor.labels and lab[0] != "_"})
    if unknown:
        logger.warning(f"truth keywords the model does not know (always missed): {unknown}")
    points = sweep_thresholds(detector, truth, duration_s)
    result["score"] = score_events(events, truth, duration_s)
    result["sweep"] = points
    result["target_fa_per_hour"] = target_fa_per_hour
    result["at_target"] = threshold_for(points, target_fa_per_hour)
    return result


def predictor_rate(predictor) -> int:
    """The sample rate of the model's front end."""

    return frontend_config(predictor.meta["frontend"]).sample_rate_hz


def summary_lines(result: dict) -> list[str]:
    """Human-readable lines of a scored result (score at the threshold, the target point)."""
    s = result["score"]
    lines = [
        f"threshold {result['config']['threshold']:g}: {s['hits']}/{s['keywords']} keywords "
        f"found, {s['misses']} missed, {s['false_accepts']} false accepts "
        f"({s['false_accepts_per_hour']:.2f} per hour), false-reject rate "
        f"{100 * s['false_reject_rate']:.1f} %"
    ]
    best = result.get("at_target")
    target = result.get("target_fa_per_hour")
    if best is None:
        lines.append(f"no threshold keeps false accepts within {target:g} per hour")
    else:
        lines.append(
            f"at <= {target:g} false accepts per hour: threshold {best['threshold']:g}, "
            f"false-reject rate {100 * best['false_reject_rate']:.1f} % "
            f"({best['false_accepts_per_hour']:.2f} false accepts per hour)"
        )
    return lines
