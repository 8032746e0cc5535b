"""Exported .tflite files run in TensorFlow Lite Micro's own interpreter exactly as the integer
interpreter says (atol = 0).

TFLite Micro (the `tflite-micro` package: the interpreter and kernels that are flashed onto a
microcontroller, built for the host) runs every model family's int8 file, with biases in both
forms (quantized, the default, and `compact_bias`), with 8-bit and widened 4-bit weights, on the
tone corpus's clips and on random int8 inputs; its outputs must equal
`tinykws.ir.interpret(graph, x)` (the default "tflm" runtime) on every output of every sample.
Full-size presets (DS-CNN-S, BC-ResNet-1, the command CNN), untrained, do too. One-op graphs
pin each kernel down on its own, the FULLY_CONNECTED rounding tie included, where LiteRT's
reference kernel (rounding a double once) and TFLite Micro (fixed point, rounding twice) differ
and the interpreter follows TFLite Micro. No op needed a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import tflite
from export_helpers import LOWERABLE, int8_graph, nhwc, tone_data
from tflite_micro.python.tflite_micro import runtime as tflm

from tinykws.export.tflite import export_tflite, tflite_bytes
from tinykws.ir import GraphBuilder, QuantParams, Weights, interpret
from tinykws.ir.kernels import quantize_f32_s8
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.runtimes import TFLiteMicroRunner


@pytest.fixture(scope="module")
def tone(tone_corpus):
    return tone_data(tone_corpus)


def run_micro(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Every output of a .tflite in TFLite Micro, its inputs set from `inputs` (file dtypes)."""
    it = tflm.Interpreter.from_bytes(data)
    for index, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), index)
    it.invoke()
    count = tflite.Model.GetRootAs(data, 0).Subgraphs(0).OutputsLength()
    return [it.get_output(index).copy() for index in range(count)]


def assert_micro_equal(graph, inputs: list[np.ndarray], **export) -> None:
    """TFLite Micro == interpreter, exactly, on every output; in both bias forms."""
    expected = [interpret(graph, inputs)[name] for name in graph.outputs]
    for compact_bias in (False, True):
        theirs = run_micro(tflite_bytes(graph, compact_bias=compact_bias, **export), inputs)
        assert len(theirs) == len(expected)
        for ours, got in zip(expected, theirs):
            assert ours.dtype == got.dtype and ours.shape == got.shape
            np.testing.assert_array_equal(got, ours)


def _model_inputs(graph, tone, rng) -> np.ndarray:
    """Every tone clip (validation and train), quantized as the graph's QUANTIZE does, and 16
    random int8 inputs (values the calibration never saw, saturating every layer)."""
    x = nhwc(np.concatenate([tone.inputs("validation"), tone.inputs("train")]))
    source = graph.tensor(graph.inputs[0])
    clips = quantize_f32_s8(x, source.scale[0], source.zero_point[0])
    noise = rng.integers(-128, 128, (16, *clips.shape[1:])).astype(np.int8)
    return np.concatenate([clips, noise])


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("family", LOWERABLE)
def test_every_family_runs_exactly_in_tflite_micro(tone, tone_corpus, family, bits):
    graph = with_io_dtype(int8_graph(tone_corpus, family, bits), "int8")
    x = _model_inputs(graph, tone, np.random.default_rng(bits))
    expected = interpret(graph, x)[graph.outputs[0]]
    sizes = []
    for compact_bias in (False, True):
        # 4-bit weights are stored widened to int8: TFLite holds no packed 4-bit int8 kernels
        data = tflite_bytes(graph, compact_bias=compact_bias, widen_narrow_weights=bits < 8)
        np.testing.assert_array_equal(TFLiteMicroRunner(data).run_raw(x), expected)
        sizes.append(len(data))
    assert sizes[1] < sizes[0]  # the compact form drops 8 bytes per per-channel bias entry


