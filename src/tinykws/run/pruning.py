"""One prune job, shared by `tinykws prune` and the recipe's prune stage: prune a float model,
then write the pruned checkpoint, the prune report (JSON) and the plots that apply.

The two callers differ only in where the files go (`PruneJob`'s paths) and in what the stage
adds: the bar charts of learnables and parameter memory, the norm sweep, and the source path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.checkpoint import save_checkpoint
from tinykws.config import labelled_stem
from tinykws.export.c.mcu import can_emulate
from tinykws.io import write_json
from tinykws.measure.metrics import (
    CORTEX_M,
    MCU_CLOCK_HZ,
    cortex_m_estimates,
    mcu_time,
    measure_mcu,
)
from tinykws.measure.model_file import LoadedModel
from tinykws.models import config_to_dict, count_macs
from tinykws.plots import plot_bars
from tinykws.prune import prune
from tinykws.prune.sweeping import sweep
from tinykws.prune.taylor import plot_taylor_progress
from tinykws.quant import QuantConfig, QuantData
from tinykws.quant.lower import lower
from tinykws.quant.ptq import quantize_ptq
from tinykws.train.model_file import check_model_meta
from tinykws.train.state import trained_with


@dataclass(frozen=True)
class PruneJob:
    """What to prune and where the results go.

    Attributes:
        model: the trained float model (left unchanged).
        meta: its checkpoint metadata.
        config: a `PruneConfig`.
        data: a `TrainingData`, or None where the method needs none.
        checkpoint: the pruned .safetensors file.
        summary: the prune report (JSON).
        taylor_plot: the Taylor progress plot (method "taylor" only).
        bar_charts: a folder for learnables.png and param_memory.png, or None for no charts.
        work_dir: where retraining keeps resumable checkpoints, or None.
        sweep_dir: run each sweep of `config.sweep` that has amounts, writing its JSON and plot
            into this folder (`labelled_stem` names them).
        source: the source model's path, recorded in the report when given.
    """

    model: Any
    meta: dict
    config: Any
    data: Any
    checkpoint: Path
    summary: Path
    taylor_plot: Path
    bar_charts: Path | None = None
    work_dir: Path | None = None
    sweep_dir: Path | None = None
    source: str | None = None


def run_prune_job(job: PruneJob) -> dict:
    """Prune, check and write everything of `job`; returns the pruned checkpoint's metadata
    (its "pruned" entry holds the headline figures, `summary_of` the report)."""
    cfg = job.config
    pruned, report = prune(job.model, cfg, job.data, work_dir=job.work_dir)
    if job.sweep_dir is not None:
        report |= run_sweeps(job.model, cfg.sweep, job.data, job.sweep_dir, job.meta)
    if job.source is not None:
        report["source"] = job.source
    meta = pruned_meta(job.meta, pruned, report, cfg)
    check_model_meta(meta, str(job.checkpoint))  # nothing is written for a model that does not fit
    save_checkpoint(job.checkpoint, pruned.state_dict(), meta)
    write_json(job.summary, report)
    if job.bar_charts is not None:
        plot_size_bars(report, job.bar_charts)
    if report["method"] == "taylor":
        plot_taylor_progress(report["history"], job.taylor_plot, cfg.taylor.minibatches)
    return meta


def run_sweeps(model, sweeps, data, out_dir: Path, meta: dict | None = None) -> dict:
    """Run every sweep that has amounts; returns the prune report's entries: "sweeps" (a list
    of results, each with its name and file stem) and, for one unnamed sweep, "sweep" as before.
    With the model's metadata (`meta`), every point also gets its microcontroller time
    (`sweep_mcu_time`)."""
    results = []
    timer = sweep_mcu_time(meta, data) if meta is not None and data is not None else None
    for config in sweeps:
        if config.amounts:
            stem = labelled_stem(sweeps, config)
            result = sweep(model, config, data, out_dir, stem, mcu_time=timer)
            results.append(result | {"stem": stem})
    if not results:
        return {}
    entries = {"sweeps": results}
    if results[0]["stem"] == "sweep":
        entries["sweep"] = results[0]
    return entries


# PTQ calibration clips (the first training clips) of a sweep point timed on the microcontroller
SWEEP_CALIBRATION_CLIPS = 200


def sweep_mcu_time(meta: dict, data) -> Callable[[Any], dict]:
    """A callable giving a float model's time per inference as tinykws deploys it: int8 PTQ
    (calibrated on the first `SWEEP_CALIBRATION_CLIPS` training clips), the C export and its
    emulated Cortex-M4 count (front end included) at 80 MHz, one instruction a cycle. Without
    arm-none-eabi-gcc and qemu-system-arm: CMSIS-NN's estimate from the MACs (`CORTEX_M`'s
    first target), labelled as such. Returns {"ms", "source"}; a model is timed once (the
    unpruned model is every sweep's baseline)."""
    if not can_emulate():
        target = CORTEX_M[0]
        source = (
            f"estimate: network only, {target.cycles_per_mac:g} cycles per MAC, "
            f"{target.clock_hz / 1e6:g} MHz"
        )
        return lambda model: {
            "ms": cortex_m_estimates(count_macs(model))[0]["ms"],
            "source": source,
        }
    calibration = np.asarray(data.train_features[:SWEEP_CALIBRATION_CLIPS])
    quant_data = QuantData(calibration, data.normalization)
    source = f"Cortex-M4 emulated, int8, front end included, {MCU_CLOCK_HZ / 1e6:g} MHz"
    timed = weakref.WeakKeyDictionary()

    def emulated(model) -> dict:
        if model not in timed:
            graph = lower(quantize_ptq(model, QuantConfig(method="ptq"), quant_data))
            figures = measure_mcu(LoadedModel(Path("sweep point"), meta, "int8", graph=graph))
            timed[model] = {"ms": mcu_time(figures)["ms"], "source": source}
        return timed[model]

    return emulated


def pruned_meta(meta: dict, pruned, report: dict, cfg) -> dict:
    """The pruned checkpoint's metadata: the source's, with the new architecture, the pruning's
    headline figures and, when the pruned network was retrained, how (QAT fine-tunes alike)."""
    extra = {"model": config_to_dict(pruned.config), "pruned": summary_of(report)}
    if "retrain" in report or cfg.method == "gradual":
        extra["train"] = trained_with(cfg.retrain)
    return meta | extra


def summary_of(report: dict) -> dict:
    """The headline figures of a prune report (what metrics.json and the checkpoint keep)."""
    before, after = report["before"], report["after"]
    figures = {"method": report["method"]}
    for key in ("params", "nonzero_params", "param_bytes", "macs", "val_accuracy"):
        if key in before:
            figures[f"{key}_before"], figures[f"{key}_after"] = before[key], after[key]
    figures["macs_removed"] = 1.0 - after["macs"] / before["macs"]
    figures["params_removed"] = 1.0 - after["nonzero_params"] / before["nonzero_params"]
    if "val_accuracy_pruned" in report:
        figures["val_accuracy_pruned"] = report["val_accuracy_pruned"]
    return figures


def plot_size_bars(report: dict, out_dir: Path) -> None:
    """learnables.png and param_memory.png: original vs pruned."""
    before, after = report["before"], report["after"]
    learnables = {"original": before["nonzero_params"], "pruned": after["nonzero_params"]}
    plot_bars(learnables, "learnables (non-zero)", "Learnables", out_dir / "learnables.png")
    memory_kb = {"original": before["param_bytes"] / 1024, "pruned": pruned_kb(report)}
    plot_bars(memory_kb, "kB (float32)", "Parameter memory", out_dir / "param_memory.png")


def pruned_kb(report: dict) -> float:
    """Parameter memory of the pruned model in kB (float32)."""
    # Unstructured pruning keeps the dense shape; its memory gain is the non-zero weights
    # (what a sparse or compressed format stores).
    return report["after"]["nonzero_params"] * 4 / 1024
