"""The grid stage of a recipe run: model width x sparsity, each point trained, quantized,
measured and judged against the recipe's [check] limits (the go/stop study's search).

    [grid]
    widths = [0.5, 1.0]            # width multipliers of [model] ...
    # widths = [[45, 22, 22], [90, 45, 45]]   # ... or every width field, in order
    sparsities = [0.5, 0.85]       # final sparsity of gradual pruning (0 = dense)
    epochs = 5                     # a short schedule (0 = train.epochs)
    latency_runs = 50              # timed LiteRT calls per point (the median counts)
    quantize = "ptq"               # ptq (int8, runs on a microcontroller) | dynamic

Each point trains the model of that width with `[train]` (its epochs replaced by `epochs`),
pruning gradually to the point's sparsity along `[train.prune]` (its defaults when the recipe
has none), then quantizes it (int8 PTQ, or dynamic range: int8 weights, float activations) and
exports it to .tflite. It measures what `tinykws check` measures: the validation accuracy of
what the .tflite file computes (the int8 graph, equal to it bit for bit; a dynamic-range file
is scored in LiteRT itself), the zipped size of the .tflite file, and the latency: front end +
network at batch 1 in LiteRT on this PC, or, for int8 points when [check] sets max_latency and
arm-none-eabi-gcc and qemu-system-arm are installed, the emulated Cortex-M4 count at
mcu_clock. Written under grid/:

    points/<name>/        the point's training, quantized model and model.tflite
    points.json           every point: settings, figures, check rows, passed, pareto
    pareto.csv            the points no other point beats on accuracy, zipped size and latency
    pareto.png            accuracy vs zipped size, latency as colour, the Pareto points ringed
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinykws.config import check_choice, check_range, from_dict, to_dict
from tinykws.errors import TinyKWSError
from tinykws.export.c.mcu import can_emulate
from tinykws.io import save_figure, write_json
from tinykws.log import logger
from tinykws.measure.check import CheckConfig, RunFigures, check_figures, parse_hz
from tinykws.measure.latency import LatencyConfig, frontend_ms
from tinykws.measure.metrics import measure_mcu, static_metrics
from tinykws.measure.model_file import load_model
from tinykws.measure.predictors import load_predictor
from tinykws.measure.runtimes import TFLiteRunner
from tinykws.models import build_model, count_params, model_config
from tinykws.plots import pyplot
from tinykws.progress import track
from tinykws.prune.gradual import TrainPruneConfig, fit_pruned
from tinykws.quant import QuantConfig, QuantData
from tinykws.quant.data import calibration_features
from tinykws.quant.workflow import QuantJob, run_job
from tinykws.run.exporting import export_model
from tinykws.run.stages.data import (
    load_run_dataset,
    model_meta,
    run_frontend,
    split_arrays,
    training_data,
)
from tinykws.timing import median_ms
from tinykws.train.evaluate import top1_accuracy
from tinykws.train.loop import fit

STAGE = "grid"
POINTS_FILE = "points.json"
PARETO_FILE = "pareto.csv"
PARETO_PLOT = "pareto.png"


@dataclass(frozen=True)
class GridConfig:
    """The `[grid]` table (see the module docstring).

    Attributes:
        widths: width multipliers (numbers) or explicit widths (lists of integers, one per
            width field of the model, in order: e.g. DS-CNN first_filters then block_filters).
        sparsities: final sparsities of gradual pruning during training, each in [0, 1).
        epochs: training epochs per point; 0 takes train.epochs.
        latency_runs: timed calls per latency measurement.
        quantize: "ptq" (int8 weights and activations) or "dynamic" (int8 weights, float
            activations; no microcontroller count).
    """

    widths: tuple[Any, ...] = (1.0,)
    sparsities: tuple[float, ...] = (0.0,)
    epochs: int = 0
    latency_runs: int = 50
    quantize: str = "ptq"

    def __post_init__(self):
        check_choice("grid.quantize", self.quantize, ("ptq", "dynamic"))
        if not self.widths or not self.sparsities:
            raise TinyKWSError("grid: widths and sparsities must each list at least one value")
        for width in self.widths:
            _check_width(width)
        for amount in self.sparsities:
            check_range("grid.sparsities", amount, 0.0, 1.0, high_open=True)
        if self.epochs < 0 or self.latency_runs < 1:
            raise TinyKWSError("grid: epochs must be >= 0 and latency_runs >= 1")


def _check_width(width) -> None:
    is_number = isinstance(width, (int, float)) and not isinstance(width, bool)
    is_list = isinstance(width, (list, tuple)) and all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in width
    )
    if not (is_number and width > 0) and not (is_list and width):
        raise TinyKWSError(
            f"grid.widths: {width!r} is neither a positive width multiplier nor a list of "
            "filter counts; write e.g. widths = [0.5, 1.0] or [[45, 22, 22], [90, 45, 45]]"
        )


@dataclass(frozen=True)
class GridPoint:
    """One point of the grid: a width (multiplier or widths) and a final sparsity."""

    width: Any
    sparsity: float

    @property
    def name(self) -> str:
        width = "x".join(map(str, self.width)) if isinstance(self.width, tuple) else self.width
        return f"w{width}_s{self.sparsity:g}"


def grid_points(config: GridConfig) -> list[GridPoint]:
    """Every width x sparsity, widths outermost, in the order the recipe lists them.

    Example:
        >>> [p.name for p in grid_points(GridConfig(widths=(0.5, (8, 4)), sparsities=(0, 0.5)))]
        ['w0.5_s0', 'w0.5_s0.5', 'w8x4_s0', 'w8x4_s0.5']
    """
    widths = [tuple(w) if isinstance(w, (list, tuple)) else float(w) for w in config.widths]
    return [GridPoint(w, float(s)) for w in widths for s in config.sparsities]


def point_model_config(spec: dict, point: GridPoint, n_classes: int, input_shape) -> Any:
    """The [model] config at the point's width: scaled by a multiplier, or with its width
    fields (in `WIDTH_FIELDS` order) set from the explicit list."""
    spec = dict(spec)
    if not isinstance(point.width, tuple):
        spec["width_multiplier"] = point.width * float(spec.get("width_multiplier", 1.0))
        return model_config(spec, n_classes, input_shape)
    config = model_config(spec, n_classes, input_shape)
    current = {name: getattr(config, name) for name in config.WIDTH_FIELDS}
    counts = {name: len(v) if isinstance(v, tuple) else 1 for name, v in current.items()}
    if len(point.width) != sum(counts.values()):
        raise TinyKWSError(
            f"grid.widths: {list(point.width)} has {len(point.width)} widths; this "
            f"{config.family} takes {sum(counts.values())} ({', '.join(config.WIDTH_FIELDS)})"
        )
    widths, changes = list(point.width), {}
    for name, count in counts.items():
        taken, widths = widths[:count], widths[count:]
        changes[name] = tuple(taken) if isinstance(current[name], tuple) else taken[0]
    return dataclasses.replace(config, **changes)


def stage_grid(run) -> dict:
    """Train, quantize and measure every grid point; write points.json, pareto.csv/.png."""
    config = from_dict(GridConfig, run.recipe.extra.get(STAGE, {}), STAGE)
    check = from_dict(CheckConfig, run.recipe.extra.get("check", {}), "check")
    shared = GridContext.of(run, config, check)
    points = []
    for point in track(grid_points(config), "grid points"):
        points.append(_run_point(run, point, shared))
    mark_pareto(points)
    out = run.stage_dir(STAGE)
    summary = {"quantize": config.quantize, "latency_source": shared.latency_source}
    summary["check"] = to_dict(check)
    write_json(out / POINTS_FILE, summary | {"points": points})
    write_pareto_csv(points, out / PARETO_FILE)
    plot_pareto(points, out / PARETO_PLOT)
    pareto = [p["name"] for p in points if p["pareto"]]
    metrics = {"points": len(points), "passed": sum(p["passed"] for p in points), "pareto": pareto}
    run.update_metrics(STAGE, metrics)
    logger.info(f"grid: {len(points)} points, {metrics['passed']} pass the check; Pareto: {pareto}")
    return metrics


@dataclass
class GridContext:
    """What every point of a run's grid shares (loaded once)."""

    data: Any  # TrainingData: train and validation splits, normalisation
    labels: tuple[str, ...]
    input_shape: tuple[int, int]
    train: Any  # TrainConfig with the grid's epochs
    prune: TrainPruneConfig  # [train.prune] (or its defaults); final_sparsity set per point
    quant: QuantConfig
    quant_data: QuantData
    validation: tuple[np.ndarray, np.ndarray]  # un-normalised features, class ids
    check: CheckConfig
    mcu: bool  # latency = the emulated Cortex-M4 count (else LiteRT on this PC)
    latency: LatencyConfig
    frontend_ms: float

    @property
    def latency_source(self) -> str:
        if self.mcu:
            return "Cortex-M4 (emulated)"
        precision = "int8" if self.quant.method == "ptq" else "dynamic range"
        return f"LiteRT {precision}, batch 1, this PC"

    @classmethod
    def of(cls, run, config: GridConfig, check: CheckConfig) -> GridContext:
        data = training_data(run)
        dataset, frontend = load_run_dataset(run), run_frontend(run)
        quant = QuantConfig(method=config.quantize)
        _, _, val_features, val_labels = split_arrays(run, "validation")
        mcu = check.max_latency is not None and can_emulate() and quant.method == "ptq"
        latency = LatencyConfig(runs=config.latency_runs, warmup=5, cuda=False)
        calibration = calibration_features(dataset, frontend, quant, run.cache_dir)
        return cls(
            data=data,
            labels=tuple(dataset.labels),
            input_shape=frontend.output_shape,
            train=replace(run.recipe.train, epochs=config.epochs or run.recipe.train.epochs),
            prune=getattr(run.recipe, "train_prune", None) or TrainPruneConfig(),
            quant=quant,
            quant_data=QuantData(calibration, data.normalization),
            validation=(val_features, val_labels),
            check=check,
            mcu=bool(mcu),
            latency=latency,
            frontend_ms=frontend_ms({"frontend": to_dict(frontend.config)}, latency),
        )


