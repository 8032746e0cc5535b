"""Retraining a pruned network with the training stage's `fit`.

`retrain` runs `tinykws.train.loop.fit` on the pruned model (checkpoints, resume and history as in
training) in a work folder; `keep="last"` returns the final weights instead of the best ones,
which gradual pruning needs (its sparsity is highest at the end). `fresh_work_dir` empties a
work folder left by a run with different settings, so a resumed retraining never continues
from weights of another pruned network.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from tinykws.checkpoint import load_checkpoint
from tinykws.io import write_json
from tinykws.train.distributed import single_process
from tinykws.train.loop import fit
from tinykws.train.state import LAST


def retrain(
    model: nn.Module, data, cfg, work_dir: Path | None = None, keep: str = "best", teacher=None
) -> dict:
    """Train `model` in place with `fit(model, data, cfg, work_dir)`; returns fit's history.

    Args:
        model: the pruned model (masks, if any, stay attached).
        data: a `tinykws.train.loop.TrainingData`.
        cfg: a `tinykws.train.loop.TrainConfig`.
        work_dir: where fit writes best/last checkpoints and history.json (resumable); a
            temporary folder when None.
        keep: "best" (the epoch `cfg.monitor` ranks first: the highest validation accuracy,
            or with "val_loss" the lowest validation loss) or "last" (the weights after the
            last epoch).
        teacher: the unpruned model, distilled into `model` when `cfg.distill_weight` > 0.
    """
    with _work_dir(work_dir) as out, single_process():
        history = fit(model, data, cfg, out, teacher=teacher)
        if keep == "last":
            tensors, _ = load_checkpoint(out / LAST)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return history


@contextlib.contextmanager
def _work_dir(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="tinykws-retrain-") as tmp:
        yield Path(tmp)


def fresh_work_dir(work_dir: Path, key: str) -> Path:
    """`work_dir`, emptied first if it holds the work of a run with another `key`."""
    work_dir = Path(work_dir)
    marker = work_dir / "key.json"
    if work_dir.exists() and (not marker.is_file() or _read_key(marker) != key):
        shutil.rmtree(work_dir)
    if not marker.is_file():
        write_json(marker, {"key": key})
    return work_dir


def _read_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None
