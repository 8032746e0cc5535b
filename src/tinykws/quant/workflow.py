"""Quantize, lower, score every backend, and write the results: what the recipe stage and
`tinykws quantize` both do.

Everything is computed first and written last, so a refused layer, an empty calibration set or
a bad option leaves the output folder as it was. The folder then holds

    model.safetensors           the quantized checkpoint (backends torch / fakequant / int)
    model.json, model.npz       the integer graph (ptq and qat with 8-bit activations)
    summary.json                accuracies per backend, agreement, sizes, what quantization did
    learnables.png, parameter_memory.png   original [/ pruned] / quantized bar charts
    sweep.json, sweep.csv, sweep.png       when a sweep was asked for
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.checkpoint import load_checkpoint
from tinykws.config import to_dict
from tinykws.errors import TinyKWSError
from tinykws.io import write_json
from tinykws.models.trace import trace_steps
from tinykws.plots import plot_bars
from tinykws.quant import quantize
from tinykws.quant.data import quant_data_for
from tinykws.quant.files import save_quantized
from tinykws.quant.qat import as_trained
from tinykws.quant.scoring import lower_if_possible, score_backends, source_accuracy
from tinykws.quant.sizes import float_memory, quantized_memory
from tinykws.quant.sweep import run_sweep, write_sweep
from tinykws.train.evaluate import load_eval_data
from tinykws.train.model_file import load_float_model, resolve_model_path

MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"


@dataclass
class QuantJob:
    """One quantization to run and write.

    Attributes:
        model: the float PyTorch model (possibly pruned).
        meta: its checkpoint metadata (labels, front end, normalisation, model config, data).
        config: a `QuantConfig`.
        data: `QuantData` (calibration features, normalisation, training data for QAT).
        val_features, val_labels: the validation split, un-normalised features and class ids.
        out_dir: where to write.
        references: float parameter memory of earlier models by name ("original", "pruned").
        sweep: an optional `QuantSweepConfig`.
        name: the integer graph's name.
    """

    model: Any
    meta: dict
    config: Any
    data: Any
    val_features: np.ndarray
    val_labels: np.ndarray
    out_dir: Path
    references: dict
    sweep: Any = None
    name: str = "model"


def run_job(job: QuantJob) -> dict:
    """Quantize, lower, score, then write everything into `job.out_dir`; returns the summary."""
    job.config = replace(job.config, qat=as_trained(job.config.qat, job.meta))
    quantized = quantize(job.model, job.config, job.data)
    graph = lower_if_possible(quantized)
    if graph is not None:
        graph.name = job.name
    scores = score_backends(
        quantized, graph, job.val_features, job.val_labels, job.data.normalization
    )
    scores["source_accuracy"] = source_accuracy(
        job.model, job.val_features, job.val_labels, job.data.normalization
    )
    sizes = {name: memory.to_dict() for name, memory in job.references.items()}
    sizes.setdefault("original", float_memory(job.model).to_dict())
    sizes["quantized"] = quantized_memory(quantized).to_dict()
    rows = None
    if job.sweep is not None:
        rows = run_sweep(
            job.model, job.config, job.data, job.val_features, job.val_labels, job.sweep
        )
    summary = _summary(job, quantized, graph, scores, sizes)
    _write(job, quantized, graph, summary, rows)
    return summary


def _summary(job: QuantJob, quantized, graph, scores: dict, sizes: dict) -> dict:
    original, final = sizes["original"]["total_bytes"], sizes["quantized"]["total_bytes"]
    return {
        "method": job.config.method,
        "config": to_dict(job.config),
        "validation": scores,
        "sizes": sizes,
        "compression_ratio": original / max(final, 1),
        "history": quantized.history,
        "files": {"model": MODEL_FILE, "graph": "model.json" if graph is not None else None},
    }


def _write(job: QuantJob, quantized, graph, summary: dict, rows) -> None:
    out = Path(job.out_dir)
    save_quantized(out / MODEL_FILE, quantized, job.meta, graph)
    plot_sizes(summary["sizes"], out)
    if rows is not None:
        write_sweep(rows, summary["validation"].get("source_accuracy"), out)
        summary["sweep"] = "sweep.json"
    write_json(out / SUMMARY_FILE, summary)


def plot_sizes(sizes: dict, out_dir: Path) -> None:
    """learnables.png and parameter_memory.png: a bar per model (original / pruned / quantized)."""
    plot_bars(
        {k: v["learnables"] for k, v in sizes.items()},
        "learnables",
        "learnables",
        Path(out_dir) / "learnables.png",
    )
    plot_bars(
        {k: v["total_bytes"] for k, v in sizes.items()},
        "bytes",
        "parameter memory",
        Path(out_dir) / "parameter_memory.png",
    )


def metrics_of(summary: dict) -> dict:
    """The few figures a run's metrics.json keeps for the quantize stage."""
    validation, config = summary["validation"], summary["config"]
    quantized = summary["sizes"]["quantized"]
    accuracy = validation["accuracy"]
    final = accuracy.get("int", accuracy.get("fakequant"))
    source = validation.get("source_accuracy")
    return {
        "method": summary["method"],
        "weight_bits": config["weight_bits"],
        "activation_bits": config["activation_bits"],
        "source_accuracy": source,
        "accuracy_drop": None if source is None or final is None else source - final,
        "float_accuracy": validation["accuracy"].get("torch"),
        "fakequant_accuracy": validation["accuracy"].get("fakequant"),
        "int_accuracy": validation["accuracy"].get("int"),
        "agreement_fakequant_int": validation["agreement"].get("fakequant_int"),
        "learnables": quantized["learnables"],
        "parameter_bytes": quantized["total_bytes"],
        "ideal_parameter_bytes": quantized.get("ideal_weight_bytes", quantized["weight_bytes"])
        + quantized["bias_bytes"],
        "weight_storage": quantized.get("storage_note"),
        "compression_ratio": summary["compression_ratio"],
    }


def quantize_file(model_path, root, out_dir, config, sweep=None, cache_dir=None) -> dict:
    """Quantize a float model file (or run directory) with data from `root` into `out_dir`."""
    path = resolve_model_path(model_path)
    if path.suffix != ".safetensors" or "quant" in load_checkpoint(path)[1]:
        raise TinyKWSError(
            f"{path}: quantize needs a float checkpoint (.safetensors) or a run "
            f"directory whose final model is float"
        )
    model, meta = load_float_model(path)
    if config.method != "dynamic":
        trace_steps(model)  # a layer without an integer form fails before data loads
    need_training = config.method == "qat" or (sweep is not None and "qat" in sweep.methods)
    data = quant_data_for(meta, root, config, need_training, cache_dir)
    evaluation = load_eval_data(meta, root, "validation", cache_dir)
    labels = np.array([list(meta["labels"]).index(c.label) for c in evaluation.clips])
    job = QuantJob(
        model,
        meta,
        config,
        data,
        evaluation.features,
        labels,
        Path(out_dir),
        {},
        sweep,
        path.stem,
    )
    return run_job(job)