@pytest.mark.parametrize("preset", ["dscnn_s", "bcresnet1", "commandnet"])
def test_full_size_presets_run_exactly_in_tflite_micro(preset):
    """Untrained full-size networks (DS-CNN-S on 49x10 MFCC, ...) calibrated on noise, on
    random int8 inputs: the arena and every kernel at the sizes that are deployed."""
    from test_litert_delegation import untrained_int8_graph

    graph = untrained_int8_graph(preset)
    source = graph.tensor(graph.inputs[0])
    x = np.random.default_rng(7).integers(-128, 128, (4, *source.shape[1:])).astype(np.int8)
    expected = interpret(graph, x)[graph.outputs[0]]
    for compact_bias in (False, True):
        data = tflite_bytes(graph, compact_bias=compact_bias)
        np.testing.assert_array_equal(TFLiteMicroRunner(data).run_raw(x), expected)


def test_file_with_float_io_and_metadata_runs_in_tflite_micro(tone, tone_corpus):
    """A file as `tinykws export --io float32` writes it (QUANTIZE in, DEQUANTIZE out, the
    "tinykws" metadata entry) runs as the graph does."""
    graph = with_io_dtype(int8_graph(tone_corpus, "dscnn"), "float32")
    x = nhwc(tone.inputs("validation"))
    got = TFLiteMicroRunner(tflite_bytes(graph, metadata=tone.meta)).run_raw(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, interpret(graph, x)[graph.outputs[0]])


def test_tflite_micro_backend_predicts_as_the_graph(tone, tone_corpus, tmp_path):
    from tinykws.measure.runtimes import load_tflite_predictor

    graph = int8_graph(tone_corpus, "tinyconv")
    path = export_tflite(graph, tmp_path / "q.tflite", io_dtype="int8", metadata=tone.meta)
    expected = interpret(graph, nhwc(tone.inputs("validation")))[graph.outputs[0]]
    logits = load_tflite_predictor(path, "tflm").logits(tone.validation)
    np.testing.assert_array_equal(logits, expected)  # int8 io: quantize/dequantize as the graph


# --- one-op graphs -----------------------------------------------------------------------------


def _int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


def _weights(rng, shape, axis: int, per_channel: bool = True) -> Weights:
    k = int(np.prod(shape)) // shape[axis]
    scales = rng.uniform(0.002, 0.02, shape[axis] if per_channel else 1)
    bias = rng.integers(-40 * k, 40 * k, shape[axis]).astype(np.int32)
    return Weights(rng.integers(-127, 128, shape).astype(np.int8), scales=scales, bias=bias)


def _out_q(x_scale: float, w: Weights, k: int, zero_point: int = -5) -> QuantParams:
    """An output scale spreading accumulators of k terms over the int8 range."""
    return QuantParams(x_scale * float(np.mean(w.scales)) * 74 * 74 * np.sqrt(k) / 40, zero_point)


def _conv(b, rng, x, **options):
    w = _weights(rng, (5, 3, 3, 3), 0)
    return b.conv2d(x, w, _out_q(0.05, w, 27), **options)


def _depthwise(b, rng, x):
    w = _weights(rng, (1, 3, 3, 6), 3)
    return b.depthwise_conv2d(x, w, _out_q(0.05, w, 9, 2), depth_multiplier=2, stride=2)


def _fc(b, rng, x, per_channel: bool):
    w = _weights(rng, (6, 84), 0, per_channel)
    return b.fully_connected(b.reshape(x, (4, 84)), w, _out_q(0.05, w, 84, -20))


ONE_OP = {
    "conv_same_relu": lambda b, rng, x: _conv(b, rng, x, stride=2, activation="RELU"),
    "conv_explicit_pad": lambda b, rng, x: _conv(b, rng, x, padding=1, activation="RELU6"),
    "conv_dilated": lambda b, rng, x: _conv(b, rng, x, dilation=2),
    "depthwise_multiplier_2": _depthwise,
    "fully_connected_per_channel": lambda b, rng, x: _fc(b, rng, x, True),
    "fully_connected_per_tensor": lambda b, rng, x: _fc(b, rng, x, False),
    "max_pool_explicit_pad": lambda b, rng, x: b.max_pool2d(x, 3, stride=2, padding=1),
    "avg_pool": lambda b, rng, x: b.avg_pool2d(x, (3, 2), stride=(2, 1), padding="SAME"),
    "mean": lambda b, rng, x: b.mean(x, QuantParams(0.011, -30), keep_dims=False),
    "mean_over_bins": lambda b, rng, x: b.mean(x, QuantParams(0.04, 7), axes=(2,)),
    "mean_tiny_multiplier": lambda b, rng, x: b.mean(x, QuantParams(3e4, 0), keep_dims=False),
    "logistic_and_silu": lambda b, rng, x: b.silu(x, QuantParams(0.05, -13)),
    "softmax": lambda b, rng, x: b.softmax(b.reshape(x, (4, 84))),
    "slice_concatenation": lambda b, rng, x: b.concatenation(
        [b.slice(x, (0, 1, 2 * k, 0), (4, 3, 2, 3)) for k in range(3)], axis=2
    ),
    "mul_broadcast": lambda b, rng, x: b.mul(
        x, b.input("q", (1, 1, 7, 3), QuantParams(0.03, 9)), QuantParams(0.004, 2)
    ),
    "add_relu": lambda b, rng, x: b.add(
        x, b.input("q", (4, 4, 7, 3), QuantParams(0.03, 9)), QuantParams(0.09, 2), activation="RELU"
    ),
}


