"""One prune job, shared by `tinykws prune` and the recipe's prune stage: prune a float model,
then write the pruned checkpoint, the prune report (JSON) and the plots that apply.

The two callers differ only in where the files go (`PruneJob`'s paths) and in what the stage
adds: the bar charts of learnables and parameter memory, the norm sweep, and the source path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinykws.checkpoint import save_checkpoint
from tinykws.config import labelled_stem
from tinykws.io import write_json
from tinykws.models import config_to_dict
from tinykws.plots import plot_bars
from tinykws.prune import prune
from tinykws.prune.sweeping import sweep
from tinykws.prune.taylor import plot_taylor_progress
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
        report |= run_sweeps(job.model, cfg.sweep, job.data, job.sweep_dir)
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


def run_sweeps(model, sweeps, data, out_dir: Path) -> dict:
    """Run every sweep that has amounts; returns the prune report's entries: "sweeps" (a list
    of results, each with its name and file stem) and, for one unnamed sweep, "sweep" as before."""
    results = []
    for config in sweeps:
        if config.amounts:
            stem = labelled_stem(sweeps, config)
            results.append(sweep(model, config, data, out_dir, stem) | {"stem": stem})
    if not results:
        return {}
    entries = {"sweeps": results}
    if results[0]["stem"] == "sweep":
        entries["sweep"] = results[0]
    return entries


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
