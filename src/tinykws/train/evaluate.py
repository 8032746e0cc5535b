"""Evaluation: accuracy, per-class table, confusion matrix, false accepts, sample predictions.

Works on any `Predictor` (float checkpoint, quantized model, exported file) and any split of a
dataset. Classes are reported in the order commands, `_unknown_`, `_silence_`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tinykws.config import from_dict
from tinykws.data import speech_commands as sc
from tinykws.errors import TinyKWSError
from tinykws.features.batch import cached_features
from tinykws.train.model_file import frontend

UNKNOWN, SILENCE = "_unknown_", "_silence_"


@dataclass(frozen=True)
class EvalData:
    """The clips of one split with their features, ready for any predictor."""

    clips: list
    features: np.ndarray  # float32 (N, frames, bins), un-normalised
    split: str


def report_order(labels) -> list[str]:
    """Commands first (in model order), then `_unknown_`, then `_silence_`."""
    tail = [x for x in (UNKNOWN, SILENCE) if x in labels]
    return [x for x in labels if x not in tail] + tail


def top1_accuracy(scores, labels) -> float:
    """Fraction of rows of `scores` (N, classes): logits or probabilities, a numpy array or a
    CPU tensor, whose highest score is at the row's class id in `labels` (N,); NaN for no rows.

    Example:
        >>> top1_accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0])
        0.6666666666666666
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((np.asarray(scores).argmax(axis=1) == labels).mean())


def classification_report(labels, y_true: np.ndarray, scores: np.ndarray) -> dict:
    """Accuracy, per-class samples/correct/accuracy/precision/recall and the confusion matrix.

    Args:
        labels: class names, index = class id.
        y_true: int array of class ids, shape (N,).
        scores: float (N, classes) logits or probabilities; the prediction is the top one.
    Returns:
        {"accuracy", "n", "labels" (report order), "per_class": {label: {...}}, "confusion"
        (rows = true class, columns = predicted, in report order)}.
    """
    y_pred = np.asarray(scores).argmax(axis=1)
    order = report_order(labels)
    index = [list(labels).index(x) for x in order]
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    confusion = confusion[np.ix_(index, index)]
    per_class = {}
    for i, label in enumerate(order):
        samples, correct, predicted = confusion[i].sum(), confusion[i, i], confusion[:, i].sum()
        per_class[label] = {
            "samples": int(samples),
            "correct": int(correct),
            "accuracy": float(correct / samples) if samples else None,
            "precision": float(correct / predicted) if predicted else None,
            "recall": float(correct / samples) if samples else None,
        }
    return {
        "accuracy": top1_accuracy(scores, y_true),
        "n": int(len(y_true)),
        "labels": order,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def false_accepts(labels, clips, y_pred: np.ndarray) -> dict:
    """How often clips of non-command words are taken for a command.

    Returns {"per_command": {command: rate over all _unknown_ clips}, "overall": rate,
    "per_word": {word: {"n", "false_accept_rate", "most_taken_for"}}}.
    """
    commands = [x for x in labels if x not in (UNKNOWN, SILENCE)]
    unknown = [i for i, c in enumerate(clips) if c.label == UNKNOWN]
    if not unknown or UNKNOWN not in labels:
        return {"per_command": {}, "overall": None, "per_word": {}}
    names = np.array([labels[p] for p in y_pred[unknown]])
    words = np.array([clips[i].word for i in unknown])
    per_word = {}
    for word in sorted(set(words)):
        taken = names[words == word]
        accepted = taken[np.isin(taken, commands)]
        top = max(set(accepted), key=list(accepted).count) if len(accepted) else None
        per_word[str(word)] = {
            "n": int(len(taken)),
            "false_accept_rate": float(len(accepted) / len(taken)),
            "most_taken_for": top,
        }
    return {
        "per_command": {c: float((names == c).mean()) for c in commands},
        "overall": float(np.isin(names, commands).mean()),
        "per_word": per_word,
    }


def sample_predictions(labels, clips, probs: np.ndarray, count: int = 10, seed: int = 0) -> list:
    """`count` clips picked with a fixed seed: path, true label, predicted label, probability."""
    if not clips:
        return []
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(clips), size=min(count, len(clips)), replace=False))
    return [
        {
            "path": clips[i].path,
            "true": clips[i].label,
            "predicted": labels[int(probs[i].argmax())],
            "probability": float(probs[i].max()),
        }
        for i in picks
    ]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# Clips scored per call: bounds memory on a large split and paces the progress bar.
