"""What a run directory says about its stages: which are done, and what to discard before one
is redone.

A stage is done when its marker (`stages/<stage>.json`) is a JSON object with the expected key
and the model it left (its `final_model`) exists and loads. Before a stage is redone, its marker
and those of every later stage go first, so that an interrupt leaves none of them looking done;
when a stage is forced, or was done before on other settings, the training state it would
resume from (`last.safetensors` under its folder) goes too, so it starts from scratch.

Example:
    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> stage_is_done(run, "train", "abc")
    False
"""

from __future__ import annotations

from pathlib import Path

from tinykws.checkpoint import load_checkpoint
from tinykws.errors import TinyKWSError
from tinykws.io import read_json_object
from tinykws.log import logger

RESUME_FILE = "last.safetensors"


def stage_is_done(run_dir: Path, stage: str, key: str) -> bool:
    """True when `stage`'s marker has `key` and the model it recorded exists and loads."""
    marker = Path(run_dir) / "stages" / f"{stage}.json"
    if not marker.is_file():
        return False
    try:
        recorded = read_json_object(marker, "stage marker")
    except TinyKWSError:
        return False
    model = recorded.get("final_model")
    if recorded.get("key") != key or (model is not None and not isinstance(model, str)):
        return False
    return model is None or model_loads(Path(run_dir) / model)


def model_loads(path: Path) -> bool:
    """A checkpoint that loads (metadata and weights checked), or any other existing file."""
    if path.suffix != ".safetensors":
        return path.exists()
    try:
        load_checkpoint(path)
    except TinyKWSError:
        logger.warning(f"{path}: missing or damaged; its stage is redone")
        return False
    return True


def invalidate_from(run_dir: Path, stages: tuple[str, ...], forced: bool) -> None:
    """Before redoing `stages[0]` (and so every stage in `stages`, which follow it): remove
    their markers, and the resume state of each that was done before or is forced."""
    marker_dir = Path(run_dir) / "stages"
    had_marker = (marker_dir / f"{stages[0]}.json").is_file()
    for stage in stages:
        marker = marker_dir / f"{stage}.json"
        if forced or marker.is_file():  # done before, on other settings or another upstream
            for resume in sorted((Path(run_dir) / stage).glob(f"**/{RESUME_FILE}")):
                resume.unlink()
        marker.unlink(missing_ok=True)
    if had_marker and not forced:
        logger.info(f"[{stages[0]}] settings changed since the last run: redone from the start")
