"""Checkpoints: one .safetensors file holding the weights and, in its metadata, a JSON document.

The JSON holds everything needed to use the model without the code that trained it: the model
config (architecture as data, so a pruned network is rebuilt from its widths), labels, front-end
config, feature normalisation, the recipe and metrics. Loading parses JSON and tensors only; no
code from the file is ever executed.

Example:
    >>> import torch, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_checkpoint(path, {"w": torch.ones(2)}, {"labels": ["a", "b"]})
    >>> tensors, meta = load_checkpoint(path)
    >>> meta["labels"], tensors["w"].tolist()
    (['a', 'b'], [1.0, 1.0])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tinykws.errors import TinyKWSError
from tinykws.io import _json_default, atomic_write
from tinykws.metadata import check_finite, check_meta

FORMAT = "tinykws-checkpoint-1"
META_KEY = "tinykws"


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write `tensors` (name -> torch.Tensor) and `meta` (JSON-able) atomically.

    The metadata is checked (`tinykws.metadata.check_meta`) and the weights must be finite
    before anything is written, so a broken model is never copied into a new file."""
    from safetensors.torch import save

    check_meta(meta, str(path))
    header = {"format": FORMAT, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    check_finite(tensors, str(path))
    data = save(tensors, metadata={META_KEY: json.dumps(header, default=_json_default)})
    with atomic_write(path, "wb") as f:
        f.write(data)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint: (tensors, meta); a missing, truncated or foreign file is an error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise TinyKWSError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get(META_KEY)
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError
        reason = str(exc).split("\n")[0]
        raise TinyKWSError(f"{path}: not a readable tinykws checkpoint ({reason})") from None
    if meta_text is None:
        raise TinyKWSError(f"{path}: a safetensors file without tinykws metadata")
    try:
        meta = json.loads(meta_text)
    except (json.JSONDecodeError, RecursionError):
        raise TinyKWSError(f"{path}: damaged tinykws metadata") from None
    if not isinstance(meta, dict):
        raise TinyKWSError(f"{path}: damaged tinykws metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise TinyKWSError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    check_meta(meta, str(path))
    check_finite(tensors, str(path))
    return tensors, meta


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `optimizer.state_dict()` into tensors and JSON so it can live in a checkpoint."""
    import torch

    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            name = f"optim.{pid}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith("optim.")]
    items += list(info["scalars"].items())
    for name, value in items:
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}
