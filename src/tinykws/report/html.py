"""report.html: one self-contained page (images inlined) summarising a run directory.

The page is assembled from sections; each section reads what its stage left in the run
directory and returns "" when that stage did not run, so a report can be written at any point.
The sections of the compression and deployment stages are in `tinykws.report.sections`.
"""

from __future__ import annotations

import html
from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.io import write_text
from tinykws.log import logger
from tinykws.measure.predictors import load_predictor
from tinykws.models import summary as layer_summary
from tinykws.report.blocks import image, pct, read_json, table
from tinykws.report.grid import grid_section
from tinykws.report.sections import (
    artefacts_section,
    check_section,
    metrics_section,
    prune_section,
    quantize_section,
    stream_section,
)
from tinykws.report.study import study_section
from tinykws.run.stages.evaluate import MODELS_DIR
from tinykws.run.stages.report import REPORT_FILE
from tinykws.run.stages.report import STAGE as REPORT_STAGE
from tinykws.train.model_file import FINAL_MODEL_FILE

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:.4em 0} .note{color:#666;font-size:.9em}
.side{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.side figure{margin:0;flex:1 1 280px;max-width:520px} figcaption{text-align:center}
"""


def data_section(run_dir: Path) -> str:
    summary = read_json(run_dir / "data" / "summary.json")
    if not summary:
        return ""
    splits = list(summary["counts"])
    rows = [
        [label, *(summary["counts"][s].get(label, 0) for s in splits), f"{w:.2f}"]
        for label, w in zip(summary["labels"], summary["class_weights"])
    ]
    rows.append(["total", *(sum(summary["counts"][s].values()) for s in splits), ""])
    return f"<h2>Data</h2><p>{html.escape(summary['root'])}</p>" + table(
        ["class", *splits, "class weight"], rows
    )


def training_section(run_dir: Path) -> str:
    history = read_json(run_dir / "train" / "history.json")
    if not history:
        return ""
    best = history.get("best_epoch") or len(history["val_accuracy"])
    text = (
        f"<p>{len(history['train_loss'])} epochs in {history.get('seconds', 0):.0f} s; best "
        f"validation accuracy {pct(history['val_accuracy'][best - 1])} at epoch {best}.</p>"
    )
    sparsity = ((read_json(run_dir / "metrics.json") or {}).get("train") or {}).get("sparsity")
    if sparsity is not None:  # [train.prune]: the last epoch's sparse weights were kept
        text += f"<p>Pruned gradually while training: {pct(sparsity)} of the weights are zero.</p>"
    return "<h2>Training</h2>" + text + image(run_dir / "train" / "curves.png", "curves")


def model_section(run_dir: Path) -> str:
    if not (run_dir / FINAL_MODEL_FILE).is_file():
        return ""
    predictor = load_predictor(run_dir, backend="torch")  # the float network, layer by layer
    module = getattr(predictor, "module", None)
    if module is None:
        return ""
    rows = layer_summary(module)
    body = [
        [r.name, r.type, "×".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}"]
        for r in rows
    ]
    total = ["total", "", "", f"{sum(r.params for r in rows):,}", f"{sum(r.macs for r in rows):,}"]
    family = predictor.meta["model"].get("family", "")
    return f"<h2>Model</h2><p>{html.escape(family)}, {len(predictor.labels)} classes</p>" + table(
        ["layer", "type", "output", "params", "MACs"], [*body, total]
    )


def evaluation_section(run_dir: Path) -> str:
    parts = []
    for path in sorted((run_dir / "evaluate").glob("*.json")):
        result = read_json(path)
        split = path.stem
        rows = [
            [
                label,
                r["samples"],
                r["correct"],
                pct(r["accuracy"]),
                pct(r["precision"]),
                pct(r["recall"]),
            ]
            for label, r in result["per_class"].items()
        ]
        fa = result.get("false_accepts", {})
        fa_text = ""
        if fa.get("overall") is not None:
            per = ", ".join(f"{c} {pct(v)}" for c, v in fa["per_command"].items())
            overall = pct(fa["overall"])
            fa_text = f"<p>False accepts of <code>_unknown_</code> clips: {overall} ({per})</p>"
        parts.append(
            f"<h3>{split}: accuracy {pct(result['accuracy'])} on {result['n']} clips</h3>"
            + table(["class", "samples", "correct", "accuracy", "precision", "recall"], rows)
            + fa_text
            + image(run_dir / "evaluate" / f"confusion_{split}.png", "confusion")
        )
    parts.append(models_section(run_dir))
    return "<h2>Evaluation</h2>" + "".join(parts) if any(parts) else ""


def models_section(run_dir: Path) -> str:
    """Every model of the run side by side: accuracy per split, one confusion chart each (on
    the validation split when it was scored); "" when the evaluate stage compared none."""
    out = run_dir / "evaluate" / MODELS_DIR
    summary = read_json(out / "summary.json")
    if not summary or not summary["models"]:
        return ""
    splits, models = summary["splits"], summary["models"]
    rows = [[name, *(pct(accuracy.get(s)) for s in splits)] for name, accuracy in models.items()]
    chart = "validation" if "validation" in splits else splits[0]
    figures = "".join(
        f"<figure>{image(out / name / f'confusion_{chart}.png', f'{name} confusion')}"
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name in models
    )
    note = (
        f"<p class='note'>Confusion charts on the {html.escape(chart)} split: counts, with the "
        "share of each true class predicted right (recall) and wrong at the right and of each "
        "predicted class that was right (precision) and wrong below. Every model's chart of "
        f"every split is in evaluate/{MODELS_DIR}/.</p>"
    )
    return (
        "<h3>Every model of the run</h3>"
        + table(["model", *(f"{s} accuracy" for s in splits)], rows)
        + f"<div class='side'>{figures}</div>"
        + note
    )


SECTIONS = [
    data_section, training_section, model_section, evaluation_section, prune_section,
    quantize_section, artefacts_section, metrics_section, stream_section, check_section,
    grid_section, study_section,
]  # fmt: skip


RUN_FILES = ("recipe.toml", "stages", "metrics.json", "final.json")


def write_report(run_dir: str | Path) -> Path:
    """Write `run_dir/report.html` and return its path."""
    run_dir = Path(run_dir)
    if not any((run_dir / name).exists() for name in RUN_FILES):
        raise TinyKWSError(
            f"{run_dir}: not a run directory (none of {', '.join(RUN_FILES)}); "
            "give the folder a `tinykws run` or `tinykws train` wrote"
        )
    recipe = (run_dir / "recipe.toml").read_text() if (run_dir / "recipe.toml").is_file() else ""
    body = "".join(section(run_dir) for section in SECTIONS)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tinykws report</title>"
        f"<style>{STYLE}</style></head><body><h1>tinykws run: {html.escape(run_dir.name)}</h1>"
        f"{body}<h2>Recipe</h2><pre>{html.escape(recipe)}</pre></body></html>"
    )
    path = run_dir / REPORT_FILE
    write_text(path, page)
    return path


def report_run(run) -> Path | None:
    """Write report.html of a finished `tinykws.run.pipeline.Run` when its recipe lists the
    report stage (on the main process only); returns its path, else None."""
    if REPORT_STAGE not in run.recipe.stages or not run.is_main:
        return None
    path = write_report(run.dir)
    logger.info(f"report: {path}")
    return path