def _run_point(run, point: GridPoint, shared: GridContext) -> dict:
    """Train (pruning gradually), quantize, export and measure one point."""
    out = run.stage_dir(STAGE) / "points" / point.name
    config = point_model_config(run.recipe.model, point, len(shared.labels), shared.input_shape)
    torch.manual_seed(shared.train.seed)
    model = build_model(config)
    meta = model_meta(run, config, shared.data.normalization)
    sparsity = _train_point(model, point, shared, out / "train", meta)
    val_features, val_labels = shared.validation
    job = QuantJob(
        model,
        meta,
        shared.quant,
        shared.quant_data,
        val_features,
        val_labels,
        out / "quantize",
        {},
        None,
        f"{run.recipe.name}-{point.name}",
    )
    summary = run_job(job)
    quantized = out / "quantize" / "model.safetensors"
    exported = export_model(quantized, "tflite", out / "model.tflite")
    figures = _figures(quantized, exported, summary["validation"], shared)
    rows = check_figures(figures, shared.check)
    return {
        "name": point.name,
        "width": list(point.width) if isinstance(point.width, tuple) else point.width,
        "sparsity": point.sparsity,
        "measured_sparsity": round(sparsity, 4),
        "params": count_params(model),
        "accuracy": figures.accuracy,
        "tflite_bytes": exported.bytes,
        "zipped_bytes": exported.zipped_bytes,
        "latency_ms": _latency_ms(figures, shared),
        "flash_bytes": figures.metrics["total"]["flash_bytes"],
        "ram_bytes": figures.metrics["total"]["ram_bytes"],
        "checks": [r.to_dict() for r in rows],
        "passed": all(r.passed for r in rows),
    }


