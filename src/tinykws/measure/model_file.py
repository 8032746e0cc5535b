"""Read any model file into a `LoadedModel`: a float or quantized checkpoint, an integer graph
(.json) or a run directory's final model; what export, metrics and check start from.

Example:
    >>> import tempfile, pathlib
    >>> from tinykws.checkpoint import save_checkpoint
    >>> from tinykws.config import to_dict
    >>> from tinykws.features.frontend import frontend_config
    >>> from tinykws.models import build_model, config_to_dict, model_config
    >>> model = build_model(model_config("tinyconv", 2, (49, 40)))
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> meta = {"model": config_to_dict(model.config), "labels": ["yes", "no"],
    ...         "frontend": to_dict(frontend_config("micro")),
    ...         "normalization": {"mean": [0.0] * 40, "std": [1.0] * 40}}
    >>> save_checkpoint(folder / "m.safetensors", model.state_dict(), meta)
    >>> loaded = load_model(folder / "m.safetensors")
    >>> loaded.precision, loaded.weight_bits, loaded.graph is None
    ('float32', 32, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinykws.checkpoint import load_checkpoint
from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph
from tinykws.measure.predictors import load_torch
from tinykws.quant.files import rebuild_quantized
from tinykws.quant.lower import lower
from tinykws.quant.model import QuantModel
from tinykws.train.model_file import check_file_meta, resolve_model_path


@dataclass
class LoadedModel:
    """What a model path holds, ready to export or measure.

    Attributes:
        path: the resolved model file.
        meta: its metadata (labels, frontend, normalization, model config, ...).
        precision: "float32", "int8" (ptq / qat / integer graph) or "dynamic".
        module: the float PyTorch model (None for a bare integer graph).
        quantized: the `QuantizedModel` of a quantized checkpoint, else None.
        graph: the int8 Graph (lowered or read), else None.
    """

    path: Path
    meta: dict
    precision: str
    module: Any = None
    quantized: Any = None
    graph: Any = None

    @property
    def float_source(self):
        """What `lower_float` takes: the folded quantized model (its float weights) when there
        is one, else the float module."""
        if self.quantized is not None and isinstance(self.quantized.module, QuantModel):
            return self.quantized.module
        return self.module

    @property
    def weight_bits(self) -> int:
        quant = self.meta.get("quant", {}).get("config", {})
        return int(quant.get("weight_bits", 32 if self.precision == "float32" else 8))


def load_model(model_path) -> LoadedModel:
    """Load a float or quantized checkpoint, an integer graph (.json) or a run's final model."""
    path = resolve_model_path(model_path)
    if path.suffix == ".json":
        return _load_graph(path)
    if path.suffix != ".safetensors":
        raise TinyKWSError(
            f"{path}: export and metrics read checkpoints (.safetensors), integer "
            f"graphs (.json) or run directories; this is '{path.suffix}'"
        )
    tensors, meta = load_checkpoint(path)
    if "quant" not in meta:
        return LoadedModel(path, meta, "float32", module=load_torch(path).module)
    return _load_quantized(path, tensors, meta)


def _load_graph(path: Path) -> LoadedModel:
    graph = Graph.load(path)
    return LoadedModel(path, check_file_meta(dict(graph.metadata), str(path)), "int8", graph=graph)


def _load_quantized(path: Path, tensors: dict, meta: dict) -> LoadedModel:
    check_file_meta(meta, str(path))  # nothing is exported from a model that does not fit
    quantized = rebuild_quantized(meta, tensors, str(path))
    if quantized.config.method == "dynamic":
        return LoadedModel(path, meta, "dynamic", quantized.module.net, quantized)
    graph_name = meta["quant"].get("graph")
    if graph_name:
        graph = Graph.load(path.parent / graph_name)
    elif quantized.lowerable:
        graph = lower(quantized)
    else:
        graph = None
    precision = "int8" if graph is not None else "fakequant"
    return LoadedModel(path, meta, precision, quantized.module.net, quantized, graph)
