"""The prune stage of a recipe run.

`stage_prune(run)` reads `[prune]` (a `PruneConfig`), prunes the run's final model, retrains it
with `[prune.retrain]`, writes prune/pruned.safetensors (which becomes the run's final model),
prune/summary.json, bar charts of learnables and parameter memory (original vs pruned), the
Taylor progress plot or the sweep plot when they apply, and records figures in metrics.json.
Retraining checkpoints go to prune/work/ and resume after an interruption; that folder is emptied
when the source model or the prune settings change.
"""

from __future__ import annotations

from dataclasses import replace

from tinykws.cache import content_key
from tinykws.config import from_dict, to_dict
from tinykws.log import logger
from tinykws.prune.config import PruneConfig
from tinykws.prune.retrain import fresh_work_dir
from tinykws.run.pruning import PruneJob, run_prune_job
from tinykws.run.stages.data import training_data
from tinykws.train.model_file import load_float_model, normalization, resolve_model_path

STAGE = "prune"
SUMMARY = "summary.json"
PRUNED = "pruned.safetensors"


def stage_prune(run) -> dict:
    """Prune the run's final model; returns the figures recorded under "prune" in metrics.json."""
    cfg = from_dict(PruneConfig, run.recipe.extra.get(STAGE, {}), STAGE)
    source = resolve_model_path(run.dir)
    model, meta = load_float_model(source)
    data = replace(training_data(run), normalization=normalization(meta))
    out = run.stage_dir(STAGE)
    stat = source.stat()
    key = content_key(to_dict(cfg), str(source), stat.st_size, stat.st_mtime_ns)
    job = PruneJob(
        model=model,
        meta=meta,
        config=cfg,
        data=data,
        checkpoint=out / PRUNED,
        summary=out / SUMMARY,
        taylor_plot=out / "taylor_progress.png",
        bar_charts=out,
        work_dir=fresh_work_dir(out / "work", key),
        sweep_dir=out,
        source=str(source),
    )
    metrics = run_prune_job(job)["pruned"]
    run.set_final_model(f"{STAGE}/{PRUNED}")
    run.update_metrics(STAGE, metrics)
    logger.info(
        f"prune: {metrics['macs_before']:,} -> {metrics['macs_after']:,} MACs "
        f"({metrics['macs_removed']:.1%} removed), validation accuracy "
        f"{metrics['val_accuracy_before']:.4f} -> {metrics['val_accuracy_after']:.4f}"
    )
    return metrics
