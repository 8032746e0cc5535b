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

import statistics
import time

import numpy as np
import torch
from torch import nn

BYTES_PER_PARAM = 4  # float32


def model_figures(model: nn.Module) -> dict:
    """{"params", "nonzero_params", "param_bytes", "macs"} of `model` (masks applied)."""
    from tinykws.models import count_macs, count_params
    from tinykws.prune.unstructured import effective_weight, weight_layers

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
    for _ in range(warmup):
        model(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(inputs)
        times.append(time.perf_counter() - start)
    model.to(device).train(was_training)
    return 1000.0 * statistics.median(times)


def validation_accuracy(model: nn.Module, data) -> float:
    """Accuracy on `data.val_features` / `data.val_labels` (a `TrainingData`); NaN if empty."""
    from tinykws.train.loop import predict_logits

    if len(data.val_labels) == 0:
        return float("nan")
    was_training = model.training
    device = next(model.parameters()).device
    logits = predict_logits(model, data.val_features, data.normalization, device)
    model.train(was_training)
    return float((logits.argmax(1).numpy() == np.asarray(data.val_labels)).mean())
