"""Dynamic-range .tflite files (float activations, int8 weights): the stored integers are the
PyTorch dynamic-range model's, LiteRT's hybrid kernels reproduce its outputs, the file is about
a quarter of the float file, and `tinykws evaluate` reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tflite
import torch
from export_helpers import nhwc, quantized_model, save_quantized, tone_data

from tinykws.cli import main
from tinykws.export.float_graph import lower_float
from tinykws.export.tflite import tflite_bytes
from tinykws.export.tflite_dynamic import dynamic_tflite_bytes
from tinykws.measure.runtimes import TFLiteRunner
from tinykws.run.exporting import export_model

# LiteRT's hybrid kernels round each layer's float input to int8 (asymmetric, per input row:
# at most half a step, 1/510 of the row's range, about 0.2 %) before the integer product; the
# PyTorch model keeps it float. Over the 2-7 weighted layers of these models the logits moved
# by at most 1.4 % of the sample's largest |logit| (BC-ResNet, builtin reference kernels);
# 3 % leaves room for other kernels' rounding order without hiding a wrong scale (a scale off
# by one channel or a transposed layout moves logits by tens of percent).
RELATIVE_TOLERANCE = 0.03
HYBRID_VERSIONS = {"CONV_2D": (2, 5), "DEPTHWISE_CONV_2D": (4, 6), "FULLY_CONNECTED": (9,)}


@pytest.fixture(scope="module")
def tone(tone_corpus):
    return tone_data(tone_corpus)


def _weight_tensors(data: bytes) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """(op name, int8 weights, scales, version) of every op of the file with int8 weights."""
    model = tflite.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = next(k for k, v in vars(tflite.BuiltinOperator).items() if v == builtin)
        if op.InputsLength() < 2 or op.Inputs(1) < 0:
            continue
        tensor = graph.Tensors(op.Inputs(1))
        if tensor.Type() != tflite.TensorType.INT8:
            continue
        values = model.Buffers(tensor.Buffer()).DataAsNumpy().view(np.int8)
        scales = tensor.Quantization().ScaleAsNumpy()
        out.append((name, values, scales, code.Version()))
    return out


@pytest.mark.parametrize("family", ["tinyconv", "dscnn", "commandnet", "cnn3", "bcresnet"])
def test_litert_runs_the_dynamic_range_file_like_pytorch(tone, tone_corpus, family):
    quantized = quantized_model(tone_corpus, family, method="dynamic")
    x = tone.inputs("validation")
    with torch.no_grad():
        expected = quantized.module(torch.from_numpy(x)).numpy()
    data = dynamic_tflite_bytes(quantized.module)
    for resolver in ("AUTO", "BUILTIN_REF"):
        runner = TFLiteRunner(data, resolver)
        assert runner.input["dtype"] == np.float32 and runner.output["dtype"] == np.float32
        got = runner.run(nhwc(x))
        error = np.abs(got - expected).max(axis=1) / np.abs(expected).max(axis=1)
        assert error.max() <= RELATIVE_TOLERANCE, (resolver, error.max())


@pytest.mark.parametrize("family", ["tinyconv", "dscnn"])
def test_stored_integers_and_scales_are_the_pytorch_models(tone_corpus, family):
    """Exact: the same folded weights rounded the same way (the file's layouts are NHWC, so
    each layer's values are compared as sorted multisets, and its scales one by one)."""
    module = quantized_model(tone_corpus, family, method="dynamic").module
    stored = _weight_tensors(dynamic_tflite_bytes(module))
    assert len(stored) == len(module.paths)
    for (op, values, scales, version), path in zip(stored, module.paths):
        quantizer = module.weight[path.replace(".", "__")]
        integers = quantizer.integers(module.net.get_submodule(path).weight).numpy()
        np.testing.assert_array_equal(np.sort(values), np.sort(integers.ravel()))
        np.testing.assert_array_equal(scales, quantizer.scale.numpy().astype(np.float32))
        assert version in HYBRID_VERSIONS[op]


def test_file_size_is_about_a_quarter_of_the_float_file(tone_corpus):
    """TinyConv is almost all weights: int8 instead of float32 makes the file 0.26x as large
    (37,728 B vs 146,976 B); what remains above the int8 weights is the float biases, the
    per-channel scales and the flatbuffer's tables."""
    module = quantized_model(tone_corpus, "tinyconv", method="dynamic").module
    data = dynamic_tflite_bytes(module)
    float_file = tflite_bytes(lower_float(module.net), metadata={})
    weights = sum(module.net.get_submodule(p).weight.numel() for p in module.paths)
    assert len(data) / len(float_file) < 0.27
    assert weights < len(data) < weights + 2_000


def test_export_and_evaluate_a_dynamic_range_model(tone, tone_corpus, tmp_path, capsys):
    source = save_quantized(tone_corpus, "dscnn", tmp_path / "d.safetensors", method="dynamic")
    result = export_model(source, "tflite", tmp_path / "d.tflite")
    assert (result.precision, result.io_dtype) == ("dynamic", "float32")
    report = tmp_path / "eval.json"
    args = ["evaluate", str(result.path), "--data", str(tone_corpus), "--json", str(report)]
    assert main(args) == 0
    from tinykws.measure.predictors import load_predictor

    predicted = load_predictor(result.path).logits(tone.validation).argmax(1)
    scores = json.loads(report.read_text())
    assert scores["accuracy"] == pytest.approx(np.mean(predicted == tone.validation_y))
    capsys.readouterr()
    out = str(tmp_path / "i.tflite")
    assert main(["export", str(source), "--format", "tflite", "--io", "int8", "--out", out]) == 2
    assert "float32 inputs and outputs" in capsys.readouterr().err
