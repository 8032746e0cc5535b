"""The "Grid search" section of report.html: every width x sparsity point with its accuracy,
zipped size, latency and check result, the Pareto points marked, and the scatter plot."""

from __future__ import annotations

import html
from pathlib import Path

from tinykws.report.blocks import image, pct2, read_json, table
from tinykws.run.stages.grid import PARETO_PLOT, POINTS_FILE
from tinykws.run.stages.grid import STAGE as GRID

HEADERS = [
    "point", "width", "sparsity", "params", "val. accuracy", "zipped bytes", "latency (ms)",
    "check", "Pareto",
]  # fmt: skip


def grid_section(run_dir: Path) -> str:
    """The section ("" when the grid stage did not run): Pareto points first, most accurate
    first, then the rest."""
    out = Path(run_dir) / GRID
    summary = read_json(out / POINTS_FILE)
    if not summary:
        return ""
    points = sorted(summary["points"], key=lambda p: (not p["pareto"], -(p["accuracy"] or 0.0)))
    rows = [
        [
            p["name"],
            _width(p["width"]),
            f"{p['sparsity']:g} ({100 * p['measured_sparsity']:.1f}%)",
            f"{p['params']:,}",
            pct2(p["accuracy"]),
            f"{p['zipped_bytes']:,}",
            f"{p['latency_ms']:.3f}",
            _verdict(p),
            "yes" if p["pareto"] else "",
        ]
        for p in points
    ]
    dynamic = summary.get("quantize") == "dynamic"  # points.json from before: int8 PTQ
    quantized = "dynamic range (int8 weights)" if dynamic else "int8 (PTQ)"
    scored = "the .tflite file in LiteRT" if dynamic else "the int8 graph (= the .tflite file)"
    note = (
        f"<p class='note'>Each point trained with gradual pruning to its sparsity, quantized "
        f"{quantized} and exported to .tflite. Accuracy: {scored} on validation; size: "
        f"the zipped .tflite file; latency: {html.escape(summary['latency_source'])}. Pareto: "
        "no other point is at least as accurate, as small and as fast, and better in one.</p>"
    )
    return (
        "<h2>Grid search</h2>"
        + note
        + table(HEADERS, rows)
        + image(out / PARETO_PLOT, "accuracy vs zipped size")
    )


def _width(width) -> str:
    return "[" + ", ".join(map(str, width)) + "]" if isinstance(width, list) else f"×{width:g}"


def _verdict(point: dict) -> str:
    if not point["checks"]:
        return "no limits"
    if point["passed"]:
        return "pass"
    missed = [c["name"] for c in point["checks"] if not c["passed"]]
    return "FAIL: " + ", ".join(missed)