def _train_point(model, point: GridPoint, shared: GridContext, out: Path, meta: dict) -> float:
    """Train the point's model in place; returns the sparsity it ends with (0 when dense)."""
    cfg, data = shared.train, shared.data
    if point.sparsity == 0:
        fit(model, data, cfg, out, meta)
        return 0.0
    prune = shared.prune
    prune = replace(
        prune,
        final_sparsity=point.sparsity,
        initial_sparsity=min(prune.initial_sparsity, point.sparsity),
    )
    _, report = fit_pruned(model, data, cfg, prune, out, meta)
    return report["sparsity"]["total"]


def _figures(quantized: Path, exported, validation: dict, shared: GridContext) -> RunFigures:
    """The point's figures in the form `tinykws check` judges (`RunFigures`)."""
    loaded = load_model(quantized)
    metrics = static_metrics(loaded)
    data = Path(exported.path).read_bytes()
    runner = TFLiteRunner(data, threads=shared.latency.threads)
    x = np.zeros(runner.input_shape, runner.input["dtype"])
    runs = shared.latency.runs
    network_ms = median_ms(runner.invoke, x, runs=runs, warmup=shared.latency.warmup)
    row = {"runtime": "litert", "device": "cpu", "precision": exported.precision}
    row |= {"network_ms": network_ms, "total_ms": network_ms + shared.frontend_ms}
    metrics["latency"] = {"rows": [row], "frontend_ms": shared.frontend_ms}
    artefact = {
        "format": "tflite",
        "precision": exported.precision,
        "bytes": exported.bytes,
        "zipped_bytes": exported.zipped_bytes,
    }
    if shared.quant.method == "ptq":
        accuracy, source = validation["accuracy"].get("int"), "int8 graph (= the .tflite file)"
    else:
        features, labels = shared.validation
        logits = load_predictor(exported.path).logits(features)
        accuracy, source = top1_accuracy(logits, labels), "the .tflite file in LiteRT"
    mcu = measure_mcu(loaded) if shared.mcu else None
    return RunFigures(artefact, metrics, accuracy, f"{source}, validation", mcu)


