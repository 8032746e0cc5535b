"""Shared pieces of the C export tests: random integer graphs and compiling an export."""

from __future__ import annotations

import numpy as np
import pytest

from tinykws.export.c import export_c
from tinykws.export.c.build import CModel, arm_compiler, build_shared_library, host_compiler
from tinykws.ir import GraphBuilder, QuantParams, Weights, interpret
from tinykws.ir.transform import with_io_dtype

needs_gcc = pytest.mark.skipif(host_compiler() is None, reason="gcc is not installed")
needs_arm_gcc = pytest.mark.skipif(
    arm_compiler() is None, reason="arm-none-eabi-gcc is not installed (gcc-arm-none-eabi)"
)


def random_weights(rng, shape, axis: int, bits: int = 8, density: float = 1.0) -> Weights:
    """Weights spanning the full `bits`-bit range, per-channel scales, a bias of plausible size;
    a `1 - density` fraction of the weights is zero."""
    limit = 2 ** (bits - 1) - 1
    data = rng.integers(-limit, limit + 1, shape)
    data[rng.random(shape) >= density] = 0
    n = shape[axis]
    scales = rng.uniform(0.002, 0.02, n).astype(np.float32)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    return Weights(data.astype(np.int8), scales, bias, bits)


def every_op_graph(rng, bits: int = 8, density: float = 1.0, name: str = "every_op"):
    """One graph using every op the C backend runs (float boundary, softmax at the end)."""
    b = GraphBuilder(name)
    x = b.input("features", (1, 12, 8, 1))
    q = b.quantize(x, QuantParams(0.05, -3))
    w = lambda shape, axis: random_weights(rng, shape, axis, bits, density)  # noqa: E731
    y = b.conv2d(
        q,
        w((8, 3, 3, 1), 0),
        QuantParams(0.1, -20),
        stride=(2, 1),
        padding="SAME",
        activation="RELU",
        name="conv",
    )
    y = b.depthwise_conv2d(
        y,
        w((1, 3, 3, 16), 3),
        QuantParams(0.08, 5),
        depth_multiplier=2,
        padding=(1, 0, 1, 1),
        activation="RELU6",
        name="depthwise",
    )
    z = b.conv2d(y, w((16, 1, 1, 16), 0), QuantParams(0.1, 3), padding="VALID", name="pointwise")
    y = b.add(y, z, QuantParams(0.15, -2), activation="RELU", name="residual")
    y = b.max_pool2d(y, 2, padding="SAME", name="max_pool")
    y = b.avg_pool2d(y, (2, 2), stride=1, padding="SAME", name="avg_pool")
    y = b.pad(y, [(0, 0), (1, 0), (0, 1), (0, 0)], name="pad")
    y = b.conv2d(
        y,
        w((8, 2, 2, 16), 0),
        QuantParams(0.1, 0),
        dilation=(1, 2),
        padding="VALID",
        name="dilated",
    )
    top = b.slice(y, (0, 0, 0, 0), (1, 2, 3, 8), name="slice")
    y = b.concatenation([y, top], axis=1, name="concat")
    y = b.mul(y, b.logistic(y, name="sigmoid"), QuantParams(0.06, 0), name="mul")
    m = b.mean(y, QuantParams(0.05, 1), keep_dims=False, name="mean")
    m = b.quantize(m, QuantParams(0.03, 4), name="requantize")
    f = b.fully_connected(m, w((10, 8), 0), QuantParams(0.2, 0), name="fc")
    return b.build([b.dequantize(b.softmax(f, name="softmax"), name="scores")])


def compile_export(graph, folder, **options) -> CModel:
    """Export `graph` into `folder`, compile it with gcc -Werror -O2, load it."""
    export_c(graph, folder, **{"cortex_m4": "off", **options})
    return CModel(build_shared_library(folder))


def assert_c_equals_interpreter(graph, folder, n: int = 200, seed: int = 0, **options):
    """C int8 outputs == interpret(graph) outputs on `n` random int8 inputs (exact)."""
    model = compile_export(graph, folder, **options)
    int8 = with_io_dtype(graph, "int8")
    shape = int8.tensor(int8.inputs[0]).shape
    x = np.random.default_rng(seed).integers(-128, 128, (n, *shape[1:])).astype(np.int8)
    expected = interpret(int8, x)[int8.outputs[0]].reshape(n, -1)
    got = model.invoke(x)
    assert got.dtype == np.int8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    return model
