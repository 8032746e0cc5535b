"""The report.html sections of the compression and deployment stages (prune, quantize, export,
stream, check), each read from what its stage left in the run directory ("" when it did not run).
"""

from __future__ import annotations

import html
from pathlib import Path

from tinykws.measure import metrics_report as mr
from tinykws.report.blocks import image, pct, pct2, read_json, table
from tinykws.run.pruning import pruned_kb
from tinykws.run.stages.check import CHECK
from tinykws.run.stages.export import EXPORT
from tinykws.run.stages.prune import STAGE as PRUNE
from tinykws.run.stages.prune import SUMMARY as PRUNE_SUMMARY
from tinykws.run.stages.quantize import STAGE as QUANTIZE
from tinykws.stream.evaluate import summary_lines


def prune_section(run_dir: Path) -> str:
    """The "Pruning" section of report.html ("" when the prune stage did not run)."""
    run_dir = Path(run_dir)
    out = run_dir / PRUNE
    report = read_json(out / PRUNE_SUMMARY)
    if not report:
        return ""
    before, after = report["before"], report["after"]
    rows = [
        ["parameters", f"{before['params']:,}", f"{after['params']:,}"],
        ["non-zero parameters", f"{before['nonzero_params']:,}", f"{after['nonzero_params']:,}"],
        [
            "parameter memory (kB)",
            f"{before['param_bytes'] / 1024:.1f}",
            f"{pruned_kb(report):.1f}",
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
        )
    )
    return (
        f"<h2>Pruning</h2><p>method: {report['method']}</p>"
        + table(["", "original", "pruned"], rows)
        + note
        + images
        + _prune_sweeps(out, report)
    )


def _prune_sweeps(out: Path, report: dict) -> str:
    """Each pruning sweep under its name: its table and plot."""
    if "sweeps" not in report:  # a run from before named sweeps: at most one, sweep.png
        return image(out / "sweep.png", "sweep")
    parts = []
    for result in report["sweeps"]:
        base = result["baseline"]
        rows = [_sweep_row("unpruned", base, base["val_accuracy"])]
        rows += [
            _sweep_row(f"{r['amount']:.2f}", r, r["val_accuracy_fine_tuned"])
            for r in result["rows"]
        ]
        header = ["amount", "non-zero parameters", "MACs", "latency (ms)", "MCU (ms)", "accuracy"]
        mcu = f"; MCU: {html.escape(base['mcu_source'])}" if "mcu_source" in base else ""
        parts.append(
            f"<h3>Sweep: {html.escape(result['name'])}</h3>"
            f"<p>{html.escape(result['method'])} pruning ({html.escape(result['scope'])}); "
            f"latency: batch 1, PyTorch on this PC{mcu}</p>"
            + table([*header, "fine-tuned"], rows)
            + image(out / f"{result['stem']}.png", f"sweep {result['name']}")
        )
    return "".join(parts)


def _sweep_row(amount: str, figures: dict, fine_tuned) -> list:
    return [
        amount,
        f"{figures['nonzero_params']:,}",
        f"{figures['macs']:,}",
        f"{figures['latency_ms']:.3f}",
        f"{figures['mcu_ms']:.3f}" if "mcu_ms" in figures else "-",
        pct2(figures["val_accuracy"]),
        pct2(fine_tuned),
    ]