def _latency_ms(figures: RunFigures, shared: GridContext) -> float:
    """The latency the check compares: the Cortex-M4 count at the clock, else LiteRT on the PC."""
    if figures.mcu is not None:
        return figures.mcu["instructions"] / parse_hz(shared.check.mcu_clock) * 1e3
    return figures.metrics["latency"]["rows"][0]["total_ms"]


def dominates(a: dict, b: dict) -> bool:
    """`a` is at least as good as `b` on accuracy, zipped size and latency, and better on one.

    Example:
        >>> good = {"accuracy": 0.9, "zipped_bytes": 100, "latency_ms": 1.0}
        >>> dominates(good, {"accuracy": 0.8, "zipped_bytes": 100, "latency_ms": 1.0})
        True
        >>> dominates(good, {"accuracy": 0.95, "zipped_bytes": 200, "latency_ms": 2.0})
        False
    """
    acc_a, acc_b = a["accuracy"] or 0.0, b["accuracy"] or 0.0
    no_worse = (
        acc_a >= acc_b
        and a["zipped_bytes"] <= b["zipped_bytes"]
        and a["latency_ms"] <= b["latency_ms"]
    )
    better = (
        acc_a > acc_b or a["zipped_bytes"] < b["zipped_bytes"] or a["latency_ms"] < b["latency_ms"]
    )
    return no_worse and better


def mark_pareto(points: list[dict]) -> None:
    """Set each point's "pareto": no other point dominates it."""
    for point in points:
        point["pareto"] = not any(dominates(other, point) for other in points if other is not point)


PARETO_COLUMNS = (
    "name", "width", "sparsity", "accuracy", "zipped_bytes", "latency_ms", "params", "passed"
)  # fmt: skip


def write_pareto_csv(points: list[dict], path: Path) -> None:
    """The Pareto points, most accurate first."""
    front = sorted((p for p in points if p["pareto"]), key=lambda p: -(p["accuracy"] or 0.0))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PARETO_COLUMNS)
        for p in front:
            writer.writerow([p[c] for c in PARETO_COLUMNS])


def plot_pareto(points: list[dict], out_png: Path) -> None:
    """Accuracy vs zipped size, coloured by latency; Pareto points ringed, names written."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    size_kb = [p["zipped_bytes"] / 1000 for p in points]
    accuracy = [100 * (p["accuracy"] or 0.0) for p in points]
    dots = ax.scatter(size_kb, accuracy, c=[p["latency_ms"] for p in points], cmap="viridis")
    fig.colorbar(dots, ax=ax, label="latency (ms)")
    front = [i for i, p in enumerate(points) if p["pareto"]]
    ax.scatter(
        [size_kb[i] for i in front],
        [accuracy[i] for i in front],
        s=160,
        facecolors="none",
        edgecolors="red",
        label="Pareto",
    )
    for x, y, p in zip(size_kb, accuracy, points):
        ax.annotate(p["name"], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("zipped .tflite size (kB)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out_png)
