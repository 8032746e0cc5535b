"""Training data for pruning a model file: the folder's train and validation splits, labelled,
split and featurised the way the model's metadata says it was trained."""

from __future__ import annotations

import os

import numpy as np

from tinykws.errors import TinyKWSError


def training_data_for(meta: dict, root: str | os.PathLike, cache_dir=None):
    """A `TrainingData` for the model described by `meta` (a checkpoint's metadata).

    Uses the model's own data config (labels, unknown/silence handling, split), front end and
    feature normalisation, so accuracy figures match those of training.

    Raises:
        TinyKWSError: a missing or wrong folder, or labels that differ from the model's.
    """
    from tinykws.config import from_dict
    from tinykws.data import speech_commands as sc
    from tinykws.features import cached_features
    from tinykws.predictor import frontend, normalization
    from tinykws.train import TrainingData

    dataset = sc.load_dataset(root, from_dict(sc.DataConfig, meta.get("data", {}), "data"))
    if list(dataset.labels) != list(meta["labels"]):
        raise TinyKWSError(
            f"{root}: its labels {list(dataset.labels)} differ from the model's "
            f"{list(meta['labels'])}; use the folder the model was trained on"
        )
    fe = frontend(meta)
    arrays = {}
    for split in ("train", "validation"):
        clips = dataset.clips(split)
        if not clips:
            raise TinyKWSError(f"{root}: the '{split}' split is empty; pruning needs both splits")
        waves = sc.load_waveforms(clips, cache_dir=cache_dir)
        feats = cached_features(cache_dir, fe, waves, sc.waveforms_key(clips))
        labels = np.array([dataset.labels.index(c.label) for c in clips], dtype=np.int64)
        arrays[split] = (waves, feats, labels)
    noises = sc.load_noises(dataset)
    return TrainingData(
        frontend=fe,
        normalization=normalization(meta),
        train_waves=arrays["train"][0],
        train_features=arrays["train"][1],
        train_labels=arrays["train"][2],
        val_features=arrays["validation"][1],
        val_labels=arrays["validation"][2],
        noise=np.concatenate(noises) if noises else np.zeros(0, np.float32),
        class_weights=dataset.class_weights("train"),
    )
