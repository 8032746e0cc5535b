"""Size and speed figures of a model before and after pruning.

Parameter memory is float32: 4 bytes per parameter. Latency is the median wall time of a
batch-1 forward pass on the CPU, measured in this process; compare latencies measured in the
same run only (the machine may be shared).

Example:
    >>> from tinykws.models import build_model, model_config
    >>> figures = model_figures(build_model(model_config("tinyconv", 4, (49, 40))))
    >>> figures["params"], figures["param_bytes"]
    (16652, 66608)
"""

from __future__ import annotations

import torch
from torch import nn

from tinykws.models import count_macs, count_params
from tinykws.prune.unstructured import effective_weight, weight_layers
from tinykws.timing import median_ms
from tinykws.train.evaluate import top1_accuracy
from tinykws.train.loop import predict_logits

BYTES_PER_PARAM = 4  # float32


def model_figures(model: nn.Module) -> dict:
    """{"params", "nonzero_params", "param_bytes", "macs"} of `model` (masks applied)."""
    params = count_params(model)
    zeros = sum(int((effective_weight(m) == 0).sum()) for m in weight_layers(model).values())
    return {
        "params": params,
        "nonzero_params": params - zeros,
        "param_bytes": params * BYTES_PER_PARAM,
        "macs": count_macs(model),
    }


@torch.inference_mode()
def torch_latency_ms(model: nn.Module, runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of a batch-1 forward pass on the CPU (eval mode)."""
    was_training = model.training
    device = next(model.parameters()).device
    model.cpu().eval()
    inputs = torch.randn(1, 1, *model.config.input_shape)
    milliseconds = median_ms(model, inputs, runs=runs, warmup=warmup)
    model.to(device).train(was_training)
    return milliseconds


def validation_accuracy(model: nn.Module, data) -> float:
    """Accuracy on `data.val_features` / `data.val_labels` (a `TrainingData`); NaN if empty."""
    if len(data.val_labels) == 0:
        return float("nan")
    was_training = model.training
    device = next(model.parameters()).device
    logits = predict_logits(model, data.val_features, data.normalization, device)
    model.train(was_training)
    return top1_accuracy(logits, data.val_labels)
