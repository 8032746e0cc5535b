"""Constraint checks: unit parsing, pass/fail rows, exit codes of `tinykws check`, and the export
and check stages on a tiny run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tinykws.cli import main
from tinykws.errors import TinyKWSError
from tinykws.measure.check import (
    CheckConfig,
    check_run,
    parse_bytes,
    parse_fraction,
    parse_hz,
    parse_ms,
)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_units():
    assert parse_bytes("25KB") == 25_000 and parse_bytes("25 kB") == 25_000
    assert parse_bytes("28KiB") == 28_672 and parse_bytes(1000) == 1000
    assert parse_ms("8ms") == 8.0 and parse_ms("0.008s") == 8.0 and parse_ms("250us") == 0.25
    assert parse_fraction("97%") == pytest.approx(0.97) and parse_fraction(0.5) == 0.5
    assert parse_hz("80MHz") == 80e6 and parse_hz("48 mhz") == 48e6 and parse_hz(1e6) == 1e6
    for bad, parse in (
        ("25 parsecs", parse_bytes),
        ("fast", parse_ms),
        ("1.5", parse_fraction),
        ("80MB", parse_hz),
    ):
        with pytest.raises(TinyKWSError):
            parse(bad)


def test_config_from_a_recipe_table():
    from tinykws.config import from_dict

    config = from_dict(CheckConfig, {"max_flash": "25KB", "zipped": True}, "check")
    assert config.zipped and parse_bytes(config.max_flash) == 25_000
    with pytest.raises(TinyKWSError, match="valid keys"):
        from_dict(CheckConfig, {"max_flsh": "25KB"}, "check")
    with pytest.raises(TinyKWSError, match="latency"):
        CheckConfig(max_latency="soon")


@pytest.fixture()
def measured_run(tmp_path):
    """A run directory with what the export stage writes (figures chosen by hand)."""
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    artefact = {
        "format": "tflite",
        "path": "export/model.tflite",
        "bytes": 30_000,
        "zipped_bytes": 24_000,
        "precision": "int8",
        "io_dtype": "int8",
        "accuracy": {"validation": 0.98},
        "agreement": {"validation": 1.0},
    }
    (run / "export" / "summary.json").write_text(json.dumps({"artefacts": [artefact]}))
    metrics = {
        "total": {"flash_bytes": 27_000, "ram_bytes": 17_000},
        "latency": {
            "rows": [
                {
                    "runtime": "pytorch",
                    "device": "cpu",
                    "precision": "float32",
                    "network_ms": 0.7,
                    "total_ms": 9.0,
                },
                {
                    "runtime": "litert",
                    "device": "cpu",
                    "precision": "int8",
                    "network_ms": 0.05,
                    "total_ms": 7.5,
                },
            ]
        },
    }
    (run / "export" / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_rows_use_the_exported_file(measured_run):
    rows = check_run(
        measured_run,
        CheckConfig(
            min_accuracy=0.97, max_flash="25KB", zipped=True, max_ram="64KB", max_latency="8ms"
        ),
    )
    assert [(r.name, r.passed) for r in rows] == [
        ("accuracy", True),
        ("flash", True),
        ("RAM", True),
        ("latency", True),
    ]
    assert "litert int8" in rows[3].source and "zipped tflite" in rows[1].source
    assert rows[3].source.startswith("PC, not a microcontroller")  # no Cortex-M4 count here
    unzipped = check_run(measured_run, CheckConfig(max_flash="25KB"))
    assert not unzipped[0].passed  # 27,000 B of weights, biases and qparams


def test_check_exit_codes(measured_run, capsys):
    args = [
        "check",
        str(measured_run),
        "--min-accuracy",
        "97%",
        "--max-flash",
        "25KB",
        "--zipped",
        "--max-latency",
        "8ms",
        "--max-ram",
        "64KB",
    ]
    assert main(args) == 0
    assert "pass" in capsys.readouterr().out
    assert main([*args[:-2], "--max-ram", "16KB"]) == 1
    line = one_error_line(capsys)
    assert "RAM" in line and "17,000" in line
    assert main(["check", str(measured_run)]) == 2
    assert "no limit" in one_error_line(capsys)
    assert main(["check", str(measured_run / "missing"), "--max-ram", "1KB"]) == 2
    one_error_line(capsys)
    assert main(["check", str(measured_run), "--max-flash", "1KB", "--format", "onnx"]) == 2
    assert "no exported onnx" in one_error_line(capsys)


def with_mcu_count(run, instructions: int = 56_100_000):
    """The run's metrics.json with an emulated Cortex-M4 count (front end included)."""
    path = run / "export" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["mcu"] = {
        "instructions": instructions,
        "frontend_instructions": 5_000_000,
        "optimization": "-Os",
    }
    path.write_text(json.dumps(metrics))
    return run


def test_latency_is_judged_on_the_microcontroller_count(measured_run):
    run = with_mcu_count(measured_run)
    rows = check_run(run, CheckConfig(max_latency="8ms", max_pc_latency="8ms"))
    assert [(r.name, r.passed) for r in rows] == [("latency", False), ("PC latency", True)]
    assert rows[0].value == "701.250 ms"  # 56.1 M instructions / 80 MHz
    assert "Cortex-M4 (emulated) 56.1 M instructions at 80 MHz = 701 ms" in rows[0].source
    assert "litert int8" in rows[1].source
    fast = check_run(run, CheckConfig(max_latency="400ms", mcu_clock="160MHz"))
    assert fast[0].passed and fast[0].value == "350.625 ms"
    with pytest.raises(TinyKWSError, match="clock"):
        CheckConfig(max_latency="8ms", mcu_clock="fast")


