"""Generated C network == tinykws.ir.interpret, exactly (atol = 0), on many random inputs.

Graphs are built with GraphBuilder from random weights spanning each bit width's full range
(int8, packed 4-bit, packed 2-bit), dense and sparse, and compiled with
`gcc -std=c99 -Wall -Wextra -Werror -O2`; the C int8 outputs must equal the interpreter's.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from c_support import (
    assert_c_equals_interpreter,
    every_op_graph,
    needs_gcc,
    random_weights,
)

from tinykws.errors import TinyKWSError
from tinykws.export import EXPORTERS
from tinykws.export.c import emit, export_c
from tinykws.export.c.carray import c_float, pack_values
from tinykws.export.c.emit import scratch_bytes
from tinykws.export.c.sparse import choose_encoding, encode_sparse
from tinykws.ir import GraphBuilder, QuantParams, Weights
from tinykws.ir.plan import plan_arena
from tinykws.ir.transform import with_io_dtype


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_every_op_equals_interpreter(tmp_path, bits):
    graph = every_op_graph(np.random.default_rng(bits), bits)
    assert_c_equals_interpreter(graph, tmp_path / "c", n=300, seed=bits)
    report = json.loads((tmp_path / "c" / "export.json").read_text())
    by_name = {layer["name"]: layer for layer in report["layers"]}
    expected = {8: 8, 4: 4, 2: 2}[bits]
    assert all(layer["bits"] == expected for layer in report["layers"])
    conv = by_name["conv"]  # 8 x 3 x 3 x 1 weights
    assert conv["dense_weight_bytes"] == -(-72 * expected // 8)


@needs_gcc
@pytest.mark.parametrize("bits", [8, 3])
def test_sparse_weights_equal_interpreter_and_save_flash(tmp_path, bits):
    graph = every_op_graph(np.random.default_rng(10 + bits), bits, density=0.15)
    assert_c_equals_interpreter(graph, tmp_path / "auto", seed=bits, sparse="auto")
    report = json.loads((tmp_path / "auto" / "export.json").read_text())
    sparse = [layer for layer in report["layers"] if layer["encoding"] == "sparse"]
    assert {layer["type"] for layer in sparse} <= {"CONV_2D", "FULLY_CONNECTED"}
    assert "conv" in {layer["name"] for layer in sparse}
    assert report["sparse_saved_bytes"] > 0
    assert report["weight_bytes"] == report["dense_weight_bytes"] - report["sparse_saved_bytes"]
    dense_model = assert_c_equals_interpreter(graph, tmp_path / "off", seed=bits, sparse="off")
    assert dense_model is not None
    off = json.loads((tmp_path / "off" / "export.json").read_text())
    assert off["sparse_saved_bytes"] == 0


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_sparse_kernels_on_dense_weights(tmp_path, bits):
    """sparse="always" stores even dense layers sparse: the bitmask walk (padding skipped
    included) must still give the interpreter's numbers."""
    graph = every_op_graph(np.random.default_rng(20 + bits), bits, density=0.6)
    assert_c_equals_interpreter(graph, tmp_path / "c", seed=bits, sparse="always")


def _broadcast_graph(rng):
    """int8 boundary, per-tensor weights, broadcast ADD, a RESHAPE that must copy (its input is
    read again later), multi-row SOFTMAX, 5-bit weights."""
    b = GraphBuilder("broadcast")
    x = b.input("x", (1, 6, 5, 3), QuantParams(0.04, 7))
    y = b.conv2d(
        x,
        random_weights(rng, (4, 3, 2, 3), 0, 5),
        QuantParams(0.09, -4),
        stride=2,
        padding=(0, 1, 1, 0),
        activation="RELU",
    )
    per_tensor = Weights(
        rng.integers(-127, 128, (4, 36)).astype(np.int8),
        (0.004,),
        rng.integers(-500, 500, 4).astype(np.int32),
    )
    flat = b.reshape(y, (1, 36))
    f = b.fully_connected(flat, per_tensor, QuantParams(0.3, 2))
    m = b.mean(y, QuantParams(0.05, -1), keep_dims=True)
    s = b.add(y, m, QuantParams(0.1, 0))
    s = b.max_pool2d(s, (2, 3), stride=(1, 2), padding="SAME", activation="RELU6")
    t = b.add(b.reshape(f, (1, 1, 1, 4)), s, QuantParams(0.2, -5))
    return b.build([b.softmax(t)])