CHUNK_CLIPS = 4096


def split_logits(predictor, features: np.ndarray, advance=None) -> np.ndarray:
    """`predictor`'s logits for `features`, `CHUNK_CLIPS` clips at a time; `advance(n)` (if
    given) is called after each chunk with its number of clips."""
    parts = []
    for start in range(0, len(features), CHUNK_CLIPS):
        parts.append(predictor.logits(features[start : start + CHUNK_CLIPS]))
        if advance is not None:
            advance(len(parts[-1]))
    return np.concatenate(parts)


def evaluate(predictor, data: EvalData, advance=None) -> dict:
    """Score `predictor` on `data`; the result is the JSON written by `tinykws evaluate`.
    `advance(n)`, when given, is told of every chunk of n clips scored (for a progress bar)."""
    labels = list(predictor.labels)
    missing = sorted({c.label for c in data.clips} - set(labels))
    if missing:
        raise TinyKWSError(f"the data has classes the model does not know: {', '.join(missing)}")
    y_true = np.array([labels.index(c.label) for c in data.clips], dtype=np.int64)
    logits = np.zeros((0, len(labels)))
    if len(data.clips):
        logits = split_logits(predictor, data.features, advance)
    probs = softmax(logits)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    result = classification_report(labels, y_true, probs)
    result["split"] = data.split
    result["false_accepts"] = false_accepts(labels, data.clips, y_pred)
    result["samples"] = sample_predictions(labels, data.clips, probs)
    result["predictions"] = y_pred.tolist()
    return result


def load_eval_data(meta: dict, root: str | os.PathLike, split: str, cache_dir=None) -> EvalData:
    """Clips and features of `split` ("train", "validation", "test" or "all") of the folder `root`,
    built with the data config and front end stored in the model's metadata."""
    config = from_dict(sc.DataConfig, meta.get("data", {}), "data")
    dataset = sc.all_clips(root, config) if split == "all" else sc.load_dataset(root, config)
    if split not in dataset.splits:
        raise TinyKWSError(f"{root}: no '{split}' split; choose from {', '.join(dataset.splits)}")
    clips = dataset.clips(split)
    if not clips:
        raise TinyKWSError(f"{root}: the '{split}' split is empty")
    waves = sc.load_waveforms(clips, cache_dir=cache_dir)
    feats = cached_features(cache_dir, frontend(meta), waves, sc.waveforms_key(clips))
    return EvalData(clips=clips, features=feats, split=split)


def print_report(result: dict, console=None) -> None:
    """Accuracy, the per-class table and the sample predictions, as rich tables."""
    console = console or Console()
    console.print(
        f"[bold]{result['split']}[/]: accuracy {result['accuracy']:.4f} on {result['n']} clips"
    )
    table = Table("class", "samples", "correct", "accuracy", "precision", "recall")
    for label, row in result["per_class"].items():
        table.add_row(
            label,
            str(row["samples"]),
            str(row["correct"]),
            *(_pct(row[k]) for k in ("accuracy", "precision", "recall")),
        )
    console.print(table)
    fa = result["false_accepts"]
    if fa["overall"] is not None:
        rates = ", ".join(f"{c} {_pct(r)}" for c, r in fa["per_command"].items())
        console.print(f"false accepts of _unknown_ clips: {_pct(fa['overall'])} ({rates})")
    samples = Table("clip", "true", "predicted", "probability", title="sample predictions")
    for s in result["samples"]:
        samples.add_row(Path(s["path"]).name, s["true"], s["predicted"], f"{s['probability']:.3f}")
    console.print(samples)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
