"""The quantize stage in a run directory: artefacts, final model, metrics, report section, a
pruned source model, a sweep, and a bad table that writes nothing."""

import json
from dataclasses import replace

import pytest
from support import tone_run

from tinykws.checkpoint import load_checkpoint, save_checkpoint
from tinykws.cli import main
from tinykws.errors import TinyKWSError
from tinykws.models import build_model, config_to_dict, model_config
from tinykws.report.sections import quantize_section as report_section
from tinykws.run.pipeline import Run, run_recipe
from tinykws.run.stages.quantize import stage_quantize

MODEL = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}


@pytest.fixture(scope="module")
def trained_run(tone_corpus, tmp_path_factory):
    train = {"epochs": 6, "batch_size": 16, "augment": {"enabled": False}}
    return tone_run(tone_corpus, tmp_path_factory.mktemp("stage"), "mfcc", MODEL, train)


def with_table(recipe, run_dir, table):
    return Run(recipe=replace(recipe, extra={"quantize": table}), dir=run_dir)


def test_stage_writes_artefacts_and_becomes_the_final_model(trained_run, tone_corpus, capsys):
    recipe, run_dir = trained_run
    metrics = stage_quantize(with_table(recipe, run_dir, {"calibration_per_class": 4}))
    for name in (
        "model.safetensors",
        "model.json",
        "model.npz",
        "summary.json",
        "source.json",
        "learnables.png",
        "parameter_memory.png",
    ):
        assert (run_dir / "quantize" / name).is_file(), name
    assert json.loads((run_dir / "final.json").read_text()) == {
        "model": "quantize/model.safetensors"
    }
    assert json.loads((run_dir / "metrics.json").read_text())["quantize"] == metrics
    assert metrics["agreement_fakequant_int"] >= 0.995 and metrics["compression_ratio"] > 3
    assert main(["evaluate", str(run_dir), "--data", str(tone_corpus), "--backend", "int"]) == 0
    html = report_section(run_dir)
    assert "<h2>Quantization</h2>" in html and html.count("data:image/png") == 2
    from tinykws.report.html import write_report

    assert "<h2>Model</h2>" in write_report(run_dir).read_text()  # the float net of the final
    assert "integer graph" in html and "top-1 agreement fakequant vs int" in html
    # A second run starts again from the trained model, not from its own output.
    stage_quantize(with_table(recipe, run_dir, {"weight_bits": 4, "calibration_per_class": 4}))
    source = json.loads((run_dir / "quantize" / "source.json").read_text())["model"]
    assert source == "train/best.safetensors"
    assert (
        json.loads((run_dir / "quantize" / "summary.json").read_text())["config"]["weight_bits"]
        == 4
    )


def test_pruned_source_gets_its_own_bar_and_a_sweep_is_drawn(trained_run, tmp_path):
    recipe, run_dir = trained_run
    _, meta = load_checkpoint(run_dir / "train" / "best.safetensors")
    narrow = model_config({**MODEL, "first_filters": 4, "block_filters": [6, 6]}, 12, (49, 10))
    pruned_dir = run_dir / "prune"
    save_checkpoint(
        pruned_dir / "model.safetensors",
        build_model(narrow).state_dict(),
        meta | {"model": config_to_dict(narrow)},
    )
    (run_dir / "final.json").write_text(json.dumps({"model": "prune/model.safetensors"}))
    table = {
        "calibration_per_class": 2,
        "sweep": {"bits": [2, 8], "schemes": ["asym", "sym"], "methods": ["ptq"]},
    }
    stage_quantize(with_table(recipe, run_dir, table))
    summary = json.loads((run_dir / "quantize" / "summary.json").read_text())
    sizes = summary["sizes"]
    assert list(sizes) == ["original", "pruned", "quantized"]
    assert sizes["original"]["learnables"] > sizes["pruned"]["learnables"]
    assert sizes["pruned"]["total_bytes"] > 3 * sizes["quantized"]["total_bytes"]
    rows = json.loads((run_dir / "quantize" / "sweep.json").read_text())["rows"]
    assert [(r["scheme"], r["weight_bits"]) for r in rows] == [
        ("asym", 2),
        ("asym", 8),
        ("sym", 2),
        ("sym", 8),
    ]
    assert all(r["agreement_fakequant_int"] >= 0.995 for r in rows)
    assert (run_dir / "quantize" / "sweep.png").is_file()
    assert report_section(run_dir).count("data:image/png") == 3
    (run_dir / "final.json").write_text(json.dumps({"model": "train/best.safetensors"}))


def test_bad_table_is_one_line_and_writes_nothing(trained_run, tmp_path):
    recipe, run_dir = trained_run
    before = sorted(p.name for p in (run_dir / "quantize").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "quantize").iterdir()}
    for table, message in (
        ({"weight_bits": 1}, "weight_bits must be in"),
        ({"sweep": {"bits": [12]}}, "quantize.sweep.bits must be in"),
    ):
        with pytest.raises(TinyKWSError, match=message):
            stage_quantize(with_table(recipe, run_dir, table))
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "quantize").iterdir()}
    assert sorted(after) == before and after == stamps


def test_no_section_without_the_stage(tmp_path):
    assert report_section(tmp_path) == ""


def test_a_changed_stage_restarts_from_the_model_before_it(trained_run, tmp_path):
    """Re-running a recipe whose prune table changed prunes the trained model again, not the
    quantized model that the first run left as the final one."""
    import shutil

    recipe, run_dir = trained_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    prune = {"method": "l1", "amount": 0.25, "retrain_enabled": False}
    first = replace(
        recipe,
        stages=("data", "train", "prune", "quantize"),
        extra={"prune": prune, "quantize": {"calibration_per_class": 4}},
    )
    run_recipe(first, run)
    assert json.loads((run / "final.json").read_text())["model"] == "quantize/model.safetensors"
    second = replace(first, extra=first.extra | {"prune": prune | {"amount": 0.5}})
    run_recipe(second, run)
    pruned = json.loads((run / "prune" / "summary.json").read_text())
    assert pruned["source"].endswith("train/best.safetensors")
    assert json.loads((run / "final.json").read_text())["model"] == "quantize/model.safetensors"
