"""Pruning: make a trained keyword spotter smaller, and (for structured methods) faster.

`prune(model, config, data)` looks the method up in `PRUNERS` and returns a new model and a
report; the input model is not changed.

- taylor: filters with the lowest activation x gradient scores go, iteratively while
  fine-tuning; the network gets smaller (new widths).
- l1, l2, linf: channels whose filters have the lowest norm go; smaller network.
- magnitude: the smallest weights become zero (unstructured); same shape, zeros in the weights.
- gradual: the smallest weights become zero with a sparsity that rises while training
  (PolynomialDecay); same shape, zeros in the weights.

Structured methods remove channels physically (Torch-Pruning's dependency graph handles coupled
layers: BatchNorm, depthwise convs, flatten/pool -> FC, residual additions) and rebuild the
network from a config with the new widths, so a pruned checkpoint loads like any other.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.prune.config import PruneConfig
    >>> model = build_model(model_config("dscnn_s", 12, (49, 10)))
    >>> smaller, report = prune(model, PruneConfig(method="l1", amount=0.5))
    >>> smaller.config.block_filters, report["after"]["macs"] < report["before"]["macs"]
    ((32, 32, 32, 32), True)
"""

from __future__ import annotations

from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.prune.config import METHODS, PruneConfig, PruneSweepConfig, TaylorConfig
from tinykws.prune.measure import model_figures, validation_accuracy
from tinykws.prune.methods import NEEDS_DATA, PRUNERS
from tinykws.prune.retrain import retrain
from tinykws.prune.sweeping import sweep
from tinykws.prune.taylor import TaylorPrunable
from tinykws.prune.unstructured import finalize

__all__ = [
    "METHODS",
    "PRUNERS",
    "PruneConfig",
    "PruneSweepConfig",
    "TaylorConfig",
    "TaylorPrunable",
    "prune",
    "prune_without_retraining",
    "sweep",
]


def prune(model, config: PruneConfig, data=None, work_dir: str | Path | None = None):
    """Prune `model` with `config.method`, retrain when data is given, and report.

    Args:
        model: a trained tinykws model (left unchanged).
        config: a `PruneConfig`.
        data: a `tinykws.train.loop.TrainingData`; needed by taylor and gradual, and for retraining
            (`config.retrain`, when `config.retrain_enabled`) and accuracy figures.
        work_dir: where retraining writes checkpoints (resumable); a temporary folder if None.
            With `config.retrain.distill_weight` > 0 the unpruned `model` teaches the pruned one.

    Returns:
        (new model, report). The report has "method", "before" and "after" figures (params,
        nonzero_params, param_bytes, macs, and val_accuracy when data is given), the method's
        own entries, "val_accuracy_pruned" (before retraining) and "retrain" (its history).
    """
    pruned, report = prune_without_retraining(model, config, data, work_dir)
    if data is not None:
        report["val_accuracy_pruned"] = validation_accuracy(pruned, data)
        if config.retrain_enabled and config.method != "gradual":
            work = Path(work_dir) / "retrain" if work_dir is not None else None
            teacher = model if config.retrain.distill_weight > 0 else None
            report["retrain"] = retrain(pruned, data, config.retrain, work, teacher=teacher)
    finalize(pruned)
    report["after"] = _figures(pruned, data)
    return pruned, report


def prune_without_retraining(model, config: PruneConfig, data=None, work_dir=None):
    """The method alone: (pruned model, report with "method" and "before")."""
    if config.method in NEEDS_DATA and data is None:
        raise TinyKWSError(f"{config.method} pruning trains the model; give it data (--data)")
    report = {"method": config.method, "before": _figures(model, data)}
    pruned, details = PRUNERS[config.method](model, config, data, work_dir)
    return pruned, report | details


def _figures(model, data) -> dict:
    figures = model_figures(model)
    if data is not None:
        figures["val_accuracy"] = validation_accuracy(model, data)
    return figures
