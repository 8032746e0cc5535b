"""A quantized model scored on every backend: logits of the float, fake-quant and integer
models, their accuracies and agreement.

Backends of a `QuantizedModel`: "torch" runs the float weights it was quantized from (for QAT,
the fine-tuned ones), "fakequant" the fake-quant PyTorch model, "int" the integer graph in the
numpy interpreter (`tinykws.ir.interpret`, the specification).
"""

from __future__ import annotations

import numpy as np
import torch

from tinykws.ir import interpret
from tinykws.quant.data import feature_batches
from tinykws.quant.lower import lower
from tinykws.train.evaluate import top1_accuracy
from tinykws.train.loop import predict_logits


def lower_if_possible(quantized):
    """The Graph of `quantized`, or None for models that do not lower (dynamic, < 8-bit
    activations)."""
    return lower(quantized) if quantized.lowerable else None


def score_backends(quantized, graph, features, labels, normalization) -> dict:
    """Accuracy of the float, fake-quant and integer models, their top-1 agreement, and how far
    the integer logits are from the fake-quant ones in output LSBs."""
    if len(labels) == 0:
        return {"n": 0, "accuracy": {}, "agreement": {}}
    backends = ("torch", "fakequant", "int") if graph is not None else ("torch", "fakequant")
    logits = {b: backend_logits(quantized, graph, features, normalization, b) for b in backends}
    predicted = {b: v.argmax(axis=1) for b, v in logits.items()}
    result = {
        "n": int(len(labels)),
        "accuracy": {b: top1_accuracy(v, labels) for b, v in logits.items()},
        "agreement": {
            f"{a}_{b}": _mean(predicted[a] == predicted[b])
            for a, b in (("torch", "fakequant"), ("fakequant", "int"), ("torch", "int"))
            if a in predicted and b in predicted
        },
    }
    if graph is not None:
        scale, _ = quantized.module.qparams(quantized.module.trace.output)
        lsb = np.abs(logits["int"] - logits["fakequant"]) / np.float32(scale)
        result["int_vs_fakequant_lsb"] = {"max": float(lsb.max()), "mean": float(lsb.mean())}
    return result


def backend_logits(quantized, graph, features, normalization, backend: str) -> np.ndarray:
    """float32 (N, classes) logits of un-normalised features (N, frames, bins) by `backend`."""
    if backend == "int":
        if graph is None:
            graph = lower(quantized)
        return graph_logits(graph, features, normalization)
    module = quantized.module
    mode = module.mode
    module.set_mode("float" if backend == "torch" else "fakequant")
    try:
        return predict_logits(module, features, normalization, torch.device("cpu")).numpy()
    finally:
        module.set_mode(mode)


def graph_logits(graph, features, normalization, batch_size: int = 256) -> np.ndarray:
    """Run the integer graph on un-normalised features; the normalisation is the same float32
    computation as the PyTorch path, so both see identical inputs."""
    out = [np.zeros((0, graph.tensor(graph.outputs[0]).shape[-1]), np.float32)]
    for batch in feature_batches(features, normalization, batch_size):
        x = batch.numpy().transpose(0, 2, 3, 1)  # (B, 1, T, F) -> NHWC (B, T, F, 1)
        out.append(interpret(graph, x)[graph.outputs[0]])
    return np.concatenate(out)


def source_accuracy(model, features, labels, normalization) -> float | None:
    """Validation accuracy of the float model that was quantized (for QAT, the "torch" backend
    of the result runs the fine-tuned float weights instead)."""
    if len(labels) == 0:
        return None
    logits = predict_logits(model, features, normalization, torch.device("cpu"))
    return top1_accuracy(logits, labels)


def _mean(values: np.ndarray) -> float:
    return float(values.mean())
