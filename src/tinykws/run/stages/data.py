"""The data stage of a recipe run, and what later stages read from the run's data: the dataset,
each split's waveforms and features, the front end, the training data and a checkpoint's metadata.
Each stage takes a `pipeline.Run`, writes into its own folder of the run directory and returns a
small dict recorded in its marker."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinykws.cache import content_key
from tinykws.config import to_dict
from tinykws.data.speech_commands import load_dataset, load_noises, load_waveforms, waveforms_key
from tinykws.data.synth import SynthConfig, ensure_corpus
from tinykws.features.batch import cached_features
from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.models import config_to_dict
from tinykws.train.loop import TrainingData


def dataset_root(run) -> Path:
    """The audio folder: the recipe's root, or the synthetic corpus (generated on first use)."""
    section = run.recipe.data
    if section.root:
        return Path(section.root)
    synth = section.synth or SynthConfig()
    return ensure_corpus(run.cache_dir / f"synth-{_key(synth)}", synth)


def near_miss_root(run) -> Path | None:
    """A TTS corpus of near-miss words mixed into `_unknown_` (when the recipe asks for one)."""
    near_miss = run.recipe.data.near_miss
    if near_miss is None:
        return None
    return ensure_corpus(run.cache_dir / f"near-miss-{_key(near_miss)}", near_miss)


def load_run_dataset(run):
    """The run's `Dataset` (cached on the run object)."""
    if "dataset" not in run.cache:
        config = run.recipe.data.dataset
        extra = near_miss_root(run)
        if extra is not None:
            config = replace(config, extra_unknown_roots=(*config.extra_unknown_roots, str(extra)))
        run.cache["dataset"] = load_dataset(dataset_root(run), config)
    return run.cache["dataset"]


def stage_data(run) -> dict:
    """Resolve, label and split the data; write data/summary.json."""
    dataset = load_run_dataset(run)
    summary = {
        "root": str(dataset.root),
        "labels": list(dataset.labels),
        "counts": {s: dataset.class_counts(s) for s in dataset.splits},
        "class_weights": dataset.class_weights("train").tolist(),
        "config": to_dict(dataset.config),
    }
    write_json(run.stage_dir("data") / "summary.json", summary)
    total = sum(len(dataset.clips(s)) for s in dataset.splits)
    logger.info(f"data: {total} clips, {len(dataset.labels)} classes from {dataset.root}")
    for line in scarce_classes(summary["counts"].get("train", {})):
        logger.warning(f"data: {line}")
    return {"clips": total, "classes": len(dataset.labels)}


# A class with fewer training clips than this share of the median class can hardly be learnt
# (and a class-weighted loss multiplies its few clips by the inverse share).
SCARCE_SHARE = 0.1


def scarce_classes(counts: dict[str, int]) -> list[str]:
    """One line per class with under `SCARCE_SHARE` of the median class's training clips.

    Example:
        >>> for line in scarce_classes({"yes": 700, "no": 690, "on": 14, "off": 0}):
        ...     print(line)  # doctest: +NORMALIZE_WHITESPACE
        on: 14 training clips against 352 for the median class: it can hardly be learnt
            (a class-weighted loss weights each of its clips 25x)
        off: no training clips: the model cannot learn it
    """
    if not counts:
        return []
    median = statistics.median(counts.values())
    return [
        f"{label}: no training clips: the model cannot learn it"
        if n == 0
        else f"{label}: {n} training clips against {median:g} for the median class: it can "
        f"hardly be learnt (a class-weighted loss weights each of its clips {median / n:.0f}x)"
        for label, n in counts.items()
        if n < SCARCE_SHARE * median
    ]


def split_arrays(run, split: str):
    """(clips, int16 waveforms, float32 features, int64 labels) of one split, cached."""
    dataset = load_run_dataset(run)
    clips = dataset.clips(split)
    waves = load_waveforms(clips, cache_dir=run.cache_dir)
    feats = cached_features(run.cache_dir, run_frontend(run), waves, waveforms_key(clips))
    labels = np.array([dataset.labels.index(c.label) for c in clips], dtype=np.int64)
    return clips, waves, feats, labels


def run_frontend(run):
    """The recipe's `FrontEnd`."""
    if "frontend" not in run.cache:
        run.cache["frontend"] = FrontEnd(frontend_config(run.recipe.frontend))
    return run.cache["frontend"]


def training_data(run):
    """Everything `train.fit` reads, built from the run's dataset."""
    dataset = load_run_dataset(run)
    _, train_waves, train_feats, train_labels = split_arrays(run, "train")
    _, _, val_feats, val_labels = split_arrays(run, "validation")
    noises = load_noises(dataset)
    return TrainingData(
        frontend=run_frontend(run),
        normalization=Normalization.fit(np.asarray(train_feats)),
        train_waves=train_waves,
        train_features=train_feats,
        train_labels=train_labels,
        val_features=val_feats,
        val_labels=val_labels,
        noise=np.concatenate(noises) if noises else np.zeros(0, np.float32),
        class_weights=dataset.class_weights("train"),
        labels=tuple(dataset.labels),
    )


def model_meta(run, model_config, normalization) -> dict:
    """What a checkpoint needs to be used alone: architecture, labels, front end, normalisation."""
    dataset = load_run_dataset(run)
    return {
        "model": config_to_dict(model_config),
        "labels": list(dataset.labels),
        "frontend": to_dict(run_frontend(run).config),
        "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)},
        "data": to_dict(dataset.config),
        "recipe": run.recipe.name,
    }


def _key(config) -> str:

    return content_key(config)
