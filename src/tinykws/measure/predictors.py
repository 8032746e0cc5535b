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

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tinykws.checkpoint import load_checkpoint
from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph
from tinykws.metadata import check_meta
from tinykws.quant.files import rebuild_quantized
from tinykws.quant.scoring import backend_logits, graph_logits
from tinykws.quant.sizes import ParameterMemory, float_memory, graph_memory, quantized_memory
from tinykws.train.loop import pick_device, predict_logits
from tinykws.train.model_file import (
    frontend_shape,
    load_float_model,
    normalization,
    resolve_model_path,
)

BACKENDS = ("torch", "fakequant", "int")  # of a quantized checkpoint


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
        device = self.device or pick_device("auto")
        self.module.to(device)
        return predict_logits(self.module, features, normalization(self.meta), device).numpy()


@dataclass
class QuantPredictor:
    """A quantized model run by one backend: "torch", "fakequant" or "int"."""

    quantized: Any
    meta: dict
    backend: str
    graph: Any = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    @property
    def module(self):
        """The float network (backend torch), the fake-quant model, or None (int)."""
        if self.backend == "torch":
            return self.quantized.module.net
        return self.quantized.module if self.backend == "fakequant" else None

    def logits(self, features: np.ndarray) -> np.ndarray:
        return backend_logits(
            self.quantized, self.graph, features, normalization(self.meta), self.backend
        )


@dataclass
class GraphPredictor:
    """An integer graph file run by the numpy interpreter."""

    graph: Any
    meta: dict

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def logits(self, features: np.ndarray) -> np.ndarray:
        return graph_logits(self.graph, features, normalization(self.meta))


def load_torch(path: Path, backend: str = "torch") -> TorchPredictor:
    """Load a float checkpoint as a PyTorch model (rebuilt from its config; no code executed)."""
    if backend != "torch":
        raise TinyKWSError(f"{path}: backend '{backend}' needs a quantized model; this is float")
    module, meta = load_float_model(path)
    return TorchPredictor(module=module, meta=meta)


def load_checkpoint_predictor(path: Path, backend: str = "torch"):
    """A quantized checkpoint as `QuantPredictor` with `backend` ("torch" runs the float weights
    it was quantized from, "int" the integer graph beside it or one lowered on the spot); a
    float one through `load_torch`."""
    tensors, meta = load_checkpoint(path)
    if "quant" not in meta:
        return load_torch(path, backend)
    if backend not in BACKENDS:
        raise TinyKWSError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    quantized = rebuild_quantized(meta, tensors, str(path))
    graph = None
    if backend == "int":
        name = meta["quant"].get("graph")
        graph = Graph.load(Path(path).parent / name) if name else None
        if graph is None and not quantized.lowerable:
            raise TinyKWSError(
                f"{path}: this {quantized.config.method} model has no integer "
                f"graph; use --backend torch or fakequant"
            )
    return QuantPredictor(quantized, meta, backend, graph)


def load_graph_predictor(path: Path, backend: str = "int") -> GraphPredictor:
    """An integer graph file (NAME.json + NAME.npz) with backend "int"."""
    if backend != "int":
        raise TinyKWSError(f"{path}: an integer graph runs only with --backend int")
    graph = Graph.load(path)
    missing = [k for k in ("labels", "frontend", "normalization") if k not in graph.metadata]
    if missing:
        raise TinyKWSError(
            f"{path}: the graph's metadata has no '{missing[0]}'; save it with "
            f"`tinykws quantize` to use it as a model"
        )
    return GraphPredictor(graph, dict(graph.metadata))


def predictor_memory(predictor) -> ParameterMemory | None:
    """Parameter memory of a loaded predictor (float, quantized or graph), when known."""
    if isinstance(predictor, QuantPredictor):
        if predictor.backend == "torch":
            return float_memory(predictor.quantized.module.net)
        return quantized_memory(predictor.quantized)
    if isinstance(predictor, GraphPredictor):
        return graph_memory(predictor.graph)
    module = getattr(predictor, "module", None)
    return float_memory(module) if module is not None else None


def check_predictor(predictor, where: str) -> None:
    """Run a loaded model once on silence-like features: its output must be one finite score
    per label, else its metadata belongs to another model or its weights are broken."""
    shape = frontend_shape(check_meta(predictor.meta, where), where)
    try:
        out = np.asarray(predictor.logits(np.zeros((1, *shape), np.float32)))
    except TinyKWSError:
        raise
    except Exception as exc:  # runtimes raise their own types on a shape mismatch
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TinyKWSError(
            f"{where}: the model does not run on the features its metadata describes "
            f"({reason[:200]}); the file is damaged or its metadata belongs to another model"
        ) from None
    if out.shape != (1, len(predictor.labels)):
        raise TinyKWSError(
            f"{where}: the model gives {out.shape[-1]} scores for {len(predictor.labels)} "
            "labels; its metadata belongs to another model"
        )
    if not np.isfinite(out).all():
        raise TinyKWSError(f"{where}: the model's outputs are NaN or infinite; it is broken")


# The backend each file type runs on by default (`default_backend`).
FILE_BACKENDS = {".json": "int", ".tflite": "litert", ".onnx": "onnxruntime"}
# Suffix -> loader(path, backend), or "module:function" imported on first use so that reading a
# checkpoint does not import the exporters' runtimes.
LOADERS: dict[str, Any] = {
    ".safetensors": load_checkpoint_predictor,  # float or quantized
    ".json": load_graph_predictor,  # an integer graph
    ".tflite": "tinykws.measure.runtimes:load_tflite_predictor",
    ".onnx": "tinykws.measure.runtimes:load_onnx_predictor",
}


def default_backend(path: str | Path) -> str:
    """What a model file runs on unless told otherwise: "int" for a quantized checkpoint with
    an integer graph (and for a graph file), "fakequant" for one without, "litert" for .tflite,
    "onnxruntime" for .onnx, "torch" for a float checkpoint."""
    path = resolve_model_path(path)
    if path.suffix in FILE_BACKENDS:
        return FILE_BACKENDS[path.suffix]
    if path.suffix != ".safetensors":
        return "torch"
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
        module, function = loader.split(":")
        loader = getattr(importlib.import_module(module), function)
    try:
        predictor = loader(path, backend)
    except (TinyKWSError, MemoryError):
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as exc:
        # a file's content is outside tinykws's control: whatever its parser trips on is a
        # damaged file, not a bug
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TinyKWSError(f"{path}: not a readable model file ({reason[:200]})") from None
    check_predictor(predictor, str(path))
    return predictor
