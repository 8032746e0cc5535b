"""`tinykws export`, and `tinykws evaluate` on exported .tflite / .onnx files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_helpers import save_float, save_quantized, tone_data

from tinykws.cli import main


@pytest.fixture(scope="module")
def tone(tone_corpus):
    return tone_data(tone_corpus)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def quantized_file(tone_corpus, tmp_path_factory):
    return save_quantized(tone_corpus, "cnn3", tmp_path_factory.mktemp("q") / "q.safetensors")


@pytest.mark.parametrize(("fmt", "name"), [("tflite", "m.tflite"), ("onnx", "m.onnx")])
def test_export_then_evaluate(quantized_file, tone, tone_corpus, tmp_path, capsys, fmt, name):
    out = tmp_path / name
    assert main(["export", str(quantized_file), "--format", fmt, "--out", str(out)]) == 0
    assert "written:" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--data", str(tone_corpus), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    from tinykws.measure.predictors import load_predictor

    predicted = load_predictor(out).logits(tone.validation).argmax(1)
    assert result["n"] == len(tone.validation_y)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == tone.validation_y))


def test_sidecar_metadata(quantized_file, tone_corpus, tmp_path, capsys):
    out = tmp_path / "s.tflite"
    assert (
        main(
            [
                "export",
                str(quantized_file),
                "--format",
                "tflite",
                "--out",
                str(out),
                "--sidecar",
                "--io",
                "float32",
            ]
        )
        == 0
    )
    from tinykws.export.tflite import read_tflite_metadata

    assert read_tflite_metadata(out) is None
    sidecar = tmp_path / "s.tflite.json"
    assert json.loads(sidecar.read_text())["io_dtype"] == "float32"
    assert main(["evaluate", str(out), "--data", str(tone_corpus)]) == 0
    capsys.readouterr()
    sidecar.unlink()
    assert main(["evaluate", str(out), "--data", str(tone_corpus)]) == 2
    assert "s.tflite.json" in one_error_line(capsys)


def test_reference_backend_and_bad_backend(quantized_file, tone_corpus, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert main(["export", str(quantized_file), "--format", "tflite", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--data", str(tone_corpus), "--backend", "reference"]) == 0
    assert main(["evaluate", str(out), "--data", str(tone_corpus), "--backend", "tflm"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tone_corpus), "--backend", "int"]) == 2
    assert "litert or reference" in one_error_line(capsys)


def test_export_errors_are_one_line(tone_corpus, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                str(tmp_path / "missing"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
    assert "no such model" in one_error_line(capsys)
    narrow = save_quantized(tone_corpus, "tinyconv", tmp_path / "q4.safetensors", weight_bits=4)
    assert (
        main(["export", str(narrow), "--format", "tflite", "--out", str(tmp_path / "q4.tflite")])
        == 2
    )
    line = one_error_line(capsys)
    assert "conv_conv" in line and "--format c" in line
    float_file = save_float(tone_corpus, "tinyconv", tmp_path / "f.safetensors")
    assert (
        main(
            [
                "export",
                str(float_file),
                "--format",
                "tflite",
                "--io",
                "int8",
                "--out",
                str(tmp_path / "f.tflite"),
            ]
        )
        == 2
    )
    assert "--io int8" in one_error_line(capsys)
    assert main(["export", str(float_file), "--format", "c", "--out", str(tmp_path / "c")]) == 2
    assert "integer-only" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "f.safetensors",
        "q4.json",
        "q4.npz",
        "q4.safetensors",
    ]


def test_c_export(quantized_file, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["export", str(quantized_file), "--format", "c", "--out", str(out)]) == 0
    assert (out / "model.c").is_file() and (out / "kernels.c").is_file()
    assert "int8" in capsys.readouterr().out


def test_compact_bias_flag(tone_corpus, tmp_path, capsys):
    """--compact-bias writes the smaller file XNNPACK declines; the default is the fast one
    (--bias-scales, the old opt-in to it, is still accepted)."""
    from export_helpers import int8_graph

    from tinykws.config import to_dict
    from tinykws.features.frontend import frontend_config
    from tinykws.measure.runtimes import litert_undelegated_ops

    graph = int8_graph(tone_corpus, "dscnn")
    graph.metadata["frontend"] = to_dict(frontend_config("micro"))
    graph.save(tmp_path / "g.json")
    sizes = {}
    for flags in ([], ["--compact-bias"], ["--bias-scales"]):
        out = tmp_path / f"m{len(sizes)}.tflite"
        args = ["export", str(tmp_path / "g.json"), "--format", "tflite", "--out", str(out)]
        assert main(args + flags) == 0
        sizes[" ".join(flags)] = (out.stat().st_size, litert_undelegated_ops(out))
    assert sizes[""] == sizes["--bias-scales"] and sizes[""][1] == []
    assert sizes["--compact-bias"][0] < sizes[""][0]
    assert "CONV_2D" in sizes["--compact-bias"][1]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--compact-bias" in capsys.readouterr().out