@needs_gcc
def test_broadcast_add_per_tensor_weights_and_reshape_copy(tmp_path):
    graph = _broadcast_graph(np.random.default_rng(3))
    model = assert_c_equals_interpreter(graph, tmp_path / "c", n=300)
    assert model.output_size == int(np.prod(graph.tensor(graph.outputs[0]).shape))


def _banded_graph(rng, bits: int):
    """The ops BC-ResNet lowers to: PAD, SLICE per frequency band, VALID depthwise per band,
    CONCATENATION of the bands, pooling over the bins, SiLU (LOGISTIC then MUL), MUL and ADD
    broadcasting (1, T, 1, C) and (1, 1, 1, C) onto (1, T, F, C), CONCATENATION along the
    channels and the frames, SLICE along every axis."""
    b = GraphBuilder("banded")
    x = b.input("x", (1, 7, 12, 3), QuantParams(0.05, 4))
    padded = b.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)])
    bands = [
        b.depthwise_conv2d(
            b.slice(padded, (0, 0, 4 * k, 0), (1, 7, 6, 3), name=f"band{k}/bins"),
            random_weights(rng, (1, 1, 3, 3), 3, bits),
            QuantParams(0.07, -3),
            stride=(1, 1 + k % 2),
            padding="VALID",
            name=f"band{k}",
        )
        for k in range(3)
    ]
    c = b.concatenation(bands, axis=2, name="bands")  # (1, 7, 4 + 2 + 4, 3)
    f = b.avg_pool2d(c, (1, 10), stride=(1, 10), name="freq_pool")
    t = b.silu(f, QuantParams(0.03, -5), name="silu")
    q = QuantParams(0.05, -1)  # the three parts of a CONCATENATION share its qparams
    u = b.mul(b.mean(c, QuantParams(0.04, 1)), c, q, activation="RELU")
    w = b.concatenation([u, b.mul(c, t, q), b.add(t, c, q)], axis=3)  # (1, 7, 10, 9)
    corner = b.slice(w, (0, 2, 1, 3), (1, 3, 9, 5), name="corner")
    return b.build([b.concatenation([corner, b.slice(w, (0, 0, 1, 0), (1, 2, 9, 5))], axis=1)])


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4])
def test_bcresnet_ops_equal_interpreter(tmp_path, bits):
    graph = _banded_graph(np.random.default_rng(30 + bits), bits)
    assert_c_equals_interpreter(graph, tmp_path, n=300, seed=bits)


@needs_gcc
@pytest.mark.parametrize("scale", [0.01, 0.06, 0.5])
def test_logistic_table_over_scales(tmp_path, scale):
    """Every int8 input (300 x 256 random values) through the table, at several input scales."""
    b = GraphBuilder("logistic")
    x = b.input("x", (1, 2, 128), QuantParams(scale, 9))
    assert_c_equals_interpreter(b.build([b.logistic(x)]), tmp_path, n=300, seed=int(scale * 100))


def test_plan_keeps_every_input_apart_from_the_output():
    """A CONCATENATION's inputs all stay live until it runs, and no op's output shares bytes
    with a tensor alive while it runs (kernels never work in place)."""
    graph = _banded_graph(np.random.default_rng(0), 8)
    plan = plan_arena(graph, scratch=scratch_bytes)
    concat = next(i for i, op in enumerate(graph.ops) if op.name == "bands")
    live = {b.name: b for b in plan.buffers}
    assert all(live[name].last >= concat for name in graph.ops[concat].inputs)
    for index in range(len(graph.ops)):
        spans = sorted(
            (plan.offsets[b.name], plan.offsets[b.name] + b.size_bytes)
            for b in plan.buffers
            if b.first <= index <= b.last
        )
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


