"""Quantized model files, and loading them as predictors with a backend.

A quantized model is saved as
- ``NAME.safetensors``: a checkpoint of the fake-quant model (BatchNorm-folded float weights,
  weight scales, activation scales and zero points) whose JSON holds the float model's metadata
  (model config, labels, front end, normalisation, data) plus ``"quant"``: the `QuantConfig`,
  what quantization recorded, and the name of the integer graph beside it;
- ``NAME.json`` + ``NAME.npz``: the lowered integer graph (`tinykws.ir.graph`), whose metadata
  repeats labels, front end and normalisation so it is usable alone.

`tinykws.measure.predictors.load_predictor` reads both (through its `LOADERS` table): a quantized
checkpoint loads with backend "torch" (the float weights it was quantized from), "fakequant" or
"int" (the integer graph beside it, or one lowered on the spot); a graph file loads with backend
"int". Loading never executes code from the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError

BACKENDS = ("torch", "fakequant", "int")
GRAPH_META_KEYS = ("labels", "frontend", "normalization", "data", "model")


def save_quantized(path: str | Path, quantized, meta: dict, graph=None) -> Path:
    """Write the quantized checkpoint (and the graph beside it, first); returns the checkpoint."""
    from tinykws.checkpoint import save_checkpoint
    from tinykws.config import to_dict

    path = Path(path)
    graph_name = None
    if graph is not None:
        graph.metadata.update({k: meta[k] for k in GRAPH_META_KEYS if k in meta})
        graph_name = graph.save(path.with_suffix(".json")).name
    quant = {"config": to_dict(quantized.config), "history": quantized.history, "graph": graph_name}
    save_checkpoint(path, quantized.module.state_dict(), {**meta, "quant": quant})
    return path


def load_quantized(path: str | Path):
    """(QuantizedModel, meta) of a quantized checkpoint, rebuilt from its config (no pickle)."""
    from tinykws.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(path)
    if "quant" not in meta:
        raise TinyKWSError(f"{path}: a float checkpoint, not a quantized model")
    return rebuild_quantized(meta, tensors, str(path)), meta


def rebuild_quantized(meta: dict, tensors: dict, where: str):
    """A `QuantizedModel` from checkpoint metadata and tensors."""
    from tinykws.config import from_dict
    from tinykws.models import build_model, config_from_dict
    from tinykws.quant import QuantConfig
    from tinykws.quant.dynamic import DynamicModel
    from tinykws.quant.model import QuantizedModel, QuantModel, WeightQuant

    config = from_dict(QuantConfig, meta["quant"]["config"], "quant")
    model = build_model(config_from_dict(meta["model"]))
    if config.method == "dynamic":
        module = DynamicModel.prepare(model, config)
    else:
        module = QuantModel.prepare(model, config)
        module.fold()
        module.freeze_observers()
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise TinyKWSError(f"{where}: tensors do not fit the quantized model ({reason})") from None
    for quantizer in module.modules():
        if isinstance(quantizer, WeightQuant):
            quantizer.frozen = True
    module.set_mode("fakequant").eval()
    return QuantizedModel(module, config, meta["quant"].get("history", {}))


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
        from tinykws.measure.predictors import normalization

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
        from tinykws.measure.predictors import normalization

        return graph_logits(self.graph, features, normalization(self.meta))


def backend_logits(quantized, graph, features, normalization, backend: str) -> np.ndarray:
    """float32 (N, classes) logits of un-normalised features (N, frames, bins) by `backend`."""
    from tinykws.train.loop import predict_logits

    if backend == "int":
        if graph is None:
            from tinykws.quant.lower import lower

            graph = lower(quantized)
        return graph_logits(graph, features, normalization)
    import torch

    module = quantized.module
    mode = module.mode
    module.set_mode("float" if backend == "torch" else "fakequant")
    try:
        return predict_logits(module, features, normalization, torch.device("cpu")).numpy()
    finally:
        module.set_mode(mode)


def graph_logits(graph, features, normalization, batch_size: int = 256) -> np.ndarray:
    """Run the integer graph on un-normalised features; the normalisation is the same float32
    computation as the PyTorch path, so both see identical inputs."""
    from tinykws.ir import interpret
    from tinykws.quant.data import feature_batches

    out = [np.zeros((0, graph.tensor(graph.outputs[0]).shape[-1]), np.float32)]
    for batch in feature_batches(features, normalization, batch_size):
        x = batch.numpy().transpose(0, 2, 3, 1)  # (B, 1, T, F) -> NHWC (B, T, F, 1)
        out.append(interpret(graph, x)[graph.outputs[0]])
    return np.concatenate(out)


def load_checkpoint_predictor(path: Path, backend: str = "torch"):
    """A quantized checkpoint as `QuantPredictor`; a float one through the float loader."""
    from tinykws.checkpoint import load_checkpoint
    from tinykws.ir.graph import IntGraph
    from tinykws.measure.predictors import load_torch

    tensors, meta = load_checkpoint(path)
    if "quant" not in meta:
        return load_torch(path, backend)
    if backend not in BACKENDS:
        raise TinyKWSError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    quantized = rebuild_quantized(meta, tensors, str(path))
    graph = None
    if backend == "int":
        name = meta["quant"].get("graph")
        graph = IntGraph.load(Path(path).parent / name) if name else None
        if graph is None and not quantized.lowerable:
            raise TinyKWSError(
                f"{path}: this {quantized.config.method} model has no integer "
                f"graph; use --backend torch or fakequant"
            )
    return QuantPredictor(quantized, meta, backend, graph)


def load_graph_predictor(path: Path, backend: str = "int") -> GraphPredictor:
    """An integer graph file (NAME.json + NAME.npz) with backend "int"."""
    from tinykws.ir.graph import IntGraph

    if backend != "int":
        raise TinyKWSError(f"{path}: an integer graph runs only with --backend int")
    graph = IntGraph.load(path)
    missing = [k for k in ("labels", "frontend", "normalization") if k not in graph.metadata]
    if missing:
        raise TinyKWSError(
            f"{path}: the graph's metadata has no '{missing[0]}'; save it with "
            f"`tinykws quantize` to use it as a model"
        )
    return GraphPredictor(graph, dict(graph.metadata))
