"""Recipes: one TOML file that names the stages of a run and configures each.

    name = "demo"
    [data]        # DataConfig fields, plus root / cache_dir / [data.synth] / [data.near_miss]
    [frontend]    # preset = "mfcc", plus any FrontEndConfig field to override
    [model]       # preset = "dscnn_s", plus widths etc. to override
    [train]       # TrainConfig, with [train.augment]
    [evaluate]    # splits to score the final model on; models = ["all"] to compare side by side
    [train.prune] # optional: gradual magnitude pruning during training (TrainPruneConfig)
    [prune] [quantize] [export] [check] [grid]   # optional later stages, run when given

`stages = [...]` names the stages explicitly; without it a run does data, train, every stage
whose table the recipe has, evaluate and report, in pipeline order. Every table is validated:
an unknown key is an error naming the valid keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tinykws.config import check_choice, from_dict, load_toml, to_dict, unknown_key_message
from tinykws.data.speech_commands import DataConfig
from tinykws.data.synth import SynthConfig
from tinykws.errors import TinyKWSError
from tinykws.features.frontend import FrontEnd, frontend_config
from tinykws.measure.check import CheckConfig
from tinykws.models import model_config
from tinykws.prune.config import PruneConfig
from tinykws.prune.gradual import TrainPruneConfig, parse_train_prune
from tinykws.run.pipeline import STAGES
from tinykws.run.stages.evaluate import MODEL_FILES, MODEL_NAMES
from tinykws.run.stages.export import ExportStageConfig
from tinykws.run.stages.grid import GridConfig
from tinykws.run.stages.quantize import parse_table
from tinykws.run.stages.stream import StreamStageConfig
from tinykws.train.loop import TrainConfig
from tinykws.train.model_file import check_model_size


@dataclass(frozen=True)
class DataSection:
    """Where the audio comes from and how it is labelled and split.

    Attributes:
        root: a Speech Commands-layout folder; empty means the synthetic corpus.
        cache_dir: where decoded audio and features are cached (default: ~/.cache/tinykws).
        synth: synthetic-corpus settings (used when `root` is empty).
        near_miss: optional TTS corpus of near-miss words added to `_unknown_` for training.
        dataset: labelling / split settings (DataConfig: preset, unknown_fraction, ...).
    """

    root: str = ""
    cache_dir: str = ""
    synth: Any = None
    near_miss: Any = None
    dataset: Any = None


@dataclass(frozen=True)
class EvaluateConfig:
    """What the evaluate stage scores.

    Attributes:
        splits: the splits the final model is scored on (evaluate/<split>.json and
            confusion_<split>.png each).
        models: the models scored side by side on the train and validation splits and `splits`
            (evaluate/models/): "all" (every model the run produced, the default), "original"
            (the trained float model), "pruned", "quantized", or "final" (the run's final
            model). `[]` scores none of them; scoring the train split of a large dataset takes
            time.
    """

    splits: tuple[str, ...] = ("validation",)
    models: tuple[str, ...] = ("all",)

    def __post_init__(self):
        for split in self.splits:
            check_choice("evaluate.splits", split, ("train", "validation", "test"))
        for model in self.models:
            check_choice("evaluate.models", model, ("all", *MODEL_NAMES, "final"))


@dataclass(frozen=True)
class Recipe:
    """A whole run, validated."""

    name: str
    stages: tuple[str, ...]
    data: DataSection
    frontend: dict
    model: dict
    train: TrainConfig
    evaluate: EvaluateConfig
    extra: dict = field(default_factory=dict)  # later stages' tables (prune, quantize, ...)
    train_prune: TrainPruneConfig | None = None  # [train.prune]: gradual pruning while training

    def to_dict(self) -> dict:
        """Plain data for recipe.toml in the run directory (round-trips through `parse`)."""
        out = {"name": self.name, "stages": list(self.stages)}
        data = {"root": self.data.root, "cache_dir": self.data.cache_dir}
        data |= to_dict(self.data.dataset)
        for key in ("synth", "near_miss"):
            if getattr(self.data, key) is not None:
                data[key] = to_dict(getattr(self.data, key))
        out |= {"data": data, "frontend": self.frontend, "model": self.model}
        train = to_dict(self.train)
        if self.train_prune is not None:
            train["prune"] = to_dict(self.train_prune)
        out |= {"train": train, "evaluate": to_dict(self.evaluate)}
        return out | self.extra


DEFAULT_STAGES = ("data", "train", "evaluate", "report")
SECTIONS = ("name", "stages", "data", "frontend", "model", "train", "evaluate")


def parse(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate plain recipe data (a parsed TOML document) into a `Recipe`."""

    valid = set(SECTIONS) | set(STAGES)
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise TinyKWSError(unknown_key_message(unknown[0], valid, where))
    _check_shapes(raw, where)
    stages = tuple(raw.get("stages", [s for s in STAGES if s in DEFAULT_STAGES or s in raw]))
    for stage in stages:
        check_choice("stages", stage, tuple(STAGES))
    frontend, model = dict(raw.get("frontend", {})), dict(raw.get("model", {}))
    _check_frontend_and_model(frontend, model)
    _check_evaluated_models(raw.get("evaluate", {}).get("models", []), stages)
    train = dict(raw.get("train", {}))
    train_prune = train.pop("prune", None)
    return Recipe(
        name=str(raw.get("name", "run")),
        stages=stages,
        data=parse_data_section(raw.get("data", {})),
        frontend=frontend,
        model=model,
        train=from_dict(TrainConfig, train, "train"),
        evaluate=from_dict(EvaluateConfig, raw.get("evaluate", {}), "evaluate"),
        extra=_check_stage_tables({k: raw[k] for k in raw if k not in SECTIONS}),
        train_prune=None if train_prune is None else parse_train_prune(train_prune),
    )