def quantize_section(run_dir: str | Path) -> str:
    """HTML for report.html: accuracy per backend, sizes, bar charts, sweep; "" if no stage ran."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / QUANTIZE / "summary.json")
    if not summary:
        return ""
    config = summary["config"]
    intro = (
        f"<p>{html.escape(summary['method'].upper())}: {config['weight_bits']}-bit weights "
        f"({config['weight_scheme']}{', cross-layer equalized' if config.get('equalize') else ''}"
        f"), {config['activation_bits']}-bit activations "
        f"({config['activation_scheme']}); {summary['compression_ratio']:.1f}x smaller "
        f"parameter memory than the original.</p>"
    )
    parts = [intro, _accuracy_table(summary["validation"]), _size_table(summary["sizes"])]
    for name in ("learnables", "parameter_memory"):
        parts.append(image(run_dir / QUANTIZE / f"{name}.png", name))
    parts.append(_quant_sweeps(run_dir / QUANTIZE, summary))
    return "<h2>Quantization</h2>" + "".join(parts)


def _quant_sweeps(out: Path, summary: dict) -> str:
    """Each quantization sweep under its name: its table and plot."""
    if "sweeps" not in summary:  # a run from before named sweeps: at most one, sweep.png
        return image(out / "sweep.png", "sweep")
    parts = []
    for entry in summary["sweeps"]:
        result = read_json(out / entry["file"]) or {"rows": []}
        rows = [
            [
                r["method"],
                r["scheme"],
                r.get("weight_mode", "sym"),
                r["weight_bits"],
                pct2(r["accuracy"]),
                pct2(r["int_accuracy"]),
                f"{r['parameter_bytes']:,}",
                f"{r['compression_ratio']:.1f}x",
            ]
            for r in result["rows"]
        ]
        header = ["method", "activations", "weights", "bits", "accuracy", "int accuracy"]
        parts.append(
            f"<h3>Sweep: {html.escape(entry['name'])}</h3>"
            + table([*header, "parameter bytes", "vs float"], rows)
            + image(out / f"{entry['stem']}.png", f"sweep {entry['name']}")
        )
    return "".join(parts)


def _accuracy_table(validation: dict) -> str:
    names = {
        "torch": "float weights of the result",
        "fakequant": "fake-quant",
        "int": "integer graph",
    }
    rows = [["float model quantized", pct2(validation.get("source_accuracy"))]]
    rows += [[names[b], pct2(a)] for b, a in validation["accuracy"].items()]
    rows += [
        [f"top-1 agreement {k.replace('_', ' vs ')}", pct2(v)]
        for k, v in validation["agreement"].items()
    ]
    lsb = validation.get("int_vs_fakequant_lsb")
    if lsb:
        rows.append(["integer vs fake-quant logits, max difference", f"{lsb['max']:.2f} LSB"])
    return table([f"validation ({validation['n']} clips)", "value"], rows)


def _size_table(sizes: dict) -> str:
    original = sizes["original"]["total_bytes"]
    rows = [
        [
            name,
            f"{s['learnables']:,}",
            _bits_cell(s),
            f"{s['total_bytes']:,}",
            f"{s.get('ideal_weight_bytes', s['weight_bytes']) + s['bias_bytes']:,}",
            f"{s['deployed_bytes']:,}",
            f"{original / max(s['total_bytes'], 1):.1f}x",
        ]
        for name, s in sizes.items()
    ]
    header = [
        "model",
        "learnables",
        "weight bits",
        "parameter memory (bytes)",
        "at exactly those bits (bytes)",
        "with constants (bytes)",
        "vs original",
    ]
    notes = sorted({s["storage_note"] for s in sizes.values() if s.get("storage_note")})
    return table(header, rows) + "".join(f"<p>{html.escape(note)}.</p>" for note in notes)


def _bits_cell(size: dict) -> str:
    """The weight width, with the stored width where the C kernels' container is wider."""
    stored = size.get("storage_bits", size["weight_bits"])
    bits = size["weight_bits"]
    return str(bits) if stored == bits else f"{bits} (stored as {stored})"


def artefacts_section(run_dir) -> str:
    """Every exported file: format, bytes, zipped bytes, accuracy, agreement."""
    summary = read_json(Path(run_dir) / EXPORT / "summary.json")
    if not summary:
        return ""
    rows = []
    for a in summary["artefacts"]:
        splits = sorted(a["accuracy"]) or ["-"]
        for split in splits:
            rows.append(
                [
                    a["path"],
                    a["format"],
                    f"{a['precision']} ({a['io_dtype']} io)",
                    f"{a['bytes']:,}",
                    f"{a['zipped_bytes']:,}",
                    split,
                    pct2(a["accuracy"].get(split)),
                    pct2(a["agreement"].get(split)),
                ]
            )
    note = (
        "<p class='note'>Agreement: top-1 agreement with the final model as tinykws runs "
        "it (integer graph, or PyTorch for a float model).</p>"
    )
    return (
        "<h2>Exported files</h2>"
        + table(
            [
                "file",
                "format",
                "precision",
                "bytes",
                "zipped bytes",
                "split",
                "accuracy",
                "agreement",
            ],
            rows,
        )
        + note
        + _file_ratios(summary.get("file_ratios", []))
    )


