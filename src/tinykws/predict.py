"""Predict labels for audio files with any model file."""

from __future__ import annotations

import numpy as np

from tinykws.audio import load_clip
from tinykws.evaluate import softmax


def predict_files(model_path, paths, top_k: int = 3, backend: str = "auto") -> list[dict]:
    """Top-k labels with probabilities for each file.

    Returns:
        [{"path", "label", "probability", "top_k": [{"label", "probability"}, ...]}, ...]
    """
    from tinykws.predictor import frontend, load_predictor

    predictor = load_predictor(model_path, backend=backend)
    waves = np.stack([load_clip(p) for p in paths])
    features = frontend(predictor.meta).numpy(waves)
    probs = softmax(predictor.logits(features.astype(np.float32)))
    labels = predictor.labels
    results = []
    for path, row in zip(paths, probs):
        order = np.argsort(-row)[: max(1, top_k)]
        top = [{"label": labels[i], "probability": float(row[i])} for i in order]
        results.append(
            {
                "path": str(path),
                "label": top[0]["label"],
                "probability": top[0]["probability"],
                "top_k": top,
            }
        )
    return results


def print_predictions(results: list[dict]) -> None:
    """One row per file: path, best label, probability, the other top-k labels."""
    from rich.console import Console
    from rich.table import Table

    table = Table("clip", "label", "probability", "top-k")
    for r in results:
        others = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top_k"][1:])
        table.add_row(r["path"], r["label"], f"{r['probability']:.3f}", others)
    Console().print(table)
