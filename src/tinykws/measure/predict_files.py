"""Predict the labels of audio files with any model file (`tinykws predict`); the models
themselves are loaded as predictors by `tinykws.measure.predictors`.

A file longer than the model's window (1 s for the presets) is not cropped silently: every
window of it, 100 ms apart, is scored and the window whose best keyword is most probable is
reported (the most confident window when no keyword wins anywhere), with its start time and a
warning that points to `tinykws stream`, which finds every keyword of a long recording.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from tinykws.data.audio import pad_or_trim, read_audio
from tinykws.log import logger
from tinykws.measure.predictors import load_predictor
from tinykws.train.evaluate import softmax
from tinykws.train.model_file import frontend

WINDOW_STEP_S = 0.1  # spacing of the windows scored in a long file


def predict_files(model_path, paths, top_k: int = 3, backend: str = "auto") -> list[dict]:
    """Top-k labels with probabilities for each file.

    Returns:
        [{"path", "label", "probability", "top_k": [{"label", "probability"}, ...],
          "window_s": start of the scored window (0.0 for a file no longer than a window)}, ...]
    """
    predictor = load_predictor(model_path, backend=backend)
    fe = frontend(predictor.meta)
    results = []
    for path in paths:
        probs, start_s = _best_window(predictor, fe, path)
        order = np.argsort(-probs)[: max(1, top_k)]
        top = [{"label": predictor.labels[i], "probability": float(probs[i])} for i in order]
        results.append(
            {
                "path": str(path),
                "label": top[0]["label"],
                "probability": top[0]["probability"],
                "top_k": top,
                "window_s": start_s,
            }
        )
    return results


def _best_window(predictor, fe, path) -> tuple[np.ndarray, float]:
    """Probabilities of the file's best window and its start (see the module docstring)."""
    c = fe.config
    samples = read_audio(path, c.sample_rate_hz)
    if len(samples) <= c.clip_samples:
        clip = pad_or_trim(samples, c.clip_samples)
        return softmax(predictor.logits(fe.numpy(clip[None])))[0], 0.0
    step = round(WINDOW_STEP_S * c.sample_rate_hz)
    starts = np.arange(0, len(samples) - c.clip_samples + 1, step)
    probs = np.concatenate(
        [
            softmax(
                predictor.logits(
                    fe.numpy(np.stack([samples[s : s + c.clip_samples] for s in part]))
                )
            )
            for part in np.array_split(starts, -(-len(starts) // 256))
        ]
    )
    keyword = np.array([not label.startswith("_") for label in predictor.labels])
    best = probs[:, keyword].max(axis=1) if keyword.any() else probs.max(axis=1)
    wins = probs.argmax(axis=1)
    any_keyword = keyword[wins].any()
    index = int(np.argmax(np.where(keyword[wins], best, -1.0) if any_keyword else probs.max(1)))
    start_s = float(starts[index] / c.sample_rate_hz)
    logger.warning(
        f"{path}: {len(samples) / c.sample_rate_hz:.2f} s is longer than the model's "
        f"{c.clip_samples / c.sample_rate_hz:g} s window; scored the best of {len(starts)} "
        f"windows (at {start_s:.1f} s). `tinykws stream MODEL {path}` finds every keyword"
    )
    return probs[index], start_s


def print_predictions(results: list[dict]) -> None:
    """One row per file: path, best label, probability, the other top-k labels."""
    table = Table("clip", "label", "probability", "top-k", "window (s)")
    for r in results:
        others = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top_k"][1:])
        table.add_row(
            r["path"], r["label"], f"{r['probability']:.3f}", others, f"{r['window_s']:.1f}"
        )
    Console().print(table)