def _file_ratios(ratios: list[dict]) -> str:
    """How many times smaller each exported file is than the float references."""
    if not ratios:
        return ""
    formats = sorted({fmt for r in ratios for fmt in r["ratios"]})
    rows = [
        [r["path"], r["what"], f"{r['bytes']:,}"]
        + [f"{r['ratios'][f]:.2f}x" if f in r["ratios"] else "-" for f in formats]
        for r in ratios
    ]
    return (
        "<h3>File-size ratios</h3>"
        + table(["float reference", "holds", "bytes"] + [f"/ {f} file" for f in formats], rows)
        + "<p class='note'>A study's \"model compression\" of a saved Keras model against "
        "its int8 .tflite is the training-checkpoint row: the saved file holds the optimizer's "
        "state beside the weights.</p>"
    )


def metrics_section(run_dir) -> str:
    """Totals, flash and RAM, latency per runtime, Cortex-M estimates, per-layer table."""
    metrics = read_json(Path(run_dir) / EXPORT / "metrics.json")
    if not metrics:
        return ""
    parts = ["<h2>Network metrics</h2>", table(["figure", "value"], mr.summary_rows(metrics))]
    latency = metrics.get("latency")
    if latency:
        parts.append(
            f"<p>Batch-1 latency, median of {latency['runs']} runs, "
            f"{latency['threads']} thread(s).</p>"
        )
        parts.append(table(mr.LATENCY_HEADERS, mr.latency_rows(latency)))
    parts.append(table(mr.CORTEX_HEADERS, mr.cortex_rows(metrics)))
    if metrics.get("mcu"):
        parts.append(image(Path(run_dir) / EXPORT / "mcu_ops.png", "Cortex-M4 instructions per op"))
        parts.append(table(mr.MCU_OP_HEADERS, mr.mcu_op_rows(metrics["mcu"])))
    parts.append(table(mr.LAYER_HEADERS, mr.layer_table_rows(metrics)))
    return "".join(parts)


def check_section(run_dir) -> str:
    """The constraint table of the check stage."""
    result = read_json(Path(run_dir) / CHECK / "result.json")
    if not result:
        return ""
    verdict = "all constraints met" if result["passed"] else "constraints missed"
    rows = [
        [r["name"], r["limit"], r["value"], "pass" if r["passed"] else "FAIL", r["source"]]
        for r in result["rows"]
    ]
    return f"<h2>Constraints</h2><p>{html.escape(verdict)}</p>" + table(
        ["constraint", "limit", "value", "result", "measured on"], rows
    )


def stream_section(run_dir: Path) -> str:
    """report.html section: the score at the threshold, the target point, the curve."""
    result = read_json(Path(run_dir) / "stream" / "result.json")
    if not result:
        return ""
    s, c = result["score"], result["config"]
    rows = [[
        f"{result['duration_s'] / 60:.1f} min", s["keywords"], s["hits"], s["misses"],
        s["false_accepts"], f"{s['false_accepts_per_hour']:.2f}",
        f"{100 * s['false_reject_rate']:.1f}%",
    ]]  # fmt: skip
    settings = ", ".join(f"{k} {v}" for k, v in c.items())
    text = "".join(f"<p>{html.escape(line)}</p>" for line in summary_lines(result))
    return (
        "<h2>Streaming detection</h2>"
        f"<p class='note'>The final model on a long test stream ({html.escape(settings)}).</p>"
        + table(["stream", "keywords", "hits", "misses", "false accepts", "per hour", "FRR"], rows)
        + text
        + image(Path(run_dir) / "stream" / "curve.png", "threshold curve")
    )
