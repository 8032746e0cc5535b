"""Retraining after pruning keeps the epoch its monitor ranks best, and the Taylor mini-batch
size and the monitor are set from the command line and the recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prune_helpers import one_thread, quick_train_config, tiny_model, tone_data  # noqa: F401

from tinykws.config import from_dict
from tinykws.prune.config import PruneConfig
from tinykws.prune.retrain import retrain


def test_taylor_batch_size_and_monitor_reach_the_config():
    from tinykws.cli import build_parser
    from tinykws.cli.prune import prune_config

    line = "prune m --method taylor --out o --taylor-batch-size 24 --monitor val_loss"
    cfg = prune_config(build_parser().parse_args(line.split()), False, {})
    assert (cfg.taylor.batch_size, cfg.retrain.monitor) == (24, "val_loss")
    defaults = prune_config(build_parser().parse_args(line.split()[:6]), False, {})
    assert (defaults.taylor.batch_size, defaults.retrain.monitor) == (128, "val_accuracy")
    table = {"taylor": {"batch_size": 24}, "retrain": {"monitor": "val_loss"}}
    recipe = from_dict(PruneConfig, table, "prune")
    assert (recipe.taylor.batch_size, recipe.retrain.monitor) == (24, "val_loss")
    assert PruneConfig().retrain.monitor == "val_loss"  # the MATLAB study's retraining


def _validation_loss(model, data) -> float:
    from tinykws.train.loop import predict_logits

    logits = predict_logits(model, data.val_features, data.normalization, torch.device("cpu"))
    target = torch.from_numpy(np.asarray(data.val_labels))
    weights = torch.as_tensor(data.class_weights, dtype=torch.float32)
    return torch.nn.functional.cross_entropy(logits, target, weight=weights).item()


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_retraining_keeps_the_epoch_its_monitor_ranks_best(tone_corpus, tmp_path, monitor):
    """A high learning rate makes the validation loss go up and down; the model returned is
    the one of the epoch with the lowest loss (or highest accuracy), not the last one."""
    from dataclasses import replace

    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    cfg = replace(quick_train_config(epochs=10, lr=5e-2), monitor=monitor, schedule="constant")
    history = retrain(model, data, cfg, tmp_path / monitor)
    losses, accuracies = history["val_loss"], history["val_accuracy"]
    assert history["best_epoch"] < len(losses)  # the last epoch is worse: a real choice
    if monitor == "val_loss":
        assert history["best_epoch"] == int(np.argmin(losses)) + 1
    else:
        assert history["best_epoch"] == int(np.argmax(accuracies)) + 1
    best = history["best_epoch"] - 1
    assert _validation_loss(model.eval(), data) == pytest.approx(losses[best], rel=1e-5)
