"""Per-op checks of tinykws.ir.interpret against hand-computed int8 results.

Every expected value below is worked out in the comment beside it from TFLite's reference
arithmetic (zero points, Q31 multiplier, rounding, clamping), so ties and saturation are pinned.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinykws.errors import TinyKWSError
from tinykws.ir import Graph, GraphBuilder, QuantParams, Weights, interpret, quantize_bias
from tinykws.ir.transform import with_io_dtype


def _run(builder: GraphBuilder, y: str, x) -> np.ndarray:
    return interpret(builder.build([y]), x)[y]


def _fc(x_q: QuantParams, w, scales, bias, out_q: QuantParams, activation="NONE"):
    b = GraphBuilder()
    x = b.input("x", (1, np.shape(w)[1]), x_q)
    weights = Weights(np.array(w, np.int8), scales=scales, bias=np.array(bias, np.int32))
    return b, b.fully_connected(x, weights, out_q, activation=activation)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (5, 3),  # acc 5 * real 0.5 = 2.5: the high multiply rounds the tie up -> 3
        (-5, -2),  # -2.5 -> -2 (ties toward +inf in SaturatingRoundingDoublingHighMul)
        (3, 2),  # 1.5 -> 2
        (127, 64),  # 63.5 -> 64
        (-128, -64),
    ],
)
def test_fully_connected_rounding_ties(x, expected):
    b, y = _fc(QuantParams(1.0, 0), [[1]], (0.5,), [0], QuantParams(1.0, 0))
    assert _run(b, y, np.array([[x]], np.int8)).tolist() == [[expected]]


def test_fully_connected_litert_runtime_rounds_once_in_double():
    # Channels with real multipliers 0.25 and 0.5, inputs 5 and -5.  LiteRT's reference FC
    # rounds the double product once, half away from zero: 1.25 -> 1, 2.5 -> 3, -1.25 -> -1,
    # -2.5 -> -3.  TFLite Micro's fixed point: 5 * 0.5 -> 3 then / 2 -> 2 (1.5 away from zero);
    # 2.5 -> 3; -2.5 -> -2 (the high multiply rounds ties up) then / 2 -> -1; -2.5 -> -2.
    b, y = _fc(QuantParams(1.0, 0), [[1], [1]], (0.25, 0.5), [0, 0], QuantParams(1.0, 0))
    graph = b.build([y])
    x = np.array([[5], [-5]], np.int8)
    assert interpret(graph, x, runtime="litert")[y].tolist() == [[1, 3], [-1, -3]]
    assert interpret(graph, x)[y].tolist() == [[2, 3], [-1, -2]]
    with pytest.raises(TinyKWSError, match="runtime must be"):
        interpret(graph, x, runtime="tpu")


def test_fully_connected_double_rounding_and_zero_points():
    # real = 1 * 0.25 / 1 = 2^30/2^31 * 2^-1.  x - zp = 7 - 2 = 5; acc = 5*1 + bias 0 = 5;
    # high mul: 5/2 = 2.5 -> 3; shift right 1: 3/2 = 1.5 -> 2 (single rounding would give 1);
    # + output zp 10 -> 12.
    b, y = _fc(QuantParams(1.0, 2), [[1]], (0.25,), [0], QuantParams(1.0, 10))
    assert _run(b, y, np.array([[7]], np.int8)).tolist() == [[12]]


def test_fully_connected_per_channel_bias_and_saturation():
    # x = [10, -4] (zp 0), weights rows [1, 2] and [3, -1], scales 0.1 and 0.2 (x scale 1),
    # output scale 1, zp 0.  acc0 = 10 - 8 + bias 5 = 7 -> 7 * 0.1 = 0.7 -> 1;
    # acc1 = 30 + 4 + 1000 = 1034 -> 206.8 -> saturates at 127.
    b, y = _fc(QuantParams(1.0, 0), [[1, 2], [3, -1]], (0.1, 0.2), [5, 1000], QuantParams(1.0, 0))
    assert _run(b, y, np.array([[10, -4]], np.int8)).tolist() == [[1, 127]]


@pytest.mark.parametrize(
    ("activation", "expected"),
    # acc = -40, 20, 200 at real 0.1 -> -4, 2, 20; + zp -3 -> -7, -1, 17.
    # RELU clamps below at zp (-3); RELU6 also above at zp + round(6 / 1.0) = 3.
    [("NONE", [-7, -1, 17]), ("RELU", [-3, -1, 17]), ("RELU6", [-3, -1, 3])],
)
def test_fused_activations(activation, expected):
    b, y = _fc(
        QuantParams(1.0, 0), [[-4], [2], [20]], (0.1,), [0, 0, 0], QuantParams(1.0, -3), activation
    )
    assert _run(b, y, np.array([[10]], np.int8)).ravel().tolist() == expected


def test_conv2d_same_padding_skips_padded_pixels():
    # 3x3 input of (x - zp) = 1 everywhere, 3x3 kernel of ones, SAME, stride 1: each output sums
    # the in-bounds pixels only (corner 4, edge 6, centre 9); real multiplier 1 (scales 1, 1, 1).
    b = GraphBuilder()
    x = b.input("x", (1, 3, 3, 1), QuantParams(1.0, -5))
    w = Weights(np.ones((1, 3, 3, 1), np.int8), scales=(1.0,))
    y = b.conv2d(x, w, QuantParams(1.0, 0), padding="SAME")
    out = _run(b, y, np.full((1, 3, 3, 1), -4, np.int8))
    assert out[0, :, :, 0].tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]


def test_conv2d_stride_and_explicit_pads():
    # 1x4 row [1, 2, 3, 4], kernel [1, 1] (1x2), stride 2, pads left 1: windows [0|1], [2, 3]
    # and ... out width = (4 + 1 - 2) // 2 + 1 = 2 -> [1, 5].
    b = GraphBuilder()
    x = b.input("x", (1, 1, 4, 1), QuantParams(1.0, 0))
    w = Weights(np.ones((1, 1, 2, 1), np.int8), scales=(1.0,))
    y = b.conv2d(x, w, QuantParams(1.0, 0), stride=(1, 2), padding=(0, 0, 1, 0))
    assert b.graph.ops[-1].options["padding"] == "EXPLICIT"
    assert _run(b, y, np.array([1, 2, 3, 4], np.int8).reshape(1, 1, 4, 1)).ravel().tolist() == [
        1,
        5,
    ]


def test_depthwise_multiplier_maps_output_to_input_channels():
    # input channels [2, 3], depth multiplier 2, 1x1 weights [1, -1, 10, 1]:
    # outputs [2*1, 2*-1, 3*10, 3*1] = [2, -2, 30, 3].
    b = GraphBuilder()
    x = b.input("x", (1, 1, 1, 2), QuantParams(1.0, 0))
    w = Weights(np.array([1, -1, 10, 1], np.int8).reshape(1, 1, 1, 4), scales=(1.0,) * 4)
    y = b.depthwise_conv2d(x, w, QuantParams(1.0, 0), depth_multiplier=2)
    assert _run(b, y, np.array([2, 3], np.int8).reshape(1, 1, 1, 2)).ravel().tolist() == [
        2,
        -2,
        30,
        3,
    ]


def test_average_pool_rounds_half_away_from_zero():
    # windows of two pixels: sums 3, -3, 4, -1 -> (3+1)//2 = 2, (-3-1)/2 = -2, 2, (-1-1)/2 = -1.
    b = GraphBuilder()
    x = b.input("x", (1, 1, 8, 1), QuantParams(1.0, 0))
    y = b.avg_pool2d(x, (1, 2))
    values = np.array([1, 2, -1, -2, 2, 2, 0, -1], np.int8).reshape(1, 1, 8, 1)
    assert _run(b, y, values).ravel().tolist() == [2, -2, 2, -1]


def test_average_pool_same_counts_only_inbounds_pixels():
    # 1x3 row [3, 3, 6], 1x2 window, stride 2, SAME: pads right 1 -> windows [3, 3] and [6]
    # -> averages 3 and 6 (the padded pixel is not counted).
    b = GraphBuilder()
    x = b.input("x", (1, 1, 3, 1), QuantParams(1.0, 0))
    y = b.avg_pool2d(x, (1, 2), padding="SAME")
    assert _run(b, y, np.array([3, 3, 6], np.int8).reshape(1, 1, 3, 1)).ravel().tolist() == [3, 6]


def test_max_pool_with_relu_clamps_at_zero_point():
    b = GraphBuilder()
    x = b.input("x", (1, 2, 2, 1), QuantParams(0.5, -10))
    y = b.max_pool2d(x, 2, activation="RELU")
    assert _run(b, y, np.array([-50, -40, -20, -30], np.int8).reshape(1, 2, 2, 1)).item() == -10


def test_mean_requantizes_with_folded_division():
    # real s_in / s_out = 0.5 -> (2^30, shift 0); n = 4 folds in as k = 2: multiplier
    # 2^32 / 4 = 2^30, shift -2, i.e. 0.125.  Channel 0: sum(x) - zp * n = 14 - 4 = 10;
    # 10 * 2^30 / 2^31 = 5, then 5 / 4 = 1.25 -> 1; + output zp 3 -> 4.
    # Channel 1: -2 - 4 = -6 -> -3 -> -0.75 -> -1; + 3 -> 2.
    b = GraphBuilder()
    x = b.input("x", (1, 2, 2, 2), QuantParams(1.0, 1))
    y = b.mean(x, QuantParams(2.0, 3), keep_dims=False)
    values = np.array([[2, 0], [3, -1], [4, 0], [5, -1]], np.int8).reshape(1, 2, 2, 2)
    assert _run(b, y, values).tolist() == [[4, 2]]


def test_add_rescales_and_saturates():
    # scales all 1, zero points 0: 3 + 4 = 7; 100 + 100 saturates at 127; -100 - 100 at -128.
    b = GraphBuilder()
    p, q = b.input("p", (1, 3), QuantParams(1.0, 0)), b.input("q", (1, 3), QuantParams(1.0, 0))
    y = b.add(p, q, QuantParams(1.0, 0))
    out = interpret(
        b.build([y]),
        {"p": np.array([[3, 100, -100]], np.int8), "q": np.array([[4, 100, -100]], np.int8)},
    )[y]
    assert out.tolist() == [[7, 127, -128]]


def test_add_with_different_scales():
    # p = 0.5 * (6 - 2) = 2.0, q = 0.25 * 6 = 1.5, sum 3.5 at scale 0.5 (zp -1) -> 7 - 1 = 6.
    b = GraphBuilder()
    p, q = b.input("p", (1, 1), QuantParams(0.5, 2)), b.input("q", (1, 1), QuantParams(0.25, 0))
    y = b.add(p, q, QuantParams(0.5, -1))
    out = interpret(b.build([y]), [np.array([[6]], np.int8), np.array([[6]], np.int8)])[y]
    assert out.tolist() == [[6]]


def test_mul_rounds_ties_away_from_zero_broadcasts_and_saturates():
    # a: scale 0.5 zp 1, b: scale 0.25 zp 0, out: scale 0.5 zp -2 -> multiplier 0.25.
    # With b = 1 broadcast: (11-1) * 1 = 10 -> 2.5 -> 3 (tie away from zero) -> 1;
    # (-9-1) -> -2.5 -> -3 -> -5; (5-1) -> 1 -> -1; (101-1) -> 25 -> 23.
    b = GraphBuilder()
    p, q = b.input("p", (1, 4), QuantParams(0.5, 1)), b.input("q", (1, 1), QuantParams(0.25, 0))
    y = b.mul(p, q, QuantParams(0.5, -2))
    graph = b.build([y])
    out = interpret(
        graph, {"p": np.array([[11, -9, 5, 101]], np.int8), "q": np.ones((1, 1), np.int8)}
    )
    assert out[y].tolist() == [[1, -5, -1, 23]]
    # b = 6: (5-1)*6 = 24 -> 6 -> 4; 100*6 = 600 -> 150 saturates at 127; 0 -> -2;
    # -128*6 -> -192 -> -128.
    out = interpret(
        graph, {"p": np.array([[5, 101, 1, -127]], np.int8), "q": np.full((1, 1), 6, np.int8)}
    )
    assert out[y].tolist() == [[4, 127, -2, -128]]


def test_logistic_table_and_silu():
    # scale 0.5, zp 0: x = 0 -> 0.5 * 256 = 128 -> 0; x = 1 (q 2) -> 0.731059 * 256 = 187.15 ->
    # 187 - 128 = 59; q 127 -> 0.99999... * 256 rounds to 256 -> 128, clamped to 127;
    # q -128 -> 1.0e-28 * 256 -> 0 -> -128.
    b = GraphBuilder()
    x = b.input("x", (1, 4), QuantParams(0.5, 0))
    y = b.logistic(x)
    assert b.graph.tensor(y).scale == (1 / 256,) and b.graph.tensor(y).zero_point == (-128,)
    assert _run(b, y, np.array([[0, 2, 127, -128]], np.int8)).tolist() == [[0, 59, 127, -128]]
    # SiLU = x * sigmoid(x): 1.0 * 187/256 = 0.7305 at scale 0.1 -> 7.3 -> 7
    b = GraphBuilder()
    x = b.input("x", (1, 2), QuantParams(0.5, 0))
    y = b.silu(x, QuantParams(0.1, 0), name="act")
    assert [op.type for op in b.graph.ops] == ["LOGISTIC", "MUL"]
    assert _run(b, y, np.array([[2, 0]], np.int8)).tolist() == [[7, 0]]


def test_slice_and_concatenation_copy():
    b = GraphBuilder()
    x = b.input("x", (1, 2, 5, 1), QuantParams(0.5, 3))
    parts = [b.slice(x, (0, 0, start, 0), (1, 2, 2, 1)) for start in (0, 3)]
    y = b.concatenation(parts, axis=2)
    graph = b.build([y])
    assert graph.tensor(y).shape == (1, 2, 4, 1) and graph.tensor(y).zero_point == (3,)
    x = np.arange(20, dtype=np.int8).reshape(2, 2, 5, 1)  # a batch of two
    out = interpret(graph, x)[y][..., 0]
    assert out.tolist() == [[[0, 1, 3, 4], [5, 6, 8, 9]], [[10, 11, 13, 14], [15, 16, 18, 19]]]


def test_softmax_uniform_and_saturated_rows():
    # Equal inputs: each exp is 1, sum 4 -> 1/4 = 64/256 -> 64 - 128 = -64.
    # One input far above the rest: its probability 1 -> 256 - 128 saturates at 127; the rest
    # fall below diff_min and are exactly -128.
    b = GraphBuilder()
    x = b.input("x", (2, 4), QuantParams(0.5, 0))
    y = b.softmax(x)
    out = _run(b, y, np.array([[7, 7, 7, 7], [100, -100, -100, -100]], np.int8))
    assert out.tolist() == [[-64] * 4, [127, -128, -128, -128]]


def test_quantize_rounds_half_away_and_saturates():
    # x / 0.5: 1.25 -> 2.5 -> 3; -1.25 -> -3; 0.75 -> 1.5 -> 2; 1000 -> 127; + zp 1.
    b = GraphBuilder()
    x = b.input("x", (1, 5))
    y = b.quantize(x, QuantParams(0.5, 1))
    out = _run(b, y, np.array([[1.25, -1.25, 0.75, 1000.0, -1000.0]], np.float32))
    assert out.tolist() == [[4, -2, 3, 127, -128]]


def test_requantize_and_dequantize():
    b = GraphBuilder()
    x = b.input("x", (1, 3), QuantParams(0.5, 0))
    q = b.quantize(x, QuantParams(1.0, 5))  # real 0.5: 3 -> 1.5 -> 2 (+5), -3 -> -1 (+5)
    y = b.dequantize(q)
    out = _run(b, y, np.array([[3, -3, 0]], np.int8))
    assert out.dtype == np.float32 and out.tolist() == [[2.0, -1.0, 0.0]]


def test_reshape_pad_and_batch():
    b = GraphBuilder()
    x = b.input("x", (1, 2, 2, 1), QuantParams(1.0, 7))
    p = b.pad(x, [(0, 0), (1, 0), (0, 0), (0, 0)])  # padded with the zero point 7
    y = b.reshape(p, (1, 6))
    graph = b.build([y])
    batch = np.arange(8, dtype=np.int8).reshape(2, 2, 2, 1)
    out = interpret(graph, batch)[y]
    assert out.tolist() == [[7, 7, 0, 1, 2, 3], [7, 7, 4, 5, 6, 7]]
    one = interpret(graph, batch[1:])[y]
    assert one.tolist() == out[1:].tolist()


def test_return_all_and_io_dtype_rewrite():
    b = GraphBuilder()
    x = b.input("x", (1, 2), QuantParams(0.5, 0))
    y = b.softmax(x)
    graph = b.build([y])
    floats = with_io_dtype(graph, "float32")
    assert [op.type for op in floats.ops] == ["QUANTIZE", "SOFTMAX", "DEQUANTIZE"]
    result = interpret(floats, np.array([[1.0, 1.0]], np.float32), return_all=True)
    assert set(result) == {"x_float", "x", y, f"{y}_float"}
    assert result[f"{y}_float"].tolist() == [[0.5, 0.5]]
    back = with_io_dtype(floats, "int8")
    assert back.inputs == ["x"] and back.outputs == [y]


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    b = GraphBuilder("roundtrip")
    x = b.input("x", (1, 5, 5, 2), QuantParams(0.1, -3))
    w = Weights(
        rng.integers(-7, 8, (3, 3, 3, 2)).astype(np.int8),
        scales=(0.01, 0.02, 0.03),
        bias=quantize_bias([0.1, 0.2, -0.3], 0.1, (0.01, 0.02, 0.03)),
        bits=4,
    )
    y = b.conv2d(x, w, QuantParams(0.2, 0), activation="RELU6")
    graph = b.build([b.softmax(b.mean(y, QuantParams(0.2, 0), keep_dims=False))])
    graph.metadata = {"labels": ["a", "b", "c"]}
    graph.save(tmp_path / "g")
    loaded = Graph.load(tmp_path / "g")
    assert loaded.metadata == graph.metadata and loaded.tensors["conv_2d_0/weights"].bits == 4
    for a, c in zip(graph.ops, loaded.ops):
        assert a.options == c.options
        assert {k: v.tolist() for k, v in a.params.items()} == {
            k: v.tolist() for k, v in c.params.items()
        }
    x_in = rng.integers(-128, 128, (3, 5, 5, 2)).astype(np.int8)
    np.testing.assert_array_equal(
        interpret(graph, x_in)[graph.outputs[0]], interpret(loaded, x_in)[loaded.outputs[0]]
    )


def test_load_refuses_mismatched_or_missing_files(tmp_path):
    b = GraphBuilder()
    graph = b.build([b.softmax(b.input("x", (1, 2), QuantParams(0.5, 0)))])
    path = graph.save(tmp_path / "model.json")
    (tmp_path / "model.npz").write_bytes(b"not an npz")
    with pytest.raises(TinyKWSError, match="does not match"):
        Graph.load(path)
    with pytest.raises(TinyKWSError, match="no such graph"):
        Graph.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda b, x: b.conv2d(
                x, Weights(np.ones((2, 3, 3, 5), np.int8), (1.0, 1.0)), QuantParams(1.0, 0)
            ),
            "input channels",
        ),
        (
            lambda b, x: b.fully_connected(
                x, Weights(np.ones((2, 7), np.int8), (1.0, 1.0)), QuantParams(1.0, 0)
            ),
            "cannot feed",
        ),
        (
            lambda b, x: b.conv2d(
                x, Weights(np.full((1, 1, 1, 4), 9, np.int8), (1.0,), bits=4), QuantParams(1.0, 0)
            ),
            "4-bit weights",
        ),
        (lambda b, x: b.max_pool2d(x, 2, activation="TANH"), "activation must be"),
        (lambda b, x: b.reshape(x, (1, 7)), "cannot reshape"),
        (lambda b, x: b.slice(x, (0, 0, 3, 0), (1, 4, 2, 4)), "does not fit shape"),
        (
            lambda b, x: b.concatenation([x, b.quantize(x, QuantParams(2.0, 0))], axis=2),
            "must share scale and zero point",
        ),
    ],
)
def test_builder_errors_name_the_problem(build, message):
    b = GraphBuilder()
    x = b.input("x", (1, 4, 4, 4), QuantParams(1.0, 0))
    with pytest.raises(TinyKWSError, match=message):
        build(b, x)


def test_interpret_rejects_bad_inputs():
    b = GraphBuilder()
    graph = b.build([b.softmax(b.input("x", (1, 2), QuantParams(0.5, 0)))])
    with pytest.raises(TinyKWSError, match="shape"):
        interpret(graph, np.zeros((1, 3), np.int8))
    with pytest.raises(TinyKWSError, match="int8"):
        interpret(graph, np.zeros((1, 2), np.float32))
    with pytest.raises(TinyKWSError, match="no input named"):
        interpret(graph, {"y": np.zeros((1, 2), np.int8)})


def test_float_graph_matches_numpy():
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input("x", (2, 6, 6, 3))
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    y = b.conv2d(x, Weights(w, bias=bias), None, padding="VALID", activation="RELU")
    graph = b.build([y])
    xs = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(xs, (3, 3), axis=(1, 2))
    want = np.maximum(np.einsum("nhwcij,oijc->nhwo", windows, w) + bias, 0)
    np.testing.assert_allclose(interpret(graph, xs)[y], want, rtol=1e-5, atol=1e-5)


def test_load_reports_a_corrupted_op(tmp_path):
    import json

    b = GraphBuilder("bad")
    x = b.input("x", (1, 4, 4, 1), QuantParams(1.0, 0))
    path = b.build([b.max_pool2d(x, 2)]).save(tmp_path)
    doc = json.loads(path.read_text())
    del doc["ops"][0]["options"]["pads"]
    path.write_text(json.dumps(doc))
    with pytest.raises(TinyKWSError, match="op 0 MAX_POOL_2D.*malformed options"):
        Graph.load(tmp_path)
    doc["ops"][0]["options"]["pads"] = [1, 0, 1, 0]
    doc["ops"][0]["options"]["padding"] = "SAME"
    path.write_text(json.dumps(doc))
    with pytest.raises(TinyKWSError, match="SAME padding here means"):
        Graph.load(tmp_path)
