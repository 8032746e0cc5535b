"""Helpers shared by several test modules (not fixtures: plain functions)."""

from __future__ import annotations

import numpy as np


def tone_training_data(root, frontend: str = "mfcc"):
    """`TrainingData` (train and validation splits) of the tone corpus at `root`."""
    from tinykws.data.speech_commands import DataConfig, load_dataset, load_noises, load_waveforms
    from tinykws.features.batch import compute_features
    from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
    from tinykws.train.loop import TrainingData

    dataset = load_dataset(root, DataConfig(preset="12", unknown_fraction=1.0))
    fe = FrontEnd(frontend_config(frontend))
    arrays = {}
    for split in ("train", "validation"):
        waves = load_waveforms(dataset.clips(split))
        arrays[split] = (waves, compute_features(waves, fe), dataset.label_indices(split))
    return TrainingData(
        frontend=fe,
        normalization=Normalization.fit(arrays["train"][1]),
        train_waves=arrays["train"][0],
        train_features=arrays["train"][1],
        train_labels=arrays["train"][2],
        val_features=arrays["validation"][1],
        val_labels=arrays["validation"][2],
        noise=np.concatenate(load_noises(dataset)),
        class_weights=dataset.class_weights("train"),
    )


def tone_run(root, base, frontend: str, model: dict, train: dict):
    """A run directory with the data and train stages done on the tone corpus at `root`
    (one torch thread while training); returns (recipe, run directory)."""
    import torch

    from tinykws.run.pipeline import run_recipe
    from tinykws.run.recipe import parse

    data = {"root": str(root), "cache_dir": str(base / "cache"), "preset": "12"}
    raw = {
        "name": "tones",
        "stages": ["data", "train"],
        "data": data | {"unknown_fraction": 1.0},
        "frontend": {"preset": frontend},
        "model": model,
        "train": train,
    }
    recipe, threads = parse(raw), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_recipe(recipe, base / "run")
    finally:
        torch.set_num_threads(threads)
    return recipe, base / "run"
