"""The quantize stage of a recipe run, and its section of report.html.

The stage quantizes the run's current final model (the trained model, or the pruned one when a
prune stage ran before), writes everything into `quantize/` (see `tinykws.quant.workflow`),
and makes the quantized checkpoint the run's final model, so `tinykws evaluate RUN --backend
int` scores the integer graph. Its table in the recipe is `QuantConfig`, plus an optional
`[quantize.sweep]` (`QuantSweepConfig`):

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

`[[quantize.sweep]]` (an array of tables, each with an optional `name`) runs several sweeps;
each writes its own quantize/sweep-<name>.json / .csv / .png, listed in summary.json "sweeps".
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tinykws.config import from_dict, labelled_stem
from tinykws.errors import TinyKWSError
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.measure.predictors import load_torch
from tinykws.quant import QuantConfig, QuantData
from tinykws.quant.data import calibration_features
from tinykws.quant.qat import as_trained
from tinykws.quant.sizes import float_memory
from tinykws.quant.sweep import quant_sweeps, run_sweep, write_sweep
from tinykws.quant.workflow import SUMMARY_FILE, QuantJob, metrics_of, run_job
from tinykws.run.stages.data import load_run_dataset, run_frontend, split_arrays, training_data
from tinykws.train.model_file import FINAL_MODEL_FILE, normalization

STAGE = "quantize"
TRAINED_MODEL = "train/best.safetensors"
SOURCE_FILE = "source.json"


def parse_table(table: dict):
    """(QuantConfig, tuple of QuantSweepConfig) from a recipe's [quantize] table; the sweeps
    come from one [quantize.sweep] table or an array of them, and may be none."""
    table = dict(table or {})
    sweeps = table.pop("sweep", None)
    config = from_dict(QuantConfig, table, STAGE)
    return config, quant_sweeps(sweeps, "quantize.sweep")


def source_model(run_dir: Path) -> str:
    """The run-relative path of the float model to quantize (the final model before this stage)."""
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
    config, sweeps = parse_table(run.recipe.extra.get(STAGE, {}))
    source = source_model(run.dir)
    job = _job(run, config, sweeps, source)
    rows = _sweep_rows(job, sweeps)  # computed before anything is written
    summary = run_job(job)
    _write_sweeps(run.dir / STAGE, summary, sweeps, rows)
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


def _sweep_rows(job: QuantJob, sweeps) -> list[list[dict]]:
    """The rows of each sweep, quantizing from the job's model and base config."""
    # the same base config run_job quantizes with (QAT settings as the model was trained)
    base = replace(job.config, qat=as_trained(job.config.qat, job.meta))
    return [
        run_sweep(job.model, base, job.data, job.val_features, job.val_labels, sweep)
        for sweep in sweeps
    ]


def _write_sweeps(out: Path, summary: dict, sweeps, rows: list[list[dict]]) -> None:
    """Each sweep's files, and their list in summary.json ("sweeps"; "sweep" for one unnamed
    sweep, as before)."""
    if not sweeps:
        return
    float_accuracy = summary["validation"].get("source_accuracy")
    entries = []
    for sweep, sweep_rows in zip(sweeps, rows):
        stem = labelled_stem(sweeps, sweep)
        write_sweep(sweep_rows, float_accuracy, out, stem)
        entries.append({"name": sweep.label, "stem": stem, "file": f"{stem}.json"})
    summary["sweeps"] = entries
    if entries[0]["stem"] == "sweep":
        summary["sweep"] = "sweep.json"
    write_json(out / SUMMARY_FILE, summary)


def _job(run, config, sweeps, source: str):
    """The `QuantJob` of a run: its model, calibration set, validation split, earlier sizes."""
    predictor = load_torch(run.dir / source)
    norm = normalization(predictor.meta)
    dataset, frontend = load_run_dataset(run), run_frontend(run)
    training = None
    if config.method == "qat" or any("qat" in sweep.methods for sweep in sweeps):
        training = replace(training_data(run), normalization=norm)
    calibration = calibration_features(dataset, frontend, config, run.cache_dir)
    _, _, val_features, val_labels = split_arrays(run, "validation")
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
        None,  # the stage runs the sweeps itself, each into its own files
        run.recipe.name,
    )


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
