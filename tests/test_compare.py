"""`tinykws compare`: accuracies, agreement, parameter memory and file sizes of any two model
files, checked against the files on disk and the two predictors scored separately."""

from __future__ import annotations

import json

import numpy as np
from export_helpers import save_float, save_quantized

from tinykws.cli import main
from tinykws.measure.compare import compare_predictions, model_file_bytes
from tinykws.run.exporting import export_model


def test_compare_a_checkpoint_with_its_tflite(tone_corpus, tmp_path, capsys):
    float_path = save_float(tone_corpus, "dscnn", tmp_path / "float.safetensors")
    int8_path = save_quantized(tone_corpus, "dscnn", tmp_path / "int8.safetensors")
    tflite_path = tmp_path / "int8.tflite"
    export_model(int8_path, "tflite", tflite_path)
    out = tmp_path / "compare.json"
    argv = ["compare", str(float_path), str(tflite_path), "--data", str(tone_corpus)]
    assert main([*argv, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["file_bytes_a"] == float_path.stat().st_size
    assert result["file_bytes_b"] == tflite_path.stat().st_size
    assert result["file_ratio"] == result["file_bytes_a"] / result["file_bytes_b"]
    assert result["file_ratio"] > 1.0
    printed = capsys.readouterr().out
    assert f"{result['file_bytes_b']:,} bytes" in printed
    assert f"file size: B is {result['file_ratio']:.2f}x smaller than A" in printed
    assert "?x" not in printed


def test_c_folder_size_is_its_flash_when_measured(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "model.c").write_text("int x;\n")
    (folder / "model.h").write_text("/* h */\n")
    assert model_file_bytes(folder) == len("int x;\n") + len("/* h */\n")
    (folder / "sizes.json").write_text(json.dumps({"text": 100, "rodata": 20, "data": 3, "bss": 9}))
    assert model_file_bytes(folder) == 123


def test_compare_predictions_counts_agreement_and_drop():
    class Fixed:
        labels, meta = ("a", "b", "c"), {}

        def __init__(self, predictions):
            self.predictions = np.asarray(predictions)

        def logits(self, x):
            return np.eye(3, dtype=np.float32)[self.predictions[: len(x)]]

    labels = np.array([0, 1, 2, 0])
    result = compare_predictions(Fixed([0, 1, 2, 1]), Fixed([0, 1, 1, 1]), np.zeros((4, 1)), labels)
    assert (result["accuracy_a"], result["accuracy_b"]) == (0.75, 0.5)
    assert result["drop"] == 0.25 and result["agreement"] == 0.75