def _check_evaluated_models(models, stages: tuple[str, ...]) -> None:
    """A model named in `[evaluate] models` needs the stage that makes it in the recipe."""
    for model in models if isinstance(models, list) else []:
        stage = MODEL_FILES.get(model, ("",))[0]
        if stage and stage not in stages:
            raise TinyKWSError(
                f"[evaluate] models names '{model}', but the recipe has no '{stage}' stage; "
                f"add [{stage}] or remove '{model}'"
            )


def _check_shapes(raw: dict[str, Any], where: str) -> None:
    """Every section is a table, `stages` a list of names and `name` a string."""
    for key, value in raw.items():
        if key not in ("name", "stages") and not isinstance(value, dict):
            raise TinyKWSError(f"{where}: [{key}] must be a table, got {value!r:.60}")
    if not isinstance(raw.get("stages", []), list):
        raise TinyKWSError(f"{where}: stages must be a list of stage names")
    if not isinstance(raw.get("name", ""), str):
        raise TinyKWSError(f"{where}: name must be a string")


def _check_stage_tables(extra: dict[str, Any]) -> dict[str, Any]:
    """Validate the tables of the compression and deployment stages before anything runs."""

    parsers = {
        "prune": lambda t: from_dict(PruneConfig, t, "prune"),
        "quantize": parse_table,
        "export": lambda t: from_dict(ExportStageConfig, t, "export"),
        "check": lambda t: from_dict(CheckConfig, t, "check"),
        "stream": StreamStageConfig.from_dict,
        "grid": lambda t: from_dict(GridConfig, t, "grid"),
    }
    for name, table in extra.items():
        if not isinstance(table, dict):
            raise TinyKWSError(f"[{name}] must be a table")
        parsers[name](table)
    return extra


def parse_data_section(raw: dict[str, Any]) -> DataSection:
    """The [data] table: DataConfig fields plus root, cache_dir, [synth] and [near_miss]."""

    raw = dict(raw)
    own = {f.name for f in fields(DataSection)} - {"dataset"}
    section = {k: raw.pop(k) for k in list(raw) if k in own}
    valid = own | {f.name for f in fields(DataConfig)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise TinyKWSError(unknown_key_message(unknown[0], valid, "data"))
    for key in ("synth", "near_miss"):
        if key in section:
            section[key] = from_dict(SynthConfig, section[key], f"data.{key}")
    return DataSection(dataset=from_dict(DataConfig, raw, "data"), **section)


def _check_frontend_and_model(frontend: dict, model: dict) -> None:
    for section, table in (("frontend", frontend), ("model", model)):
        for key in ("preset", "family"):
            if key in table and not isinstance(table[key], str):
                raise TinyKWSError(f"[{section}] {key} must be a name, got {table[key]!r:.40}")
    for key, source in (("n_classes", "the labels"), ("input_shape", "the front end")):
        if key in model:  # it would be overridden, silently
            raise TinyKWSError(f"[model] {key} is set by {source}; remove it from the recipe")

    shape = FrontEnd(frontend_config(frontend)).output_shape
    check_model_size(model_config(model, n_classes=2, input_shape=shape), "[model]")


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    return parse(load_toml(path), where=str(path))