@needs_gcc
def test_arena_is_the_planners(tmp_path):
    graph = every_op_graph(np.random.default_rng(0))
    export_c(graph, tmp_path, cortex_m4="off")
    header = (tmp_path / "model.h").read_text()
    arena = int(re.search(r"#define TINYKWS_ARENA_BYTES (\d+)", header).group(1))
    assert arena == plan_arena(with_io_dtype(graph, "int8"), scratch=scratch_bytes).size_bytes
    source = (tmp_path / "model.c").read_text()
    assert f"static int32_t tinykws_arena[{-(-arena // 4)}];" in source
    assert "malloc" not in source + (tmp_path / "kernels.c").read_text()


def test_registered_as_exporter():
    assert EXPORTERS["c"] is export_c


def test_unsupported_op_is_refused_and_nothing_written(tmp_path, monkeypatch):
    graph = every_op_graph(np.random.default_rng(0))
    monkeypatch.delitem(emit.EMITTERS, "SOFTMAX")
    with pytest.raises(TinyKWSError, match=r"op \d+ SOFTMAX 'softmax': .*no kernel for SOFTMAX"):
        export_c(graph, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_float_ops_inside_are_refused(tmp_path):
    b = GraphBuilder("mixed")
    x = b.input("x", (1, 4), QuantParams(0.1, 0))
    y = b.quantize(b.dequantize(x, name="to_float"), QuantParams(0.2, 0))
    with pytest.raises(TinyKWSError, match="op 0 DEQUANTIZE 'to_float'.*int8 graphs only"):
        export_c(b.build([y]), tmp_path)


def test_bad_labels_and_outputs_are_refused(tmp_path):
    graph = every_op_graph(np.random.default_rng(0))
    with pytest.raises(TinyKWSError, match="3 labels for 10 outputs"):
        export_c(graph, tmp_path, labels=["a", "b", "c"])
    b = GraphBuilder("two")
    x = b.input("x", (1, 4), QuantParams(0.1, 0))
    with pytest.raises(TinyKWSError, match="exactly one input and one output"):
        export_c(b.build([b.softmax(x), b.reshape(x, (1, 2, 2))]), tmp_path)
    with pytest.raises(TinyKWSError, match="sparse must be one of"):
        export_c(graph, tmp_path, sparse="sometimes")


@pytest.mark.parametrize("bits", [4, 2])
def test_packing_is_cmsis_order(bits):
    """Value i sits at bit (i * bits) % 8 of byte i * bits // 8, two's complement."""
    limit = 2 ** (bits - 1)
    values = np.random.default_rng(bits).integers(-limit, limit, 37).astype(np.int8)
    packed = pack_values(values, bits)
    assert packed.size == -(-37 * bits // 8)
    index = np.arange(37)
    fields = (packed[index * bits // 8].astype(np.int16) >> (index * bits % 8)) & (2**bits - 1)
    decoded = np.where(fields >= limit, fields - 2**bits, fields)
    np.testing.assert_array_equal(decoded, values)


def test_sparse_encoding_layout_and_choice():
    rows = np.zeros((3, 20), np.int8)
    rows[0, [1, 19]] = [5, -3]
    rows[2, 0] = 127
    enc = encode_sparse(rows, 8)
    bits = np.unpackbits(enc.mask, bitorder="little")[:60].reshape(3, 20)
    np.testing.assert_array_equal(bits, rows != 0)
    assert enc.values.view(np.int8).tolist() == [5, -3, 127]
    assert enc.nbytes == 3 + 8 and enc.dense_bytes == 60
    assert choose_encoding(rows, 8, "auto", sparse_ok=True).kind == "sparse"
    assert choose_encoding(rows, 8, "auto", sparse_ok=False).kind == "dense"
    dense = np.ones((3, 20), np.int8)
    assert choose_encoding(dense, 8, "auto", sparse_ok=True).kind == "dense"
    assert choose_encoding(dense, 8, "always", sparse_ok=True).kind == "sparse"


def test_float_literals_round_trip():
    values = np.random.default_rng(0).standard_normal(200).astype(np.float32) * 1e3
    for v in [*values, np.float32(1e-6), np.float32(0.1), np.float32(3.0)]:
        assert np.float32(float(c_float(v)[:-1])) == v


@needs_gcc
def test_requantization_matches_fixed_point_specification(tmp_path):
    """tk_multiply_by_quantized_multiplier == fixedpoint.multiply_by_quantized_multiplier on
    extreme and random accumulators, Q31 multipliers and every shift (ties included)."""
    import ctypes
    import subprocess

    from tinykws.export.c.build import HOST_FLAGS
    from tinykws.export.c.frontend import template
    from tinykws.ir import fixedpoint as fp

    for name in ("kernels.h", "kernels_internal.h", "kernels.c"):  # every path: no tk_config.h
        (tmp_path / name).write_text(template(name))
    subprocess.run(
        ["gcc", *HOST_FLAGS, "-O2", "-fPIC", "-shared", "-o", "libk.so", "kernels.c"],
        cwd=tmp_path,
        check=True,
    )
    function = ctypes.CDLL(str(tmp_path / "libk.so")).tk_multiply_by_quantized_multiplier
    function.argtypes = [ctypes.c_int32] * 3
    function.restype = ctypes.c_int32
    rng = np.random.default_rng(0)
    edges = [fp.INT32_MIN, fp.INT32_MIN + 1, -(2**30), -3, -2, -1, 0, 1, 2, 3, 2**30, fp.INT32_MAX]
    xs = np.concatenate(
        [edges, rng.integers(fp.INT32_MIN, fp.INT32_MAX, 100), rng.integers(-5000, 5000, 100) * 64]
    )
    multipliers = [0, 2**30, 2**30 + 1, 1518500250, fp.INT32_MAX]
    multipliers += rng.integers(2**30, 2**31, 3).tolist()
    for shift in range(-31, 31):
        for m in multipliers:
            expected = fp.multiply_by_quantized_multiplier(xs, m, shift)
            got = [function(int(x), int(m), shift) for x in xs]
            np.testing.assert_array_equal(got, expected, err_msg=f"m={m} shift={shift}")


@needs_gcc
@pytest.mark.parametrize("scale", [0.004, 0.05, 0.3, 2.0])
def test_softmax_over_scales(tmp_path, scale):
    """Rows with ties, saturated values and differences below diff_min, at several scales."""
    b = GraphBuilder("softmax")
    x = b.input("x", (1, 3, 37), QuantParams(scale, -7))
    graph = b.build([b.softmax(x)])
    assert_c_equals_interpreter(graph, tmp_path, n=400, seed=int(scale * 1000))


def test_sparse_option_reaches_the_c_export(tmp_path, capsys):
    from tinykws.cli import main
    from tinykws.measure.model_file import LoadedModel
    from tinykws.run.exporting import ExportOptions, export_loaded
    from tinykws.run.stages.export import ExportStageConfig

    graph = every_op_graph(np.random.default_rng(18), 8, density=0.15)
    model = LoadedModel(tmp_path / "g.json", {}, "int8", graph=graph)
    saved = {}
    for mode in ("auto", "off"):
        export_loaded(model, "c", tmp_path / mode, ExportOptions(sparse=mode))
        saved[mode] = json.loads((tmp_path / mode / "export.json").read_text())
    assert saved["auto"]["sparse_saved_bytes"] > 0 and saved["off"]["sparse_saved_bytes"] == 0
    assert saved["auto"]["weight_bytes"] < saved["off"]["weight_bytes"]
    with pytest.raises(TinyKWSError, match="export.sparse"):
        ExportStageConfig(sparse="always")
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--sparse {auto,off}" in capsys.readouterr().out
