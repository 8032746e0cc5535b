"""The core stages of a run: data, train, evaluate, report. Each takes a `pipeline.Run`, writes
into its own folder of the run directory and returns a small dict recorded in its marker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tinykws.config import to_dict
from tinykws.log import logger


def dataset_root(run) -> Path:
    """The audio folder: the recipe's root, or the synthetic corpus (generated on first use)."""
    from tinykws.data.synth import SynthConfig, ensure_corpus

    section = run.recipe.data
    if section.root:
        return Path(section.root)
    synth = section.synth or SynthConfig()
    return ensure_corpus(run.cache_dir / f"synth-{_key(synth)}", synth)


def near_miss_root(run) -> Path | None:
    """A TTS corpus of near-miss words mixed into `_unknown_` (when the recipe asks for one)."""
    from tinykws.data.synth import ensure_corpus

    near_miss = run.recipe.data.near_miss
    if near_miss is None:
        return None
    return ensure_corpus(run.cache_dir / f"near-miss-{_key(near_miss)}", near_miss)


def load_run_dataset(run):
    """The run's `Dataset` (cached on the run object)."""
    from tinykws.data.speech_commands import load_dataset

    if "dataset" not in run.cache:
        config = run.recipe.data.dataset
        extra = near_miss_root(run)
        if extra is not None:
            config = replace(config, extra_unknown_roots=(*config.extra_unknown_roots, str(extra)))
        run.cache["dataset"] = load_dataset(dataset_root(run), config)
    return run.cache["dataset"]


def stage_data(run) -> dict:
    """Resolve, label and split the data; write data/summary.json."""
    from tinykws.io import write_json

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
    return {"clips": total, "classes": len(dataset.labels)}


def split_arrays(run, split: str):
    """(clips, int16 waveforms, float32 features, int64 labels) of one split, cached."""
    from tinykws.data.speech_commands import load_waveforms, waveforms_key
    from tinykws.features.frontend import cached_features

    dataset = load_run_dataset(run)
    clips = dataset.clips(split)
    waves = load_waveforms(clips, cache_dir=run.cache_dir)
    feats = cached_features(run.cache_dir, run_frontend(run), waves, waveforms_key(clips))
    labels = np.array([dataset.labels.index(c.label) for c in clips], dtype=np.int64)
    return clips, waves, feats, labels


def run_frontend(run):
    """The recipe's `FrontEnd`."""
    from tinykws.features.frontend import FrontEnd, frontend_config

    if "frontend" not in run.cache:
        run.cache["frontend"] = FrontEnd(frontend_config(run.recipe.frontend))
    return run.cache["frontend"]


def training_data(run):
    """Everything `train.fit` reads, built from the run's dataset."""
    from tinykws.data.speech_commands import load_noises
    from tinykws.features.frontend import Normalization
    from tinykws.train.loop import TrainingData

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
    from tinykws.models import config_to_dict

    dataset = load_run_dataset(run)
    return {
        "model": config_to_dict(model_config),
        "labels": list(dataset.labels),
        "frontend": to_dict(run_frontend(run).config),
        "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)},
        "data": to_dict(dataset.config),
        "recipe": run.recipe.name,
    }


def stage_train(run) -> dict:
    """Train the recipe's model; best weights become train/best.safetensors (the final model)."""
    import torch

    from tinykws.models import build_model, count_macs, count_params, model_config
    from tinykws.plots import plot_history
    from tinykws.train.loop import fit

    data = training_data(run)
    labels = load_run_dataset(run).labels
    config = model_config(run.recipe.model, len(labels), run_frontend(run).output_shape)
    torch.manual_seed(run.recipe.train.seed)  # the initial weights depend on the seed alone
    model = build_model(config)
    meta = model_meta(run, config, data.normalization)
    out = run.stage_dir("train")
    history = fit(model, data, run.recipe.train, out, meta)
    if not run.is_main:
        return {}
    plot_history(history, out / "curves.png")
    best = history["best_epoch"] or len(history["val_accuracy"])
    metrics = {
        "params": count_params(model),
        "macs": count_macs(model),
        "best_epoch": best,
        "val_accuracy": history["val_accuracy"][best - 1],
        "seconds": round(history.get("seconds", 0.0), 1),
    }
    run.update_metrics("train", metrics)
    run.set_final_model("train/best.safetensors")
    return metrics


def stage_evaluate(run) -> dict:
    """Score the run's final model on each split of `[evaluate] splits`."""
    from tinykws.io import write_json
    from tinykws.measure.predictors import load_predictor
    from tinykws.plots import plot_confusion
    from tinykws.train.evaluate import EvalData, evaluate

    predictor = load_predictor(run.dir)
    dataset = load_run_dataset(run)
    out, summary = run.stage_dir("evaluate"), {}
    for split in run.recipe.evaluate.splits:
        if not dataset.clips(split):
            logger.warning(f"evaluate: the '{split}' split is empty, skipped")
            continue
        clips, _, feats, _ = split_arrays(run, split)
        result = evaluate(predictor, EvalData(clips=clips, features=feats, split=split))
        write_json(out / f"{split}.json", result)
        plot_confusion(result, out / f"confusion_{split}.png")
        fa = result["false_accepts"]["overall"]
        summary[split] = {"accuracy": result["accuracy"], "n": result["n"], "false_accept": fa}
        logger.info(f"evaluate: {split} accuracy {result['accuracy']:.4f} on {result['n']} clips")
    run.update_metrics("evaluate", summary)
    return summary


def stage_report(run) -> dict:
    """Write report.html from what the other stages left in the run directory."""
    from tinykws.report.html import write_report

    path = write_report(run.dir)
    logger.info(f"report: {path}")
    return {"report": str(path.name)}


def _key(config) -> str:
    from tinykws.cache import content_key

    return content_key(config)
