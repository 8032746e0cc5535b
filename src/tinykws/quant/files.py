"""Quantized model files: writing them, and reading them back as a `QuantizedModel`.

A quantized model is saved as
- ``NAME.safetensors``: a checkpoint of the fake-quant model (BatchNorm-folded float weights,
  weight scales, activation scales and zero points) whose JSON holds the float model's metadata
  (model config, labels, front end, normalisation, data) plus ``"quant"``: the `QuantConfig`,
  what quantization recorded, and the name of the integer graph beside it;
- ``NAME.json`` + ``NAME.npz``: the lowered integer graph (`tinykws.ir.graph`), whose metadata
  repeats labels, front end and normalisation so it is usable alone.

`tinykws.measure.predictors.load_predictor` runs both with a backend. Loading never executes
code from the files.
"""

from __future__ import annotations

from pathlib import Path

from tinykws.checkpoint import load_checkpoint, save_checkpoint
from tinykws.config import from_dict, to_dict
from tinykws.errors import TinyKWSError
from tinykws.models import build_model, config_from_dict
from tinykws.quant import QuantConfig
from tinykws.quant.dynamic import DynamicModel
from tinykws.quant.model import QuantizedModel, QuantModel, WeightQuant

GRAPH_META_KEYS = ("labels", "frontend", "normalization", "data", "model")


def save_quantized(path: str | Path, quantized, meta: dict, graph=None) -> Path:
    """Write the quantized checkpoint (and the graph beside it, first); returns the checkpoint."""
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
    tensors, meta = load_checkpoint(path)
    if "quant" not in meta:
        raise TinyKWSError(f"{path}: a float checkpoint, not a quantized model")
    return rebuild_quantized(meta, tensors, str(path)), meta


def rebuild_quantized(meta: dict, tensors: dict, where: str):
    """A `QuantizedModel` from checkpoint metadata and tensors."""
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
