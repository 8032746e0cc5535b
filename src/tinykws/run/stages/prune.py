"""The prune stage of a recipe run, and its section of report.html.

`stage_prune(run)` reads `[prune]` (a `PruneConfig`), prunes the run's final model, retrains it
with `[prune.retrain]`, writes prune/pruned.safetensors (which becomes the run's final model),
prune/summary.json, bar charts of learnables and parameter memory (original vs pruned), the
Taylor progress plot or the sweep plot when they apply, and records figures in metrics.json.
Retraining checkpoints go to prune/work/ and resume after an interruption; that folder is emptied
when the source model or the prune settings change.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tinykws.config import from_dict, to_dict
from tinykws.log import logger

SUMMARY = "summary.json"
PRUNED = "pruned.safetensors"


def stage_prune(run) -> dict:
    """Prune the run's final model; returns the figures recorded under "prune" in metrics.json."""
    from tinykws.cache import content_key
    from tinykws.checkpoint import save_checkpoint
    from tinykws.measure.predictors import normalization, resolve_model_path
    from tinykws.prune import prune
    from tinykws.prune.config import PruneConfig
    from tinykws.prune.retrain import fresh_work_dir
    from tinykws.run.stages.core import training_data

    cfg = from_dict(PruneConfig, run.recipe.extra.get("prune", {}), "prune")
    source = resolve_model_path(run.dir)
    model, meta = load_model(source)
    data = replace(training_data(run), normalization=normalization(meta))
    out = run.stage_dir("prune")
    stat = source.stat()
    key = content_key(to_dict(cfg), str(source), stat.st_size, stat.st_mtime_ns)
    pruned, report = prune(model, cfg, data, work_dir=fresh_work_dir(out / "work", key))
    if cfg.sweep is not None and cfg.sweep.amounts:
        from tinykws.prune.norm import sweep

        report["sweep"] = sweep(model, cfg.sweep, data, out)
    report["source"] = str(source)
    save_checkpoint(out / PRUNED, pruned.state_dict(), pruned_meta(meta, pruned, report, cfg))
    write_outputs(out, cfg, report)
    run.set_final_model(f"prune/{PRUNED}")
    metrics = summary_of(report)
    run.update_metrics("prune", metrics)
    logger.info(
        f"prune: {metrics['macs_before']:,} -> {metrics['macs_after']:,} MACs "
        f"({metrics['macs_removed']:.1%} removed), validation accuracy "
        f"{metrics['val_accuracy_before']:.4f} -> {metrics['val_accuracy_after']:.4f}"
    )
    return metrics


def load_model(path: Path):
    """(model in eval mode, metadata) of a float checkpoint, rebuilt from its own config."""
    from tinykws.measure.predictors import load_torch

    predictor = load_torch(path)
    return predictor.module, predictor.meta


def pruned_meta(meta: dict, pruned, report: dict, cfg) -> dict:
    """The pruned checkpoint's metadata: the source's, with the new architecture, the pruning's
    headline figures and, when the pruned network was retrained, how (QAT fine-tunes alike)."""
    from tinykws.models import config_to_dict
    from tinykws.train.state import trained_with

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


def write_outputs(out: Path, cfg, report: dict) -> None:
    """summary.json, the two bar charts, and the Taylor progress plot (method "taylor")."""
    from tinykws.io import write_json
    from tinykws.plots import plot_bars

    write_json(out / SUMMARY, report)
    before, after = report["before"], report["after"]
    learnables = {"original": before["nonzero_params"], "pruned": after["nonzero_params"]}
    plot_bars(learnables, "learnables (non-zero)", "Learnables", out / "learnables.png")
    memory_kb = {"original": before["param_bytes"] / 1024, "pruned": _pruned_kb(report)}
    plot_bars(memory_kb, "kB (float32)", "Parameter memory", out / "param_memory.png")
    if report["method"] == "taylor":
        from tinykws.prune.taylor import plot_taylor_progress

        plot_taylor_progress(report["history"], out / "taylor_progress.png", cfg.taylor.minibatches)


def _pruned_kb(report: dict) -> float:
    # Unstructured pruning keeps the dense shape; its memory gain is the non-zero weights
    # (what a sparse or compressed format stores).
    after = report["after"]
    return after["nonzero_params"] * 4 / 1024


def report_section(run_dir: Path) -> str:
    """The "Pruning" section of report.html ("" when the prune stage did not run)."""
    from tinykws.report.html import image, pct, read_json, table

    run_dir = Path(run_dir)
    out = run_dir / "prune"
    report = read_json(out / SUMMARY)
    if not report:
        return ""
    before, after = report["before"], report["after"]
    rows = [
        ["parameters", f"{before['params']:,}", f"{after['params']:,}"],
        ["non-zero parameters", f"{before['nonzero_params']:,}", f"{after['nonzero_params']:,}"],
        [
            "parameter memory (kB)",
            f"{before['param_bytes'] / 1024:.1f}",
            f"{_pruned_kb(report):.1f}",
        ],
        ["MACs", f"{before['macs']:,}", f"{after['macs']:,}"],
        ["validation accuracy", pct(before.get("val_accuracy")), pct(after.get("val_accuracy"))],
    ]
    note = ""
    if "val_accuracy_pruned" in report:
        note = (
            f"<p class='note'>Validation accuracy right after pruning, before retraining: "
            f"{pct(report['val_accuracy_pruned'])}.</p>"
        )
    images = "".join(
        image(out / name, alt)
        for name, alt in (
            ("learnables.png", "learnables"),
            ("param_memory.png", "memory"),
            ("taylor_progress.png", "Taylor progress"),
            ("sweep.png", "sweep"),
        )
    )
    return (
        f"<h2>Pruning</h2><p>method: {report['method']}</p>"
        + table(["", "original", "pruned"], rows)
        + note
        + images
    )
