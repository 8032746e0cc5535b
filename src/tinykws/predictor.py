"""A model file of any kind, loaded as something that turns features into class scores.

`load_predictor(path, backend)` accepts a checkpoint (.safetensors), a run directory (its final
model) and, once registered by the exporters, .tflite / .onnx files and integer graphs. Every
predictor exposes the labels, the front-end config and normalisation it expects, and
`logits(features)` on un-normalised features (N, frames, bins) -> float32 (N, classes).

Example:
    >>> sorted(LOADERS)
    ['.json', '.onnx', '.safetensors', '.tflite']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tinykws.errors import TinyKWSError

FINAL_MODEL_FILE = "final.json"  # in a run directory: {"model": "<relative path>"}


class Predictor(Protocol):
    labels: tuple[str, ...]
    meta: dict

    def logits(self, features: np.ndarray) -> np.ndarray: ...


@dataclass
class TorchPredictor:
    """A float (or fake-quant) PyTorch model with its labels and front end."""

    module: Any
    meta: dict
    device: Any = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def logits(self, features: np.ndarray) -> np.ndarray:
        from tinykws.train import pick_device, predict_logits

        device = self.device or pick_device("auto")
        self.module.to(device)
        return predict_logits(self.module, features, normalization(self.meta), device).numpy()


def normalization(meta: dict):
    """The feature normalisation stored in a model's metadata."""
    from tinykws.features import Normalization

    norm = meta["normalization"]
    return Normalization(mean=tuple(norm["mean"]), std=tuple(norm["std"]))


def frontend(meta: dict):
    """The `FrontEnd` a model was trained with."""
    from tinykws.features import FrontEnd, frontend_config

    return FrontEnd(frontend_config(meta["frontend"]))


def model_dataset(meta: dict, root):
    """The folder `root` loaded as the model (its metadata) was trained: same data config, same
    labels.

    Raises:
        TinyKWSError: a missing or wrong folder, or labels that differ from the model's.
    """
    from tinykws.config import from_dict
    from tinykws.data import speech_commands as sc

    dataset = sc.load_dataset(root, from_dict(sc.DataConfig, meta.get("data", {}), "data"))
    if list(dataset.labels) != list(meta["labels"]):
        raise TinyKWSError(
            f"{root}: its labels {list(dataset.labels)} differ from the model's "
            f"{list(meta['labels'])}; use the folder the model was trained on"
        )
    return dataset


def load_torch(path: Path, backend: str = "torch") -> TorchPredictor:
    """Load a checkpoint as a PyTorch model (rebuilt from its config; no code executed)."""
    from tinykws.checkpoint import load_checkpoint
    from tinykws.models import build_model, config_from_dict

    if backend != "torch":
        raise TinyKWSError(f"{path}: backend '{backend}' needs a quantized model; this is float")
    tensors, meta = load_checkpoint(path)
    for key in ("model", "labels", "frontend", "normalization"):
        if key not in meta:
            raise TinyKWSError(f"{path}: checkpoint has no '{key}' entry; not a tinykws model")
    if "quant" in meta:
        raise TinyKWSError(
            f"{path}: a {meta['quant']['config'].get('method', '')} quantized model; "
            "this step needs the float checkpoint it was quantized from"
        )
    module = build_model(config_from_dict(meta["model"]))
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise TinyKWSError(
            f"{path}: weights do not fit the model config ({len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors, e.g. '{example}')"
        )
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise TinyKWSError(f"{path}: weights do not fit the model config: {first}") from None
    module.eval()
    return TorchPredictor(module=module, meta=meta)


# The backend each file type runs on by default (`default_backend`).
FILE_BACKENDS = {".json": "int", ".tflite": "litert", ".onnx": "onnxruntime"}
# Suffix -> loader(path, backend), or "module:function" imported on first use so that reading a
# checkpoint does not import the exporters' runtimes.
LOADERS: dict[str, Any] = {
    ".safetensors": "tinykws.quant.files:load_checkpoint_predictor",  # float or quantized
    ".json": "tinykws.quant.files:load_graph_predictor",  # an integer graph
    ".tflite": "tinykws.export.runtimes:load_tflite_predictor",
    ".onnx": "tinykws.export.runtimes:load_onnx_predictor",
}


def resolve_model_path(path: str | Path) -> Path:
    """A model file, or the final model of a run directory."""
    path = Path(path)
    if path.is_dir():
        final = path / FINAL_MODEL_FILE
        if not final.is_file():
            raise TinyKWSError(
                f"{path}: a folder with no {FINAL_MODEL_FILE}; is it a finished run?"
            )
        return path / json.loads(final.read_text())["model"]
    if not path.exists():
        raise TinyKWSError(f"{path}: no such model file or run directory")
    return path


def default_backend(path: str | Path) -> str:
    """What a model file runs on unless told otherwise: "int" for a quantized checkpoint with
    an integer graph (and for a graph file), "fakequant" for one without, "litert" for .tflite,
    "onnxruntime" for .onnx, "torch" for a float checkpoint."""
    path = resolve_model_path(path)
    if path.suffix in FILE_BACKENDS:
        return FILE_BACKENDS[path.suffix]
    if path.suffix != ".safetensors":
        return "torch"
    from tinykws.checkpoint import load_checkpoint

    _, meta = load_checkpoint(path)
    quant = meta.get("quant")
    if quant is None:
        return "torch"
    return "int" if quant.get("graph") else "fakequant"


def load_predictor(path: str | Path, backend: str = "auto") -> Predictor:
    """Load any supported model file (see `LOADERS`) or a run directory's final model.

    `backend` "auto" runs the model as it will be deployed (`default_backend`): a quantized
    model on its integer graph, an exported file in its own runtime."""
    path = resolve_model_path(path)
    if backend == "auto":
        backend = default_backend(path)
    suffix = path.suffix if path.is_file() else "/"
    loader = LOADERS.get(suffix)
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        raise TinyKWSError(f"{path}: unknown model file type '{suffix}'; expected one of {known}")
    if isinstance(loader, str):
        import importlib

        module, function = loader.split(":")
        loader = getattr(importlib.import_module(module), function)
    return loader(path, backend)
