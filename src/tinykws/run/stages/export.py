"""The export and check stages of a recipe run, and their sections of report.html.

`stage_export` writes the run's final model in each format of the `[export]` table into
`export/`, scores every file on the validation split (accuracy, and top-1 agreement with the
final model as tinykws runs it: the integer graph for a quantized model, PyTorch for a float
one), measures the model (`tinykws.measure.metrics`, latency included) and records it all:

    export/model.tflite, model.onnx, c/   the files
    export/summary.json                   one entry per file: bytes, zipped bytes, accuracy, ...
    export/metrics.json                   per-layer and total figures, latency

    [export]
    formats = ["tflite", "onnx"]   # tflite | onnx | c (default: every format that fits)
    io = "int8"                    # optional: int8 | float32 boundary of int8 files
    latency = true                 # time every runtime (median of `runs` batch-1 calls)
    runs = 200

`stage_check` checks the `[check]` table (`measure.check.CheckConfig`) against them and writes
`check/result.json`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.config import check_choice
from tinykws.errors import TinyKWSError
from tinykws.log import logger

EXPORT, CHECK = "export", "check"
EXTENSIONS = {"tflite": "model.tflite", "onnx": "model.onnx", "c": "c"}


@dataclass(frozen=True)
class ExportStageConfig:
    """The `[export]` table.

    Attributes:
        formats: files to write, from tflite, onnx, c. Empty (the default): tflite, onnx and
            c, each where it can hold the model (a dynamic-range model gets onnx only, a float
            one no c); formats listed explicitly must succeed.
        io: "int8" or "float32" boundary of int8 files ("" = each format's default).
        widen_narrow_weights: store 2..7-bit weights as int8 in tflite / onnx files.
        sidecar: metadata in NAME.<ext>.json beside each file instead of inside it.
        compact_bias: tflite: leave the biases' quantization parameters out of per-channel
            ops (smaller; LiteRT's XNNPACK delegate then declines them).
        evaluate_split: split each file is scored on ("" = do not score).
        latency: time the model in every runtime.
        runs: timed calls per latency figure.
        threads: threads of every runtime while timing.
    """

    formats: tuple[str, ...] = ()
    io: str = ""
    widen_narrow_weights: bool = False
    sidecar: bool = False
    compact_bias: bool = False
    evaluate_split: str = "validation"
    latency: bool = True
    runs: int = 200
    threads: int = 1

    def __post_init__(self) -> None:
        for fmt in self.formats:
            check_choice("export.formats", fmt, tuple(EXTENSIONS))
        if self.io:
            check_choice("export.io", self.io, ("int8", "float32"))
        if self.evaluate_split:
            check_choice(
                "export.evaluate_split", self.evaluate_split, ("train", "validation", "test")
            )


def stage_export(run) -> dict:
    """Export the run's final model, score and measure it (see the module docstring)."""
    from tinykws.config import from_dict
    from tinykws.io import write_json
    from tinykws.run.exporting import ExportOptions, load_model

    config = from_dict(ExportStageConfig, run.recipe.extra.get(EXPORT, {}), EXPORT)
    model = load_model(run.dir)
    out = run.stage_dir(EXPORT)
    options = ExportOptions(
        io_dtype=config.io or None,
        sidecar=config.sidecar,
        widen_narrow_weights=config.widen_narrow_weights,
        compact_bias=config.compact_bias,
    )
    results = _export_all(model, out, config, options)
    artefacts = [_artefact_entry(run, r) for r in results]
    if config.evaluate_split:
        _score_artefacts(run, artefacts, config.evaluate_split, model.meta)
    metrics = _measure(model, out, config, [a["format"] for a in artefacts])
    write_json(out / "metrics.json", metrics)
    write_json(
        out / "summary.json",
        {
            "model": str(model.path.relative_to(run.dir)),
            "precision": model.precision,
            "artefacts": artefacts,
        },
    )
    figures = _stage_figures(artefacts, metrics)
    run.update_metrics(EXPORT, figures)
    for a in artefacts:
        logger.info(f"export: {a['path']} {a['bytes']:,} bytes ({a['zipped_bytes']:,} zipped)")
    return figures


def _export_all(model, out: Path, config: ExportStageConfig, options) -> list:
    """Export every format asked for; in the automatic choice, skip those refusing the model."""
    from tinykws.run.exporting import export_loaded

    results = []
    for fmt in config.formats or tuple(EXTENSIONS):
        try:
            results.append(export_loaded(model, fmt, out / EXTENSIONS[fmt], options))
        except TinyKWSError as exc:
            if config.formats:
                raise
            logger.warning(f"export: no {fmt} file: {exc}")
    if not results:
        raise TinyKWSError(f"{model.path}: no format can hold this model; see the warnings")
    return results


def _artefact_entry(run, result) -> dict:
    entry = result.to_dict()
    entry["path"] = str(Path(result.path).relative_to(run.dir))
    entry["accuracy"], entry["agreement"] = {}, {}
    return entry


def _score_artefacts(run, artefacts: list[dict], split: str, meta: dict) -> None:
    """Accuracy of every file, and its top-1 agreement with the final model (C folders only
    where gcc can build them)."""
    from tinykws.measure.predictors import load_predictor
    from tinykws.run.stages import core as stages

    if not stages.load_run_dataset(run).clips(split):
        logger.warning(f"export: the '{split}' split is empty; files not scored")
        return
    _, _, features, labels = stages.split_arrays(run, split)
    reference = load_predictor(run.dir).logits(features).argmax(1)
    for entry in artefacts:
        predictor = _artefact_predictor(run.dir / entry["path"], entry["format"], meta)
        if predictor is None:
            continue
        predicted = predictor.logits(features).argmax(1)
        entry["accuracy"][split] = float(np.mean(predicted == labels))
        entry["agreement"][split] = float(np.mean(predicted == reference))


def _artefact_predictor(path: Path, fmt: str, meta: dict):
    from tinykws.measure.predictors import load_predictor
    from tinykws.measure.runtimes import load_c_predictor

    if fmt != "c":
        return load_predictor(path)
    from tinykws.export.c.build import host_compiler

    if host_compiler() is None:
        logger.warning(f"export: no C compiler here; {path} not scored")
        return None
    return load_c_predictor(path, meta)


def _measure(model, out: Path, config: ExportStageConfig, formats: list[str]) -> dict:
    from tinykws.measure.latency import LatencyConfig, measure_latency
    from tinykws.measure.metrics import mcu_time, read_code_bytes, read_mcu, static_metrics

    code = read_code_bytes(out / EXTENSIONS["c"]) if "c" in formats else None
    mcu = read_mcu(out / EXTENSIONS["c"]) if "c" in formats else None
    metrics = {
        "model": str(model.path),
        "precision": model.precision,
        "weight_bits": model.weight_bits,
        **static_metrics(model, code),
    }
    if mcu is not None:  # emulated Cortex-M4 counts, and where the time goes
        from tinykws.plots import plot_mcu_ops

        metrics["mcu"] = mcu_time(mcu)
        plot_mcu_ops(mcu, out / "mcu_ops.png")
    if config.latency:
        latency = LatencyConfig(runs=config.runs, threads=config.threads)
        shape = (
            tuple(model.module.config.input_shape)
            if model.module is not None
            else tuple(model.graph.tensor(model.graph.inputs[0]).shape[1:3])
        )
        metrics["latency"] = measure_latency(model, shape, latency)
    return metrics


def _stage_figures(artefacts: list[dict], metrics: dict) -> dict:
    total = metrics["total"]
    figures = {
        "macs": total["macs"],
        "flash_bytes": total["flash_bytes"],
        "ram_bytes": total["ram_bytes"],
    }
    if metrics.get("mcu"):
        figures["mcu_instructions"] = metrics["mcu"]["instructions"]
    for a in artefacts:
        figures[f"{a['format']}_bytes"] = a["bytes"]
        figures[f"{a['format']}_zipped_bytes"] = a["zipped_bytes"]
        for split, value in a["accuracy"].items():
            figures[f"{a['format']}_{split}_accuracy"] = value
    return figures


def stage_check(run) -> dict:
    """Check the `[check]` limits; write check/result.json (and stop the run if `strict`)."""
    from tinykws.config import from_dict
    from tinykws.io import write_json
    from tinykws.measure.check import CheckConfig, check_run, failure

    config = from_dict(CheckConfig, run.recipe.extra.get(CHECK, {}), CHECK)
    rows = check_run(run.dir, config)
    passed = all(r.passed for r in rows)
    write_json(
        run.stage_dir(CHECK) / "result.json",
        {"passed": passed, "rows": [r.to_dict() for r in rows]},
    )
    run.update_metrics(CHECK, {"passed": passed, **{r.name: r.passed for r in rows}})
    problem = failure(rows)
    if problem is not None:
        if config.strict:
            raise problem
        logger.warning(f"check: {problem}")
    else:
        logger.info(f"check: all {len(rows)} constraints met")
    return {"passed": passed}


# --- report.html -----------------------------------------------------------------------------


def artefacts_section(run_dir) -> str:
    """Every exported file: format, bytes, zipped bytes, accuracy, agreement."""
    from tinykws.report.html import read_json, table

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
                    _pct(a["accuracy"].get(split)),
                    _pct(a["agreement"].get(split)),
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
    )


def metrics_section(run_dir) -> str:
    """Totals, flash and RAM, latency per runtime, Cortex-M estimates, per-layer table."""
    from tinykws.measure import metrics_report as mr
    from tinykws.report.html import image, read_json, table

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
    from tinykws.report.html import read_json, table

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


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
