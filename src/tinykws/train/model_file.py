"""A float model file read back: its metadata checked, and turned into the model, front end,
normalisation and dataset it was trained with.

A checkpoint (.safetensors) holds the weights and, as JSON metadata, the model config, labels,
front-end config, feature normalisation and data config; a run directory names its final model
in `FINAL_MODEL_FILE`. Nothing here executes code from a file.

Example:
    >>> meta = {"frontend": "mfcc", "normalization": {"mean": [0.0], "std": [1.0]}}
    >>> frontend(meta).output_shape, normalization(meta).std
    ((49, 10), (1.0,))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tinykws.checkpoint import load_checkpoint
from tinykws.config import from_dict
from tinykws.data import speech_commands as sc
from tinykws.errors import TinyKWSError
from tinykws.features.frontend import FrontEnd, frontend_config
from tinykws.features.normalization import Normalization
from tinykws.metadata import check_meta
from tinykws.models import build_model, config_from_dict

FINAL_MODEL_FILE = "final.json"  # in a run directory: {"model": "<relative path>"}
MAX_PARAMS = 50_000_000  # a keyword spotter for a microcontroller is far below this


def normalization(meta: dict) -> Normalization:
    """The feature normalisation stored in a model's metadata."""
    norm = meta["normalization"]
    return Normalization(mean=tuple(norm["mean"]), std=tuple(norm["std"]))


def frontend(meta: dict) -> FrontEnd:
    """The `FrontEnd` a model was trained with."""
    return FrontEnd(frontend_config(meta["frontend"]))


def model_dataset(meta: dict, root: str | os.PathLike):
    """The folder `root` loaded as the model (its metadata) was trained: same data config, same
    labels.

    Raises:
        TinyKWSError: a missing or wrong folder, or labels that differ from the model's.
    """
    dataset = sc.load_dataset(root, from_dict(sc.DataConfig, meta.get("data", {}), "data"))
    if list(dataset.labels) != list(meta["labels"]):
        raise TinyKWSError(
            f"{root}: its labels {list(dataset.labels)} differ from the model's "
            f"{list(meta['labels'])}; use the folder the model was trained on"
        )
    return dataset


def load_float_model(path: Path):
    """(module in eval mode, meta) of a float checkpoint, rebuilt from its config.

    Raises:
        TinyKWSError: not a tinykws model, a quantized one, or weights that do not fit.
    """
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
    return module.eval(), meta


def check_model_meta(meta: dict, where: str):
    """Check that a model's metadata fits together and return its model config: as many labels
    as outputs, the front end's (frames, bins) = the model's input, a normalisation per bin (or
    one for all) and a sane size (counted without allocating the weights).

    Raises:
        TinyKWSError: naming `where` and the mismatch.
    """
    check_meta(meta, where)
    shape = frontend_shape(meta, where)
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
    frontend_shape(check_meta(meta, where), where)
    if "model" in meta:
        check_model_meta(meta, where)
    return meta


def _check_data_config(meta: dict, where: str) -> None:
    """The data config a model was trained with must still be a valid one (evaluation and
    fine-tuning load folders with it)."""
    if "data" in meta:
        try:
            from_dict(sc.DataConfig, meta["data"], "data")
        except TinyKWSError as exc:
            raise TinyKWSError(f"{where}: metadata 'data': {exc}") from None


def frontend_shape(meta: dict, where: str) -> tuple[int, int]:
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
