"""One schema for the metadata that travels with a model: checkpoints, exported files and
integer graphs all carry the same JSON document (labels, model config, front-end config,
feature normalisation, optional quantization record).

`check_meta` checks the structure and the value ranges of whatever entries a document has; it
runs when a file is read and before one is written, so a damaged or foreign document ends in
one `TinyKWSError` naming the file instead of a crash (or a wrong answer) later.
`check_finite` refuses NaN or infinite weights.

Example:
    >>> meta = {"labels": ["yes", "no"], "normalization": {"mean": [0.0], "std": [1.0]}}
    >>> check_meta(meta, "m.safetensors") is meta
    True
    >>> check_meta({"labels": "yes"}, "m.safetensors")
    Traceback (most recent call last):
    ...
    tinykws.errors.TinyKWSError: m.safetensors: metadata 'labels' must be a list of names, got str
"""

from __future__ import annotations

import math
from typing import Any

from tinykws.errors import TinyKWSError

MAX_LABELS = 1000  # Speech Commands has 35 words; a thousand leaves room for any vocabulary
MAX_BINS = 4096  # feature bins (and normalisation entries) per frame
MAX_CONFIG_INT = 1_000_000  # any integer of a model or front-end config (widths, sizes, rates)
DICT_ENTRIES = ("model", "data", "quant", "train", "resume", "recipe_config")


def check_meta(meta: Any, where: str) -> dict:
    """Check a model's metadata document; returns it unchanged.

    Args:
        meta: the parsed JSON document.
        where: the file it comes from (or goes to), named in the error.

    Raises:
        TinyKWSError: not an object, an entry of the wrong type, a label list with duplicates
            or too many names, a normalisation that is not finite or positive, or an absurd
            integer in a config.
    """
    if not isinstance(meta, dict):
        raise TinyKWSError(f"{where}: metadata must be a JSON object, got {_kind(meta)}")
    for key in DICT_ENTRIES:
        if key in meta and not isinstance(meta[key], dict):
            raise TinyKWSError(
                f"{where}: metadata '{key}' must be an object, got {_kind(meta[key])}"
            )
    if "frontend" in meta and not isinstance(meta["frontend"], (dict, str)):
        raise TinyKWSError(
            f"{where}: metadata 'frontend' must be an object or a preset name, "
            f"got {_kind(meta['frontend'])}"
        )
    if "labels" in meta:
        _check_labels(meta["labels"], where)
    if "normalization" in meta:
        _check_normalization(meta["normalization"], where)
    for key in ("model", "frontend"):
        if key in meta:
            _check_ints(meta[key], f"{where}: metadata '{key}'")
    if "model" in meta and not isinstance(meta["model"].get("family"), str):
        raise TinyKWSError(f"{where}: metadata 'model' has no 'family' name")
    if "quant" in meta:
        _check_quant(meta["quant"], where)
    return meta


def _check_quant(quant: dict, where: str) -> None:
    if not isinstance(quant.get("config"), dict):
        raise TinyKWSError(f"{where}: metadata 'quant' has no 'config' object")
    if not isinstance(quant.get("graph"), (str, type(None))):
        raise TinyKWSError(f"{where}: metadata 'quant.graph' must be a file name")


def _check_labels(labels: Any, where: str) -> None:
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise TinyKWSError(
            f"{where}: metadata 'labels' must be a list of names, got {_kind(labels)}"
        )
    if len(labels) > MAX_LABELS:
        raise TinyKWSError(
            f"{where}: metadata 'labels' has {len(labels)} names; at most {MAX_LABELS} make sense"
        )
    if len(set(labels)) != len(labels):
        raise TinyKWSError(f"{where}: metadata 'labels' names a class twice")


def _check_normalization(norm: Any, where: str) -> None:
    if not isinstance(norm, dict):
        raise TinyKWSError(f"{where}: metadata 'normalization' must be an object")
    for key in ("mean", "std"):
        values = norm.get(key)
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_BINS:
            raise TinyKWSError(
                f"{where}: metadata 'normalization.{key}' must be a list of 1 to {MAX_BINS} "
                f"numbers, got {_kind(values)}"
            )
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            raise TinyKWSError(f"{where}: metadata 'normalization.{key}' holds a non-number")
    if len(norm["mean"]) != len(norm["std"]):
        raise TinyKWSError(f"{where}: metadata 'normalization' mean and std differ in length")
    if not all(v > 0 for v in norm["std"]):
        raise TinyKWSError(f"{where}: metadata 'normalization.std' must be positive")


def _check_ints(value: Any, where: str) -> None:
    """Every number in a config must be finite, every integer at most `MAX_CONFIG_INT`."""
    if isinstance(value, dict):
        for item in value.values():
            _check_ints(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_ints(item, where)
    elif _is_number(value):
        if not math.isfinite(value) or abs(value) > MAX_CONFIG_INT:
            raise TinyKWSError(f"{where} holds an absurd number ({value!r})")


def check_finite(tensors: dict[str, Any], where: str) -> None:
    """Refuse weights with NaN or infinite values (torch tensors or numpy arrays)."""
    import numpy as np

    for name, value in tensors.items():
        if hasattr(value, "is_floating_point"):  # a torch tensor
            broken = value.is_floating_point() and not bool(value.isfinite().all())
        else:
            array = np.asarray(value)
            broken = array.dtype.kind == "f" and not np.isfinite(array).all()
        if broken:
            raise TinyKWSError(
                f"{where}: tensor '{name}' holds NaN or infinite values; the model is "
                "broken (retrain it, or lower the learning rate)"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
