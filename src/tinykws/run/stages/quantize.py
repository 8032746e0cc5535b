"""The quantize stage of a recipe run, and its section of report.html.

The stage quantizes the run's current final model (the trained model, or the pruned one when a
prune stage ran before), writes everything into `quantize/` (see `tinykws.quant.workflow`),
and makes the quantized checkpoint the run's final model, so `tinykws evaluate RUN --backend
int` scores the integer graph. Its table in the recipe is `QuantConfig`, plus an optional
`[quantize.sweep]` (`SweepConfig`):

    [quantize]
    method = "ptq"            # ptq | dynamic | qat
    weight_bits = 8
    weight_mode = "sym"       # sym | asym (asymmetric weights: fake quantization only)
    calibration_per_class = 20
    # calibration_clips = 200 # instead: 200 clips in total, stratified over the classes
    [quantize.sweep]          # optional: accuracy vs bit width, PTQ vs QAT
    bits = [2, 4, 6, 8]
    methods = ["ptq", "qat"]
    weight_modes = ["sym", "asym"]
"""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.log import logger

STAGE = "quantize"
TRAINED_MODEL = "train/best.safetensors"
SOURCE_FILE = "source.json"


def parse_table(table: dict):
    """(QuantConfig, SweepConfig | None) from a recipe's [quantize] table."""
    from tinykws.config import from_dict
    from tinykws.quant import QuantConfig
    from tinykws.quant.sweep import SweepConfig

    table = dict(table or {})
    sweep = table.pop("sweep", None)
    config = from_dict(QuantConfig, table, STAGE)
    return config, (from_dict(SweepConfig, sweep, "quantize.sweep") if sweep is not None else None)


def source_model(run_dir: Path) -> str:
    """The run-relative path of the float model to quantize (the final model before this stage)."""
    from tinykws.measure.predictors import FINAL_MODEL_FILE

    final = run_dir / FINAL_MODEL_FILE
    if not final.is_file():
        raise TinyKWSError(
            f"{run_dir}: no trained model to quantize; put 'train' before "
            f"'{STAGE}' in the recipe's stages"
        )
    model = json.loads(final.read_text())["model"]
    if model.startswith(f"{STAGE}/"):  # this stage ran before: start again from its source
        model = json.loads((run_dir / STAGE / SOURCE_FILE).read_text())["model"]
    return model


def stage_quantize(run) -> dict:
    """Quantize the run's final model into quantize/; it becomes the run's final model."""
    from tinykws.io import write_json
    from tinykws.quant.workflow import metrics_of, run_job

    config, sweep = parse_table(run.recipe.extra.get(STAGE, {}))
    source = source_model(run.dir)
    summary = run_job(_job(run, config, sweep, source))
    write_json(run.dir / STAGE / SOURCE_FILE, {"model": source})
    run.set_final_model(f"{STAGE}/model.safetensors")
    metrics = metrics_of(summary)
    run.update_metrics(STAGE, metrics)
    logger.info(
        f"quantize: {config.method} {config.weight_bits}-bit, validation accuracy "
        f"{_pct(metrics['fakequant_accuracy'])} (source float {_pct(metrics['source_accuracy'])}, "
        f"int {_pct(metrics['int_accuracy'])}), {metrics['compression_ratio']:.1f}x smaller"
    )
    return metrics


def _job(run, config, sweep, source: str):
    """The `QuantJob` of a run: its model, calibration set, validation split, earlier sizes."""
    from tinykws.measure.predictors import load_torch, normalization
    from tinykws.quant import QuantData
    from tinykws.quant.data import calibration_features
    from tinykws.quant.sizes import float_memory
    from tinykws.quant.workflow import QuantJob
    from tinykws.run.stages import core as stages

    predictor = load_torch(run.dir / source)
    norm = normalization(predictor.meta)
    dataset, frontend = stages.load_run_dataset(run), stages.run_frontend(run)
    training = None
    if config.method == "qat" or (sweep is not None and "qat" in sweep.methods):
        training = replace(stages.training_data(run), normalization=norm)
    calibration = calibration_features(dataset, frontend, config, run.cache_dir)
    _, _, val_features, val_labels = stages.split_arrays(run, "validation")
    references = {}
    if source != TRAINED_MODEL and (run.dir / TRAINED_MODEL).is_file():
        original = load_torch(run.dir / TRAINED_MODEL).module
        references = {"original": float_memory(original), "pruned": float_memory(predictor.module)}
    data = QuantData(calibration, norm, training)
    return QuantJob(
        predictor.module,
        predictor.meta,
        config,
        data,
        val_features,
        val_labels,
        run.dir / STAGE,
        references,
        sweep,
        run.recipe.name,
    )


def report_section(run_dir: str | Path) -> str:
    """HTML for report.html: accuracy per backend, sizes, bar charts, sweep; "" if no stage ran."""
    from tinykws.report.html import image, read_json

    run_dir = Path(run_dir)
    summary = read_json(run_dir / STAGE / "summary.json")
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
    for name in ("learnables", "parameter_memory", "sweep"):
        parts.append(image(run_dir / STAGE / f"{name}.png", name))
    return "<h2>Quantization</h2>" + "".join(parts)


def _accuracy_table(validation: dict) -> str:
    from tinykws.report.html import table

    names = {
        "torch": "float weights of the result",
        "fakequant": "fake-quant",
        "int": "integer graph",
    }
    rows = [["float model quantized", _pct(validation.get("source_accuracy"))]]
    rows += [[names[b], _pct(a)] for b, a in validation["accuracy"].items()]
    rows += [
        [f"top-1 agreement {k.replace('_', ' vs ')}", _pct(v)]
        for k, v in validation["agreement"].items()
    ]
    lsb = validation.get("int_vs_fakequant_lsb")
    if lsb:
        rows.append(["integer vs fake-quant logits, max difference", f"{lsb['max']:.2f} LSB"])
    return table([f"validation ({validation['n']} clips)", "value"], rows)


def _size_table(sizes: dict) -> str:
    from tinykws.report.html import table

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


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
