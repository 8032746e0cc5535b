"""ONNX files run in ONNX Runtime: float ones match PyTorch, int8 QDQ ones match the fake-quant
model, dynamic-range ones hold int8 weights and match the dynamic-range model.

QDQ vs fake-quant: both compute float convolutions between the same quantize steps, but ONNX
Runtime and PyTorch sum in different orders, so a value within float rounding of a quantization
boundary can land one step apart; such steps propagate to at most a couple of LSB at the output.
Top-1 then differs only where the two best scores are that close: the families that learn the
tones (flatten heads) must agree on >= 99.5 % of clips, the global-average ones (nearly tied
scores on tones) only have their flips checked to be such near-ties. BC-ResNet is deeper and,
trained this briefly on tones, has a high gain: its temporal depthwise conv (BatchNorm folded)
turns one input step into tens of output steps, so one-step differences grow along the
blocks; its outputs are checked on average and by top-1 agreement.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import (
    FAMILIES,
    LOWERABLE,
    int8_graph,
    quantized_model,
    save_float,
    save_quantized,
    tone_data,
    trained_model,
)

from tinykws.errors import TinyKWSError
from tinykws.export.onnx import read_onnx_metadata
from tinykws.measure.runtimes import ONNXRunner, load_onnx_predictor
from tinykws.run.exporting import ExportOptions, export_model


@pytest.fixture(scope="module")
def tone(tone_corpus):
    return tone_data(tone_corpus)


WELL_TRAINED = ("tinyconv", "commandnet", "cnn3")


def _all_inputs(tone) -> np.ndarray:
    return np.concatenate([tone.inputs("validation"), tone.inputs("train")])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_float_onnx_matches_pytorch(tone, tone_corpus, family, tmp_path):
    source = save_float(tone_corpus, family, tmp_path / "f.safetensors")
    result = export_model(source, "onnx", tmp_path / "f.onnx")
    x = tone.inputs("validation")
    with torch.no_grad():
        expected = trained_model(tone_corpus, family)(torch.from_numpy(x)).numpy()
    got = ONNXRunner(result.path).run(x)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert result.precision == "float32" and result.io_dtype == "float32"


@pytest.mark.parametrize("family", LOWERABLE)
def test_int8_qdq_agrees_with_fake_quant(tone, tone_corpus, family, tmp_path):
    source = save_quantized(tone_corpus, family, tmp_path / "q.safetensors")
    result = export_model(source, "onnx", tmp_path / "q.onnx")
    model = onnx.load(str(result.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = _all_inputs(tone)
    module = quantized_model(tone_corpus, family).module
    with torch.no_grad():
        fake = module(torch.from_numpy(x)).numpy()
    got = ONNXRunner(result.path).run(x)
    scale = module.qparams(module.trace.output)[0]
    steps = np.round((got - fake) / scale)
    if family == "bcresnet":
        assert np.abs(steps).mean() <= 2 and np.mean(got.argmax(1) == fake.argmax(1)) >= 0.9
        return
    assert np.abs(steps).max() <= 2
    flipped = got.argmax(1) != fake.argmax(1)
    top2 = np.sort(np.round(fake / scale), axis=1)[:, -2:]
    assert np.all(top2[flipped, 1] - top2[flipped, 0] <= 2)
    if family in WELL_TRAINED:
        assert 1 - np.mean(flipped) >= 0.995


def test_int8_io_and_metadata(tone, tone_corpus, tmp_path):
    source = save_quantized(tone_corpus, "cnn3", tmp_path / "q.safetensors")
    floats = export_model(source, "onnx", tmp_path / "f.onnx")
    ints = export_model(source, "onnx", tmp_path / "i.onnx", ExportOptions(io_dtype="int8"))
    meta = read_onnx_metadata(ints.path)
    assert meta["labels"] == list(tone.labels) and meta["io_dtype"] == "int8"
    session = ONNXRunner(ints.path, meta=meta).session
    assert session.get_inputs()[0].type == "tensor(int8)"
    assert session.get_outputs()[0].type == "tensor(int8)"
    a = load_onnx_predictor(floats.path).logits(tone.validation)
    b = load_onnx_predictor(ints.path).logits(tone.validation)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", ["commandnet", "bcresnet"])
def test_dynamic_range_onnx_holds_int8_weights(tone, tone_corpus, tmp_path, family):
    """Every conv / linear weight stored once as int8 (BC-ResNet included, which has no
    integer graph), and the outputs of the dynamic-range model."""
    source = save_quantized(tone_corpus, family, tmp_path / "d.safetensors", method="dynamic")
    result = export_model(source, "onnx", tmp_path / "d.onnx")
    model = onnx.load(str(result.path))
    int8 = [
        i
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("_int8")
    ]
    module = quantized_model(tone_corpus, family, method="dynamic").module
    assert len(int8) == len(module.paths)
    stored = sum(len(i.raw_data) for i in int8)
    assert stored == sum(module.net.get_submodule(p).weight.numel() for p in module.paths)
    x = tone.inputs("validation")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ONNXRunner(result.path).run(x), expected, atol=1e-4, rtol=1e-5)


def test_narrow_weights_refused(tone_corpus, tmp_path):
    source = save_quantized(tone_corpus, "tinyconv", tmp_path / "q2.safetensors", weight_bits=2)
    with pytest.raises(TinyKWSError) as info:
        export_model(source, "onnx", tmp_path / "q2.onnx")
    assert "2-bit" in str(info.value) and "conv_conv" in str(info.value)
    assert not (tmp_path / "q2.onnx").exists()
    widened = export_model(
        source, "onnx", tmp_path / "q2.onnx", ExportOptions(widen_narrow_weights=True)
    )
    assert widened.path.is_file()


def test_graph_file_exports_the_same_qdq(tone, tone_corpus, tmp_path):
    """An integer graph (.json + .npz) exports like the checkpoint it came from."""
    graph = int8_graph(tone_corpus, "dscnn")
    graph.save(tmp_path / "g.json")
    from_graph = export_model(tmp_path / "g.json", "onnx", tmp_path / "g.onnx")
    source = save_quantized(tone_corpus, "dscnn", tmp_path / "q.safetensors")
    from_checkpoint = export_model(source, "onnx", tmp_path / "q.onnx")
    x = tone.inputs("validation")
    np.testing.assert_array_equal(
        ONNXRunner(from_graph.path).run(x), ONNXRunner(from_checkpoint.path).run(x)
    )