def test_check_verb_with_a_clock(measured_run, capsys):
    run = str(with_mcu_count(measured_run))
    assert main(["check", run, "--max-latency", "1s", "--mcu-clock", "80MHz"]) == 0
    assert main(["check", run, "--max-latency", "8ms"]) == 1
    assert "latency 701.250 ms" in one_error_line(capsys)
    assert main(["check", run, "--max-pc-latency", "8ms"]) == 0


@pytest.fixture(scope="module")
def exported_run(tone_corpus, tmp_path_factory):
    """data -> train -> quantize -> export (tflite, onnx, c) -> check on the tone corpus."""
    import torch
    from support import tone_run

    from tinykws.run.pipeline import Run
    from tinykws.run.stages.check import stage_check
    from tinykws.run.stages.export import stage_export
    from tinykws.run.stages.quantize import stage_quantize

    train = {"epochs": 3, "batch_size": 32, "device": "cpu", "augment": {"enabled": False}}
    recipe, run_dir = tone_run(
        tone_corpus, tmp_path_factory.mktemp("exported"), "micro", {"preset": "tinyconv"}, train
    )
    extra = {
        "quantize": {"calibration_per_class": 3},
        "export": {"formats": ["tflite", "onnx", "c"], "runs": 5},
        "check": {"min_accuracy": 0.0, "max_ram": "64KB", "max_latency": "10s"},
    }
    run = Run(recipe=dataclasses.replace(recipe, extra=extra), dir=run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stage_quantize(run)
        outputs = stage_export(run)
        stage_check(run)
    finally:
        torch.set_num_threads(threads)
    return run, outputs


def test_export_stage_writes_files_and_figures(exported_run):
    run, outputs = exported_run
    summary = json.loads((run.dir / "export" / "summary.json").read_text())
    formats = [a["format"] for a in summary["artefacts"]]
    assert formats == ["tflite", "onnx", "c"]
    tflite = summary["artefacts"][0]
    assert (run.dir / tflite["path"]).is_file() and tflite["precision"] == "int8"
    assert tflite["agreement"]["validation"] >= 0.9 and 0 < tflite["zipped_bytes"]
    c_files = summary["artefacts"][2]
    assert c_files["agreement"]["validation"] == 1.0  # gcc build == integer graph, bit for bit
    metrics = json.loads((run.dir / "export" / "metrics.json").read_text())
    assert metrics["total"]["macs"] == outputs["macs"] > 0
    assert len(metrics["latency"]["rows"]) >= 4
    sizes = run.dir / "export" / "c" / "sizes.json"  # written where arm-none-eabi-gcc exists
    if sizes.is_file():
        assert metrics["flash"]["code_bytes"] == json.loads(sizes.read_text())["text"] > 0
    mcu = run.dir / "export" / "c" / "mcu.json"  # written where qemu-system-arm exists too
    if mcu.is_file():
        assert metrics["mcu"]["instructions"] == json.loads(mcu.read_text())["instructions"] > 0
        assert outputs["mcu_instructions"] == metrics["mcu"]["instructions"]
        assert (run.dir / "export" / "mcu_ops.png").is_file()
        result = json.loads((run.dir / "check" / "result.json").read_text())
        assert "Cortex-M4 (emulated)" in result["rows"][-1]["source"]
    run_metrics = json.loads((run.dir / "metrics.json").read_text())
    assert run_metrics["check"]["passed"] is True
    assert "tflite_zipped_bytes" in run_metrics["export"]


def test_report_sections(exported_run):
    from tinykws.report.sections import artefacts_section, check_section, metrics_section

    run, _ = exported_run
    assert "model.tflite" in artefacts_section(run.dir)
    metrics = metrics_section(run.dir)
    assert "Cortex-M" in metrics and "litert" in metrics and "MACs" in metrics
    if (run.dir / "export" / "c" / "mcu.json").is_file():
        assert "emulated" in metrics and "data:image/png" in metrics
    assert "all constraints met" in check_section(run.dir)
    assert artefacts_section(run.dir / "missing") == "" == metrics_section(run.dir / "missing")


def test_check_verb_on_the_run(exported_run, capsys):
    run, _ = exported_run
    assert (
        main(["check", str(run.dir), "--max-flash", "100KB", "--zipped", "--format", "onnx"]) == 0
    )
    assert main(["check", str(run.dir), "--max-flash", "100B"]) == 1
    assert "flash" in one_error_line(capsys)


def test_strict_check_stage_stops_the_run(exported_run):
    from tinykws.errors import ConstraintFailed
    from tinykws.run.stages.check import stage_check

    run, _ = exported_run
    strict = dataclasses.replace(run.recipe, extra={"check": {"max_ram": "1B", "strict": True}})
    with pytest.raises(ConstraintFailed):
        stage_check(dataclasses.replace(run, recipe=strict))


def test_automatic_formats_skip_what_cannot_hold_the_model(tone_corpus, tmp_path):
    import logging

    from export_helpers import save_quantized

    from tinykws.log import logger
    from tinykws.measure.model_file import load_model
    from tinykws.run.exporting import ExportOptions
    from tinykws.run.stages.export import ExportStageConfig, _export_all

    source = save_quantized(tone_corpus, "tinyconv", tmp_path / "d.safetensors", method="dynamic")
    model = load_model(source)
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger.addHandler(handler)
    try:
        results = _export_all(model, tmp_path, ExportStageConfig(), ExportOptions())
    finally:
        logger.removeHandler(handler)
    assert [r.format for r in results] == ["tflite", "onnx"]  # dynamic range: no C kernels
    assert any("no c file" in w for w in warnings)
    with pytest.raises(TinyKWSError, match="cannot export to c"):
        _export_all(model, tmp_path, ExportStageConfig(formats=("c",)), ExportOptions())
