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
from tinykws.metadata import check_meta

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
        from tinykws.train.loop import pick_device, predict_logits

        device = self.device or pick_device("auto")
        self.module.to(device)
        return predict_logits(self.module, features, normalization(self.meta), device).numpy()


def normalization(meta: dict):
    """The feature normalisation stored in a model's metadata."""
    from tinykws.features.frontend import Normalization

    norm = meta["normalization"]
    return Normalization(mean=tuple(norm["mean"]), std=tuple(norm["std"]))


def frontend(meta: dict):
    """The `FrontEnd` a model was trained with."""
    from tinykws.features.frontend import FrontEnd, frontend_config

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
    from tinykws.models import build_model

    if backend != "torch":
        raise TinyKWSError(f"{path}: backend '{backend}' needs a quantized model; this is float")
    tensors, meta = load_checkpoint(path)
    for key in ("model", "labels", "frontend", "normalization"):
        if key not in meta:
            raise TinyKWSError(f"{path}: checkpoint has no '{key}' entry; not a tinykws model")
    if "quant" in meta:
        method = (meta["quant"].get("config") or {}).get("method", "")
        raise TinyKWSError(
            f"{path}: a {method} quantized model; "
            "this step needs the float checkpoint it was quantized from"
        )
    module = build_model(check_model_meta(meta, str(path)))
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


MAX_PARAMS = 50_000_000  # a keyword spotter for a microcontroller is far below this


def check_model_meta(meta: dict, where: str):
    """Check that a model's metadata fits together and return its model config: as many labels
    as outputs, the front end's (frames, bins) = the model's input, a normalisation per bin (or
    one for all) and a sane size (counted without allocating the weights).

    Raises:
        TinyKWSError: naming `where` and the mismatch.
    """
    from tinykws.models import config_from_dict

    check_meta(meta, where)
    shape = _frontend_shape(meta, where)
    try:
        config = config_from_dict(meta["model"])
    except TinyKWSError as exc:
        raise TinyKWSError(f"{where}: metadata 'model': {exc}") from None
    if getattr(config, "n_classes", None) != len(meta["labels"]):
        raise TinyKWSError(
            f"{where}: metadata has {len(meta['labels'])} labels for a model with "
            f"{getattr(config, 'n_classes', '?')} outputs; the file is damaged or mixed up"
        )
    if tuple(getattr(config, "input_shape", ())) != tuple(shape):
        raise TinyKWSError(
            f"{where}: the front end makes {shape[0]}x{shape[1]} features but the model takes "
            f"{getattr(config, 'input_shape', '?')}; the file is damaged or mixed up"
        )
    check_model_size(config, where)
    return config


def check_model_size(config, where: str) -> None:
    """Refuse a model config with more than `MAX_PARAMS` parameters, counted without
    allocating them (a typo such as `filters = 1000000000` must not exhaust the memory)."""
    import torch

    from tinykws.models import build_model

    with torch.device("meta"):  # shapes only: no memory for the weights
        params = sum(p.numel() for p in build_model(config).parameters())
    if params > MAX_PARAMS:
        raise TinyKWSError(
            f"{where}: a model of {params:,} parameters is absurd here (at most {MAX_PARAMS:,})"
        )


def check_file_meta(meta: dict, where: str) -> dict:
    """Check the metadata of any model file (checkpoint, exported file, integer graph): the
    schema, the front end against the normalisation and, when it names its architecture, the
    architecture against labels and front end. Returns `meta`."""
    _frontend_shape(check_meta(meta, where), where)
    if "model" in meta:
        check_model_meta(meta, where)
    return meta


def _check_data_config(meta: dict, where: str) -> None:
    """The data config a model was trained with must still be a valid one (evaluation and
    fine-tuning load folders with it)."""
    from tinykws.config import from_dict
    from tinykws.data.speech_commands import DataConfig

    if "data" in meta:
        try:
            from_dict(DataConfig, meta["data"], "data")
        except TinyKWSError as exc:
            raise TinyKWSError(f"{where}: metadata 'data': {exc}") from None


def _frontend_shape(meta: dict, where: str) -> tuple[int, int]:
    """(frames, bins) of the metadata's front end, checked against its normalisation."""
    for key in ("labels", "frontend", "normalization"):
        if key not in meta:
            raise TinyKWSError(f"{where}: metadata has no '{key}' entry; not a tinykws model")
    try:
        shape = frontend(meta).output_shape
    except TinyKWSError as exc:
        raise TinyKWSError(f"{where}: metadata 'frontend': {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, MemoryError) as exc:
        raise TinyKWSError(f"{where}: metadata 'frontend' is not usable ({exc})") from None
    _check_data_config(meta, where)
    if len(meta["normalization"]["mean"]) not in (1, shape[1]):
        raise TinyKWSError(
            f"{where}: metadata 'normalization' has {len(meta['normalization']['mean'])} "
            f"values for {shape[1]} feature bins"
        )
    return shape


def check_predictor(predictor, where: str) -> None:
    """Run a loaded model once on silence-like features: its output must be one finite score
    per label, else its metadata belongs to another model or its weights are broken."""
    shape = _frontend_shape(check_meta(predictor.meta, where), where)
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
    ".safetensors": "tinykws.quant.files:load_checkpoint_predictor",  # float or quantized
    ".json": "tinykws.quant.files:load_graph_predictor",  # an integer graph
    ".tflite": "tinykws.measure.runtimes:load_tflite_predictor",
    ".onnx": "tinykws.measure.runtimes:load_onnx_predictor",
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
        return _final_model(path, final)
    if not path.exists():
        raise TinyKWSError(f"{path}: no such model file or run directory")
    return path


def _final_model(run_dir: Path, final: Path) -> Path:
    """The model file `final.json` of a run directory points at, inside that directory."""
    try:
        relative = json.loads(final.read_text()).get("model")
    except (ValueError, AttributeError, OSError):
        relative = None
    if not isinstance(relative, str) or not relative:
        raise TinyKWSError(
            f'{final}: damaged (it should be {{"model": "<file>"}}); run the recipe again'
        )
    model = run_dir / relative
    if not model.resolve().is_relative_to(run_dir.resolve()):
        raise TinyKWSError(f"{final}: points outside its run directory ({relative})")
    if not model.exists():
        raise TinyKWSError(f"{final}: its model {relative} is missing; run the recipe again")
    return model


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
