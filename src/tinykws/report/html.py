"""report.html: one self-contained page (images inlined) summarising a run directory.

The page is assembled from sections; each section reads what its stage left in the run
directory and returns "" when that stage did not run, so a report can be written at any point.
Later stages add their section functions to `SECTIONS`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.io import write_text

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:.4em 0} .note{color:#666;font-size:.9em}
"""


def table(headers: list[str], rows: list[list]) -> str:
    """An HTML table; cells are escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def image(path: Path, alt: str = "") -> str:
    """An <img> with the PNG inlined, or "" when the file does not exist."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def read_json(path: Path) -> dict | None:
    """Parsed JSON object, or None when absent (a damaged file is a `TinyKWSError`)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise TinyKWSError(f"{path}: damaged (not a JSON object); redo the stage that wrote it")
    return value


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


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
    return "<h2>Training</h2>" + text + image(run_dir / "train" / "curves.png", "curves")


def model_section(run_dir: Path) -> str:
    from tinykws.measure.predictors import FINAL_MODEL_FILE, load_predictor

    if not (run_dir / FINAL_MODEL_FILE).is_file():
        return ""
    predictor = load_predictor(run_dir, backend="torch")  # the float network, layer by layer
    module = getattr(predictor, "module", None)
    if module is None:
        return ""
    from tinykws.models import summary

    rows = summary(module)
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
    return "<h2>Evaluation</h2>" + "".join(parts) if parts else ""


def later_sections() -> list:
    """Sections of the compression and deployment stages (imported when a report is written)."""
    from tinykws.run.stages.export import artefacts_section, check_section, metrics_section
    from tinykws.run.stages.prune import report_section as prune_section
    from tinykws.run.stages.quantize import report_section as quantize_section
    from tinykws.run.stages.stream import report_section as stream_section

    return [
        prune_section, quantize_section, artefacts_section, metrics_section, stream_section,
        check_section,
    ]  # fmt: skip


SECTIONS = [data_section, training_section, model_section, evaluation_section]


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
    body = "".join(section(run_dir) for section in [*SECTIONS, *later_sections()])
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tinykws report</title>"
        f"<style>{STYLE}</style></head><body><h1>tinykws run: {html.escape(run_dir.name)}</h1>"
        f"{body}<h2>Recipe</h2><pre>{html.escape(recipe)}</pre></body></html>"
    )
    path = run_dir / "report.html"
    write_text(path, page)
    return path
