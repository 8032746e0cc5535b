"""The grid stage: width x sparsity points trained with gradual pruning, quantized, exported,
measured and judged; the Pareto front; its report section; and bad [grid] tables."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tinykws.cache import content_key
from tinykws.errors import TinyKWSError
from tinykws.export.c.mcu import can_emulate
from tinykws.measure.predictors import load_predictor
from tinykws.report.grid import grid_section
from tinykws.report.html import write_report
from tinykws.run.pipeline import Run, run_recipe, stage_config
from tinykws.run.recipe import parse
from tinykws.run.stages.data import split_arrays
from tinykws.run.stages.grid import GridPoint, dominates, mark_pareto, point_model_config

MODEL = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}
FLASH_LIMIT = 6000  # bytes, zipped: a limit some points may miss; each row is checked below
GRID = {"widths": [0.5, [8, 12, 12]], "sparsities": [0.0, 0.6], "epochs": 1, "latency_runs": 5}
CHECK = {"max_flash": FLASH_LIMIT, "zipped": True, "max_pc_latency": "1s", "min_accuracy": 0.0}


def recipe_of(root, base, grid=GRID, check=CHECK):
    return parse(
        {
            "name": "tones",
            "stages": ["data", "grid", "report"],
            "data": {"root": str(root), "cache_dir": str(base / "cache"), "preset": "12"}
            | {"unknown_fraction": 1.0},
            "frontend": {"preset": "mfcc"},
            "model": MODEL,
            "train": {"epochs": 9, "batch_size": 16, "augment": {"enabled": False}}
            | {"device": "cpu", "prune": {"frequency": 2, "end": 0.5}},
            "check": check,
            "grid": grid,
        }
    )


@pytest.fixture(scope="module")
def grid_run(tone_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("grid")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_recipe(recipe_of(tone_corpus, base), base / "run")
    finally:
        torch.set_num_threads(threads)
    return base / "run"


def test_every_point_is_trained_measured_and_judged(grid_run):
    summary = json.loads((grid_run / "grid" / "points.json").read_text())
    points = {p["name"]: p for p in summary["points"]}
    assert list(points) == ["w0.5_s0", "w0.5_s0.6", "w8x12x12_s0", "w8x12x12_s0.6"]
    for name, p in points.items():
        tflite = grid_run / "grid" / "points" / name / "model.tflite"
        assert tflite.stat().st_size == p["tflite_bytes"] > p["zipped_bytes"] > 0
        assert 0.0 <= p["accuracy"] <= 1.0 and p["latency_ms"] > 0
        rows = {r["name"]: r for r in p["checks"]}
        assert rows["flash"]["passed"] == (p["zipped_bytes"] <= FLASH_LIMIT)
        assert p["passed"] == all(r["passed"] for r in rows.values())
    # 1 epoch with the grid's short schedule, not train.epochs = 9
    history = json.loads((grid_run / "grid/points/w0.5_s0/train/history.json").read_text())
    assert len(history["val_accuracy"]) == 1
    # the multiplier halves the widths; the explicit list sets them
    assert points["w0.5_s0"]["params"] < points["w8x12x12_s0"]["params"]
    assert points["w8x12x12_s0"]["measured_sparsity"] == 0.0
    assert points["w8x12x12_s0.6"]["measured_sparsity"] == pytest.approx(0.6, abs=0.03)
    # pruned weights are zeros, which the zip compresses away
    assert points["w8x12x12_s0.6"]["zipped_bytes"] < points["w8x12x12_s0"]["zipped_bytes"]


def test_pareto_front_is_the_undominated_points(grid_run):
    points = json.loads((grid_run / "grid" / "points.json").read_text())["points"]
    for p in points:
        beaten = any(dominates(q, p) for q in points if q is not p)
        assert p["pareto"] == (not beaten)
    with open(grid_run / "grid" / "pareto.csv") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    assert sorted(names) == sorted(p["name"] for p in points if p["pareto"]) and names
    metrics = json.loads((grid_run / "metrics.json").read_text())["grid"]
    assert metrics["points"] == 4 and sorted(metrics["pareto"]) == sorted(names)


def test_report_shows_table_and_plot(grid_run):
    section = grid_section(grid_run)
    assert "<h2>Grid search</h2>" in section and section.count("<tr>") == 5
    assert "data:image/png;base64" in section  # the scatter plot
    assert "<h2>Grid search</h2>" in write_report(grid_run).read_text()


def test_mark_pareto_on_known_points():
    points = [
        {"name": "a", "accuracy": 0.9, "zipped_bytes": 100, "latency_ms": 1.0},
        {"name": "b", "accuracy": 0.8, "zipped_bytes": 100, "latency_ms": 1.0},  # beaten by a
        {"name": "c", "accuracy": 0.95, "zipped_bytes": 300, "latency_ms": 1.0},  # more accurate
        {"name": "d", "accuracy": 0.7, "zipped_bytes": 50, "latency_ms": 2.0},  # smaller
    ]
    mark_pareto(points)
    assert [p["name"] for p in points if p["pareto"]] == ["a", "c", "d"]


def test_explicit_widths_fill_the_width_fields():
    config = point_model_config(MODEL, GridPoint((10, 20, 30), 0.0), 4, (49, 10))
    assert (config.first_filters, config.block_filters) == (10, (20, 30))
    with pytest.raises(TinyKWSError, match="takes 3"):
        point_model_config(MODEL, GridPoint((10, 20), 0.0), 4, (49, 10))


@pytest.mark.parametrize(
    "grid, words",
    [
        ({"widths": [0]}, "width multiplier"),
        ({"widths": [[8, "x"]]}, "width multiplier"),
        ({"sparsities": [1.0]}, "grid.sparsities"),
        ({"widths": []}, "at least one"),
        ({"epoch": 1}, "epochs"),
    ],
)
def test_bad_grid_table_is_one_clear_error(tmp_path, grid, words):
    with pytest.raises(TinyKWSError, match=words):
        recipe_of(tmp_path, tmp_path, grid)


@pytest.mark.slow
@pytest.mark.skipif(
    not can_emulate(),
    reason="needs arm-none-eabi-gcc and qemu-system-arm",
)
def test_max_latency_is_the_emulated_cortex_m4(tone_corpus, tmp_path):
    grid = {"widths": [0.5], "sparsities": [0.5], "epochs": 1, "latency_runs": 2}
    check = {"max_latency": "1s", "mcu_clock": "80MHz"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_recipe(recipe_of(tone_corpus, tmp_path, grid, check), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "run" / "grid" / "points.json").read_text())
    assert summary["latency_source"] == "Cortex-M4 (emulated)"
    (point,) = summary["points"]
    (row,) = point["checks"]
    assert row["source"].startswith("Cortex-M4 (emulated)")
    assert row["value"] == f"{point['latency_ms']:.3f} ms" and row["passed"]


@pytest.mark.slow
def test_dynamic_range_points_are_scored_in_litert(tone_corpus, tmp_path):
    grid = {"widths": [0.5], "sparsities": [0.5], "epochs": 1, "latency_runs": 2}
    grid["quantize"] = "dynamic"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_recipe(recipe_of(tone_corpus, tmp_path, grid), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "run" / "grid"
    summary = json.loads((out / "points.json").read_text())
    assert summary["latency_source"] == "LiteRT dynamic range, batch 1, this PC"
    assert summary["quantize"] == "dynamic"
    (point,) = summary["points"]
    # the file's own accuracy: LiteRT's hybrid kernels on the validation features
    model = out / "points" / point["name"] / "model.tflite"
    predictor = load_predictor(model)
    run = Run(recipe_of(tone_corpus, tmp_path, grid), tmp_path / "run")
    _, _, features, labels = split_arrays(run, "validation")
    expected = float(np.mean(predictor.logits(features).argmax(1) == labels))
    assert point["accuracy"] == pytest.approx(expected)
    assert "dynamic range (int8 weights)" in grid_section(tmp_path / "run")


def test_grid_key_follows_training_pruning_and_check(tmp_path):
    recipe = recipe_of(tmp_path, tmp_path)
    key = content_key("grid", stage_config(recipe, "grid"), "")
    changed = [
        recipe_of(tmp_path, tmp_path, check=CHECK | {"max_flash": 1}),
        replace(recipe, train=replace(recipe.train, lr=1e-4)),
        replace(recipe, train_prune=replace(recipe.train_prune, frequency=3)),
        replace(recipe, model=MODEL | {"first_filters": 4}),
    ]
    for other in changed:
        assert content_key("grid", stage_config(other, "grid"), "") != key
