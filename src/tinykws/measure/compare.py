"""Compare two models on the same clips: both accuracies, the drop, top-1 agreement, both
parameter memories, the compression ratio, both file sizes and their ratio, and ten side-by-side
predictions (the FP32 vs INT8 report of a post-training-quantization study).

File sizes are the bytes of the files as deployed (`model_file_bytes`): a checkpoint, .tflite or
.onnx file as it lies on disk, a C export folder as its Cortex-M flash (`sizes.json`) when it was
measured, else its C sources. The study's "compression" is this ratio of files.

Example:
    >>> import numpy as np
    >>> class Alternating:  # predicts a, b, a, b, ...
    ...     labels, meta = ("a", "b"), {}
    ...     def logits(self, x): return np.eye(2, dtype=np.float32)[np.arange(len(x)) % 2]
    >>> labels = np.array([0, 1, 0, 0])
    >>> result = compare_predictions(Alternating(), Alternating(), np.zeros((4, 1, 1)), labels)
    >>> result["accuracy_a"], result["agreement"]
    (0.75, 1.0)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.measure.predictors import default_backend, load_predictor, predictor_memory
from tinykws.quant.sizes import compression_ratio
from tinykws.train.evaluate import load_eval_data, softmax
from tinykws.train.model_file import resolve_model_path


def compare_predictions(
    a, b, features: np.ndarray, labels: np.ndarray, clips=None, count: int = 10, seed: int = 0
) -> dict:
    """Accuracies, drop (a - b), agreement and `count` seeded side-by-side samples."""

    if tuple(a.labels) != tuple(b.labels):
        raise TinyKWSError(
            f"the models have different labels: {list(a.labels)} vs {list(b.labels)}"
        )
    probs_a, probs_b = softmax(a.logits(features)), softmax(b.logits(features))
    pred_a, pred_b = probs_a.argmax(1), probs_b.argmax(1)
    labels = np.asarray(labels)
    accuracy_a, accuracy_b = float((pred_a == labels).mean()), float((pred_b == labels).mean())
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(labels), size=min(count, len(labels)), replace=False))
    names = list(a.labels)
    samples = [
        {
            "clip": clips[i].path if clips is not None else str(i),
            "true": names[labels[i]],
            "a": names[pred_a[i]],
            "probability_a": float(probs_a[i].max()),
            "b": names[pred_b[i]],
            "probability_b": float(probs_b[i].max()),
        }
        for i in picks
    ]
    return {
        "n": int(len(labels)),
        "accuracy_a": accuracy_a,
        "accuracy_b": accuracy_b,
        "drop": accuracy_a - accuracy_b,
        "agreement": float((pred_a == pred_b).mean()),
        "samples": samples,
    }


def model_file_bytes(path) -> int:
    """Bytes of a model as deployed: the file's size, or a C export folder's flash.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.tflite"
        >>> _ = path.write_bytes(bytes(1000))
        >>> model_file_bytes(path)
        1000
    """

    path = Path(path)
    if path.is_dir() and (path / "model.c").is_file():
        sizes = path / "sizes.json"
        if sizes.is_file():
            figures = json.loads(sizes.read_text())
            return int(figures["text"]) + int(figures["rodata"]) + int(figures["data"])
        return sum(p.stat().st_size for p in sorted(path.glob("*.[ch]")))
    return resolve_model_path(path).stat().st_size


def compare(
    path_a, path_b, root, split: str = "validation", backends=(None, None), cache_dir=None
) -> dict:
    """Load two model files (or run directories), score both on `split` of `root`, compare.

    `backends` default to `default_backend` of each file; `cache_dir` caches audio and features.
    """

    backend_a = backends[0] or default_backend(path_a)
    backend_b = backends[1] or default_backend(path_b)
    a, b = load_predictor(path_a, backend_a), load_predictor(path_b, backend_b)
    data = load_eval_data(a.meta, root, split, cache_dir)
    labels = np.array([list(a.labels).index(c.label) for c in data.clips], dtype=np.int64)
    result = compare_predictions(a, b, data.features, labels, data.clips)
    memory_a, memory_b = predictor_memory(a), predictor_memory(b)
    file_a, file_b = model_file_bytes(path_a), model_file_bytes(path_b)
    result.update(
        file_bytes_a=file_a,
        file_bytes_b=file_b,
        file_ratio=file_a / file_b if file_b else None,
        model_a=str(path_a),
        model_b=str(path_b),
        backend_a=backend_a,
        backend_b=backend_b,
        split=split,
        bytes_a=memory_a.total_bytes if memory_a else None,
        bytes_b=memory_b.total_bytes if memory_b else None,
        compression_ratio=compression_ratio(memory_a, memory_b) if memory_a and memory_b else None,
    )
    return result


def print_comparison(result: dict, console=None) -> None:
    """The comparison as two rich tables: figures, then the sample predictions."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    figures = Table("", "A", "B", title=f"{result['split']} split, {result['n']} clips")
    figures.add_row("model", Path(result["model_a"]).name, Path(result["model_b"]).name)
    figures.add_row("backend", result["backend_a"], result["backend_b"])
    figures.add_row("accuracy", _pct(result["accuracy_a"]), _pct(result["accuracy_b"]))
    figures.add_row("parameter memory", _bytes(result["bytes_a"]), _bytes(result["bytes_b"]))
    figures.add_row("file size", _bytes(result["file_bytes_a"]), _bytes(result["file_bytes_b"]))
    console.print(figures)
    console.print(
        f"accuracy drop (A - B): {100 * result['drop']:.2f} points; top-1 agreement "
        f"{_pct(result['agreement'])}"
    )
    ratio, file_ratio = result["compression_ratio"], result["file_ratio"]
    if ratio is not None:
        console.print(f"parameter memory: B is {ratio:.2f}x smaller than A")
    if file_ratio is not None:
        console.print(f"file size: B is {file_ratio:.2f}x smaller than A")
    samples = Table("clip", "true", "A", "p(A)", "B", "p(B)", title="sample predictions")
    for s in result["samples"]:
        samples.add_row(
            Path(s["clip"]).name,
            s["true"],
            s["a"],
            f"{s['probability_a']:.3f}",
            s["b"],
            f"{s['probability_b']:.3f}",
        )
    console.print(samples)


def _pct(value) -> str:
    return f"{100 * value:.2f}%"


def _bytes(value) -> str:
    return "-" if value is None else f"{value:,} bytes"
