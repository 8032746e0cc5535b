"""The export stage of a recipe run.

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
    sparse = "auto"                # c: sparse weights where smaller (auto) | off: always dense
    float_reference = false        # also export the trained float model, give file-size ratios

With `float_reference`, `export/float/model.tflite` holds the float model the run trained
(train/best.safetensors) and summary.json's "file_ratios" gives how many times smaller each
exported file is than two float references: that float .tflite (4 bytes a weight against 1)
and the training checkpoint train/last.safetensors (the float weights and the optimizer's
state: with Adam, three float copies of every weight, as a Keras .h5 saved after training).
The second is the ratio a study quoting "model compression" of a saved Keras model against its
int8 .tflite measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.config import check_choice, from_dict
from tinykws.errors import TinyKWSError
from tinykws.export.c.build import host_compiler
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.measure.latency import LatencyConfig, measure_latency
from tinykws.measure.metrics import mcu_time, read_code_bytes, read_mcu, static_metrics
from tinykws.measure.model_file import load_model
from tinykws.measure.predictors import load_predictor
from tinykws.measure.runtimes import load_c_predictor
from tinykws.plots import plot_mcu_ops
from tinykws.run.exporting import ExportOptions, export_loaded
from tinykws.run.stages.data import load_run_dataset, split_arrays

EXPORT = "export"
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
        sparse: c: "auto" (a layer's weights sparse where smaller in flash) or "off" (always
            dense: faster, the sparse kernels walk a bitmask).
        float_reference: also export the trained float model to export/float/model.tflite
            and record the file-size ratios against it and the training checkpoint.
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
    sparse: str = "auto"
    float_reference: bool = False

    def __post_init__(self) -> None:
        for fmt in self.formats:
            check_choice("export.formats", fmt, tuple(EXTENSIONS))
        if self.io:
            check_choice("export.io", self.io, ("int8", "float32"))
        check_choice("export.sparse", self.sparse, ("auto", "off"))
        if self.evaluate_split:
            check_choice(
                "export.evaluate_split", self.evaluate_split, ("train", "validation", "test")
            )


def stage_export(run) -> dict:
    """Export the run's final model, score and measure it (see the module docstring)."""
    config = from_dict(ExportStageConfig, run.recipe.extra.get(EXPORT, {}), EXPORT)
    model = load_model(run.dir)
    out = run.stage_dir(EXPORT)
    options = ExportOptions(
        io_dtype=config.io or None,
        sidecar=config.sidecar,
        widen_narrow_weights=config.widen_narrow_weights,
        compact_bias=config.compact_bias,
        sparse=config.sparse,
    )
    results = _export_all(model, out, config, options)
    artefacts = [_artefact_entry(run, r) for r in results]
    if config.evaluate_split:
        _score_artefacts(run, artefacts, config.evaluate_split, model.meta)
    metrics = _measure(model, out, config, [a["format"] for a in artefacts])
    write_json(out / "metrics.json", metrics)
    summary = {
        "model": str(model.path.relative_to(run.dir)),
        "precision": model.precision,
        "artefacts": artefacts,
    }
    figures = _stage_figures(artefacts, metrics)
    if config.float_reference:
        summary["file_ratios"] = _file_ratios(run, out, artefacts)
        for ratio in summary["file_ratios"]:
            for fmt, value in ratio["ratios"].items():
                figures[f"{fmt}_ratio_to_{ratio['name']}"] = value
    write_json(out / "summary.json", summary)
    run.update_metrics(EXPORT, figures)
    for a in artefacts:
        logger.info(f"export: {a['path']} {a['bytes']:,} bytes ({a['zipped_bytes']:,} zipped)")
    return figures


def _export_all(model, out: Path, config: ExportStageConfig, options) -> list:
    """Export every format asked for; in the automatic choice, skip those refusing the model."""
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


# The float references of `float_reference`: name, path in the run, what it holds.
FLOAT_REFERENCES = (
    ("float_tflite", "export/float/model.tflite", "the trained float model as .tflite"),
    (
        "training_checkpoint",
        "train/last.safetensors",
        "the training checkpoint: float weights and the optimizer's state",
    ),
)


def _file_ratios(run, out: Path, artefacts: list[dict]) -> list[dict]:
    """Export the trained float model and give each exported file's size ratio against it and
    against the training checkpoint (see the module docstring)."""
    trained = run.dir / "train" / "best.safetensors"
    if not trained.is_file():
        raise TinyKWSError(
            f"export.float_reference: {trained} is missing; it needs the run's [train] stage"
        )
    export_loaded(load_model(trained), "tflite", out / "float" / "model.tflite", ExportOptions())
    ratios = []
    for name, relative, what in FLOAT_REFERENCES:
        size = (run.dir / relative).stat().st_size
        per_file = {a["format"]: size / a["bytes"] for a in artefacts if a["format"] != "c"}
        ratios.append(
            {"name": name, "path": relative, "what": what, "bytes": size, "ratios": per_file}
        )
        for fmt, value in per_file.items():
            logger.info(f"export: {relative} ({size:,} B) is {value:.2f}x the {fmt} file")
    return ratios


def _artefact_entry(run, result) -> dict:
    entry = result.to_dict()
    entry["path"] = str(Path(result.path).relative_to(run.dir))
    entry["accuracy"], entry["agreement"] = {}, {}
    return entry


def _score_artefacts(run, artefacts: list[dict], split: str, meta: dict) -> None:
    """Accuracy of every file, and its top-1 agreement with the final model (C folders only
    where gcc can build them)."""
    if not load_run_dataset(run).clips(split):
        logger.warning(f"export: the '{split}' split is empty; files not scored")
        return
    _, _, features, labels = split_arrays(run, split)
    reference = load_predictor(run.dir).logits(features).argmax(1)
    for entry in artefacts:
        predictor = _artefact_predictor(run.dir / entry["path"], entry["format"], meta)
        if predictor is None:
            continue
        predicted = predictor.logits(features).argmax(1)
        entry["accuracy"][split] = float(np.mean(predicted == labels))
        entry["agreement"][split] = float(np.mean(predicted == reference))


def _artefact_predictor(path: Path, fmt: str, meta: dict):

    if fmt != "c":
        return load_predictor(path)

    if host_compiler() is None:
        logger.warning(f"export: no C compiler here; {path} not scored")
        return None
    return load_c_predictor(path, meta)


def _measure(model, out: Path, config: ExportStageConfig, formats: list[str]) -> dict:

    code = read_code_bytes(out / EXTENSIONS["c"]) if "c" in formats else None
    mcu = read_mcu(out / EXTENSIONS["c"]) if "c" in formats else None
    metrics = {
        "model": str(model.path),
        "precision": model.precision,
        "weight_bits": model.weight_bits,
        **static_metrics(model, code),
    }
    if mcu is not None:  # emulated Cortex-M4 counts, and where the time goes
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