@pytest.mark.parametrize("name", sorted(ONE_OP))
def test_one_op_graphs_run_exactly_in_tflite_micro(name):
    rng = np.random.default_rng(sorted(ONE_OP).index(name))
    b = GraphBuilder()
    x = b.input("x", (4, 4, 7, 3), QuantParams(0.05, -7))
    graph = b.build([ONE_OP[name](b, rng, x)])
    assert_micro_equal(graph, [_int8(rng, graph.tensor(n).shape) for n in graph.inputs])


def test_logistic_on_every_int8_value():
    b = GraphBuilder()
    x = b.input("x", (1, 256), QuantParams(0.05, -20))
    graph = b.build([b.logistic(x), b.silu(x, QuantParams(0.04, -30))])
    assert_micro_equal(graph, [np.arange(-128, 128, dtype=np.int8).reshape(1, 256)])


def test_quantize_and_dequantize_ties():
    b = GraphBuilder()
    x = b.input("x", (1, 8))
    r = b.quantize(b.quantize(x, QuantParams(0.05, -3)), QuantParams(0.13, 6))
    graph = b.build([b.dequantize(r)])
    ties = np.float32(0.05) * np.array([0.5, -0.5, 1.5, -2.5, 200, -200, 0, 3.5], np.float32)
    assert_micro_equal(graph, [ties.reshape(1, 8)])


def test_fully_connected_rounding_ties_follow_tflite_micro():
    # Real multipliers 0.25 and 0.5 on inputs 5 and -5 hit exact ties: TFLite Micro's fixed
    # point rounds the product to Q31 and then shifts with rounding (twice); LiteRT's reference
    # FULLY_CONNECTED rounds the double product once. The interpreter's default runtime is
    # TFLite Micro's, and TFLite Micro agrees with it (see test_tflite_ops.py for LiteRT).
    b = GraphBuilder()
    x = b.input("x", (2, 1), QuantParams(1.0, 0))
    w = Weights(np.array([[1], [1]], np.int8), scales=(0.25, 0.5), bias=np.array([0, 0], np.int32))
    graph = b.build([b.fully_connected(x, w, QuantParams(1.0, 0))])
    values = np.array([[5], [-5]], np.int8)
    assert run_micro(tflite_bytes(graph), [values])[0].tolist() == [[2, 3], [-1, -2]]
    assert interpret(graph, values, runtime="litert")[graph.outputs[0]].tolist() == [
        [1, 3],
        [-1, -3],
    ]
    assert_micro_equal(graph, [values])


def test_conv_negative_ties_round_away_from_zero_in_tflite_micro():
    # LiteRT's optimised CONV_2D rounds -0.5 up to 0; TFLite Micro, like the interpreter, away
    # from zero (test_tflite_ops.py has the LiteRT side)
    b = GraphBuilder()
    x = b.input("x", (1, 1, 4, 1), QuantParams(1.0, 0))
    w = Weights(np.ones((1, 1, 1, 1), np.int8), scales=(0.25,), bias=np.zeros(1, np.int32))
    graph = b.build([b.conv2d(x, w, QuantParams(1.0, 0), padding="VALID")])
    values = np.array([2, -2, 6, -6], np.int8).reshape(1, 1, 4, 1)
    assert run_micro(tflite_bytes(graph), [values])[0].ravel().tolist() == [1, -1, 2, -2]
    assert_micro_equal(graph, [values])
