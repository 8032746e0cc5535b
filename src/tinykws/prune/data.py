"""Training data for pruning a model file: the folder's train and validation splits, labelled,
split and featurised the way the model's metadata says it was trained."""

from __future__ import annotations

import os

from tinykws.train.loop import load_training_data
from tinykws.train.model_file import frontend, model_dataset, normalization


def training_data_for(meta: dict, root: str | os.PathLike, cache_dir=None):
    """A `TrainingData` for the model described by `meta` (a checkpoint's metadata).

    Uses the model's own data config (labels, unknown/silence handling, split), front end and
    feature normalisation, so accuracy figures match those of training.

    Raises:
        TinyKWSError: a missing or wrong folder, or labels that differ from the model's.
    """
    dataset = model_dataset(meta, root)
    return load_training_data(dataset, frontend(meta), normalization(meta), cache_dir)
