"""Run a recipe stage by stage into a run directory, resuming what is already done.

A run directory holds the resolved `recipe.toml`, one folder per stage, `stages/<stage>.json`
markers for completed stages, `metrics.json`, `final.json` (which file is the run's model) and
`report.html`. A stage's marker stores a key that hashes its own config and the keys of the
stages before it: re-running skips a stage whose key matches, and redoes it (and what follows)
when its config or anything upstream changed. `force` redoes a named stage and those after it.

Under `torchrun`, every process runs the stages up to training; only rank 0 writes markers
and goes on to the later stages.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinykws.cache import DEFAULT_CACHE_DIR, content_key
from tinykws.config import dump_toml, to_dict
from tinykws.errors import TinyKWSError
from tinykws.io import read_json_object, write_json, write_text
from tinykws.log import logger
from tinykws.run.lock import remove_if_empty, run_lock
from tinykws.run.stages.check import stage_check
from tinykws.run.stages.data import stage_data
from tinykws.run.stages.evaluate import stage_evaluate
from tinykws.run.stages.export import stage_export
from tinykws.run.stages.grid import stage_grid
from tinykws.run.stages.prune import stage_prune
from tinykws.run.stages.quantize import stage_quantize
from tinykws.run.stages.report import stage_report
from tinykws.run.stages.stream import stage_stream
from tinykws.run.stages.train import stage_train
from tinykws.run.state import invalidate_from, stage_is_done
from tinykws.train.model_file import FINAL_MODEL_FILE


@dataclass
class Run:
    """A run directory and what its stages share (loaded once, on first use)."""

    recipe: Any
    dir: Path
    cache: dict = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return Path(self.recipe.data.cache_dir) if self.recipe.data.cache_dir else DEFAULT_CACHE_DIR

    @property
    def is_main(self) -> bool:
        return int(os.environ.get("RANK", "0")) == 0

    def stage_dir(self, stage: str) -> Path:
        path = self.dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def outputs(self, stage: str) -> dict:
        """What a completed stage recorded in its marker."""
        marker = self.dir / "stages" / f"{stage}.json"
        if not marker.is_file():
            raise TinyKWSError(f"{self.dir}: stage '{stage}' has not run; add it to the recipe")
        return read_json_object(marker, "stage marker").get("outputs") or {}

    def set_final_model(self, relative: str) -> None:
        """Point the run's final model (what `tinykws evaluate RUN` uses) at `relative`."""
        write_json(self.dir / FINAL_MODEL_FILE, {"model": relative})

    def update_metrics(self, section: str, values: dict) -> None:
        """Merge `values` into metrics.json under `section`."""
        path = self.dir / "metrics.json"
        metrics = {}
        if path.is_file():
            try:
                metrics = read_json_object(path, "metrics file")
            except TinyKWSError as exc:  # derived data: start it again rather than fail
                logger.warning(f"{exc}; it is written anew")
        metrics[section] = values
        write_json(path, metrics)


def stage_table() -> dict[str, Any]:
    """Stage name -> function(run) -> outputs dict, in execution order."""

    return {
        "data": stage_data,
        "train": stage_train,
        "prune": stage_prune,
        "quantize": stage_quantize,
        "export": stage_export,
        "evaluate": stage_evaluate,
        "stream": stage_stream,
        "check": stage_check,
        "grid": stage_grid,
        "report": stage_report,
    }


# Names are needed to validate recipes without importing the stage implementations.
STAGES = (
    "data", "train", "prune", "quantize", "export", "evaluate", "stream", "check", "grid",
    "report",
)  # fmt: skip


def stage_config(recipe, stage: str) -> Any:
    """The part of the recipe a stage depends on (hashed into its marker key)."""
    sections = {
        "data": (recipe.data,),
        "train": (recipe.frontend, recipe.model, recipe.train) + _train_prune(recipe),
        "evaluate": (recipe.evaluate,),
        # the grid trains its own models: it depends on what training and the check read
        "grid": (recipe.extra.get("grid", {}), recipe.frontend, recipe.model, recipe.train)
        + (recipe.extra.get("check", {}),)
        + _train_prune(recipe),
        "report": (),
    }
    return sections.get(stage, (recipe.extra.get(stage, {}),))


def _train_prune(recipe) -> tuple:
    # Hashed only when given, so a recipe without [train.prune] keeps its train key.
    prune = getattr(recipe, "train_prune", None)
    return (prune,) if prune is not None else ()


def run_recipe(recipe, out_dir: str | Path, force: tuple[str, ...] = ()) -> Run:
    """Run each stage of `recipe` into `out_dir`, skipping stages already done with the same key.

    The run directory is locked for the run (`tinykws.run.lock`): a second run on it fails at
    once."""
    created = not Path(out_dir).exists()
    try:
        with run_lock(out_dir, enabled=int(os.environ.get("RANK", "0")) == 0):
            return _run_recipe(recipe, out_dir, force)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no folder behind
            remove_if_empty(out_dir)
        raise


def _run_recipe(recipe, out_dir: str | Path, force: tuple[str, ...] = ()) -> Run:
    run = Run(recipe=recipe, dir=Path(out_dir))
    run.dir.mkdir(parents=True, exist_ok=True)
    table = stage_table()
    bad = [s for s in force if s not in recipe.stages]
    if bad:
        raise TinyKWSError(
            f"--force {bad[0]}: not a stage of this recipe ({', '.join(recipe.stages)})"
        )
    upstream, redo = "", False
    order = [s for s in table if s in recipe.stages]
    recipe_after = order[0] if order else None
    for stage in order:
        key = content_key(stage, stage_config(recipe, stage), upstream)
        first_redone = not redo
        redo = redo or stage in force
        if not redo and _is_done(run, stage, key):
            logger.info(f"[{stage}] done already, skipped")
            _restore_final_model(run, stage)
        else:
            if first_redone and run.is_main:  # everything after a redone stage is redone too
                _invalidate_from(run, stage, stage in force)
            redo = True
            _run_stage(run, stage, table[stage], key)
        if stage == recipe_after and run.is_main:  # once the recipe and its data are valid
            write_text(run.dir / "recipe.toml", dump_toml(recipe.to_dict()))
        if not run.is_main and stage == "train":
            break  # later stages run on rank 0 only
        upstream = key
    return run


def _is_done(run: Run, stage: str, key: str) -> bool:
    return stage_is_done(run.dir, stage, key)


def _invalidate_from(run: Run, stage: str, forced: bool) -> None:
    invalidate_from(run.dir, STAGES[STAGES.index(stage) :], forced)


def _restore_final_model(run: Run, stage: str) -> None:
    """Point final.json back at the model a skipped stage left, so a stage that is redone after
    it starts from that model, not from what a later stage of an earlier run wrote."""
    marker = read_json_object(run.dir / "stages" / f"{stage}.json", "stage marker")
    if run.is_main and marker.get("final_model"):
        run.set_final_model(marker["final_model"])


def _run_stage(run: Run, stage: str, function, key: str) -> None:
    logger.info(f"[{stage}] running")
    start = time.perf_counter()
    outputs = function(run) or {}
    seconds = time.perf_counter() - start
    if run.is_main:
        marker = {"key": key, "seconds": round(seconds, 2), "outputs": to_dict(outputs)}
        final = run.dir / FINAL_MODEL_FILE
        if final.is_file():  # the model every later stage starts from
            marker["final_model"] = read_json_object(final, "final.json").get("model")
        write_json(run.dir / "stages" / f"{stage}.json", marker)
    logger.info(f"[{stage}] finished in {seconds:.1f} s")
