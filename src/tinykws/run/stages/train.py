"""The train stage of a recipe run: the recipe's model trained on the run's data.

With `[train.prune]` the model is pruned gradually while it trains
(`tinykws.prune.gradual.fit_pruned`): the weights after the last epoch, sparse, become
train/best.safetensors and the summary reports their sparsity.
"""

from __future__ import annotations

import torch

from tinykws.log import logger
from tinykws.models import build_model, count_macs, count_params, model_config
from tinykws.plots import plot_history
from tinykws.prune.gradual import fit_pruned
from tinykws.run.stages.data import load_run_dataset, model_meta, run_frontend, training_data
from tinykws.train.loop import fit


def stage_train(run) -> dict:
    """Train the recipe's model; best weights become train/best.safetensors (the final model)."""
    data = training_data(run)
    labels = load_run_dataset(run).labels
    config = model_config(run.recipe.model, len(labels), run_frontend(run).output_shape)
    torch.manual_seed(run.recipe.train.seed)  # the initial weights depend on the seed alone
    model = build_model(config)
    meta = model_meta(run, config, data.normalization)
    out = run.stage_dir("train")
    prune = getattr(run.recipe, "train_prune", None)
    pruning = None
    if prune is None:
        history = fit(model, data, run.recipe.train, out, meta)
    else:
        history, pruning = fit_pruned(model, data, run.recipe.train, prune, out, meta)
    if not run.is_main:
        return {}
    plot_history(history, out / "curves.png")
    best = history["best_epoch"] or len(history["val_accuracy"])
    if pruning is not None:  # the last epoch's weights are kept: the sparsest
        best = len(history["val_accuracy"])
    metrics = {
        "params": count_params(model),
        "macs": count_macs(model),
        "best_epoch": best,
        "val_accuracy": history["val_accuracy"][best - 1],
        "seconds": round(history.get("seconds", 0.0), 1),
    }
    if pruning is not None:
        metrics["sparsity"] = round(pruning["sparsity"]["total"], 4)
        metrics["prune_schedule"] = pruning["schedule"]
        logger.info(
            f"train: pruned gradually to {100 * metrics['sparsity']:.1f}% zero weights; "
            f"validation accuracy {100 * metrics['val_accuracy']:.2f}% after the last epoch"
        )
    run.update_metrics("train", metrics)
    run.set_final_model("train/best.safetensors")
    return metrics
