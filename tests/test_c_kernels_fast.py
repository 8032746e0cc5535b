"""The fast paths of the C convolution kernels (templates/kernels_conv.c) against the integer
interpreter, exactly (atol=0).

Each graph runs many layers side by side on one input and concatenates their flattened outputs,
so every layer's whole output is compared (a chain would let a later layer hide an error). The
layers cover: 1 x 1 convolutions read in place (even and odd channel counts), gathered windows
(3 x 3 with padding on every side, stride 2, dilation, a strided 1 x 1), depthwise 3 x 3 inside
and at the border, stride 2, dilation 2, 3 x 1 filters, depth multiplier 2, channel counts not a
multiple of 4, fully connected layers with one row and with many, rows of 9, 40, 66, 264, 594
and 756 values (tails; packed rows unpacked whole or in runs); per-channel scales that give
shifts below, at and above zero and per-tensor scales; RELU and RELU6 clamps. Every graph is
exported with 8-, 4- and 2-bit weights, dense and sparse. On the host the portable C runs; on
the emulated Cortex-M4 (when arm-none-eabi-gcc and qemu-system-arm are installed) the SXTB16 /
SMLAD paths run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from c_support import assert_c_equals_interpreter, needs_arm_gcc, needs_gcc

from tinykws.export.c import export_c
from tinykws.export.c.emit import fold_input_offset
from tinykws.export.c.mcu import emulate_cortex_m4, qemu_binary
from tinykws.ir import GraphBuilder, QuantParams, Weights

needs_qemu = pytest.mark.skipif(qemu_binary() is None, reason="qemu-system-arm is not installed")
OUT = QuantParams(0.05, -7)  # every layer's output: the concatenation copies them
CASES = [(8, "off"), (4, "off"), (2, "off"), (8, "always"), (4, "always"), (2, "always")]


def weights(rng, shape, axis: int, bits: int, per_tensor: bool = False) -> Weights:
    """Full-range weights, a fifth of them zero; scales from 1e-4 to 2 along the channels, so
    that multipliers (s_in * s_w / s_out, here s_w) take shifts below, at and above zero."""
    limit = 2 ** (bits - 1) - 1
    data = rng.integers(-limit, limit + 1, shape)
    data[rng.random(shape) < 0.2] = 0
    n = 1 if per_tensor else shape[axis]
    scales = np.geomspace(1e-4, 2.0, n).astype(np.float32)
    bias = rng.integers(-3000, 3000, shape[axis]).astype(np.int32)
    return Weights(data.astype(np.int8), scales, bias, bits)


def side_by_side(name: str, shape, layers, zero_point: int = -3) -> object:
    """A graph applying each layer(builder, x) to one input, outputs flattened and concatenated."""
    b = GraphBuilder(name)
    x = b.input("x", shape, QuantParams(0.05, zero_point))
    flat = []
    for layer in layers:
        y = layer(b, x)
        size = int(np.prod(b.graph.tensor(y).shape))
        flat.append(b.reshape(y, (1, size)))
    return b.build([b.concatenation(flat, axis=1)])


def channels_graph(bits: int):
    """Input (1, 9, 7, 12): 63 pixels (an odd count), 12 channels."""
    rng = np.random.default_rng(bits)

    def conv(shape, **kw):
        return lambda b, x: b.conv2d(x, weights(rng, shape, 0, bits), OUT, **kw)

    def dw(shape, **kw):
        return lambda b, x: b.depthwise_conv2d(x, weights(rng, shape, 3, bits), OUT, **kw)

    def flat_fc(b, x):  # one row of 756 values
        w = weights(rng, (10, 756), 0, bits)
        return b.fully_connected(b.reshape(x, (1, 756)), w, OUT, name="flat_fc")

    def rows_fc(b, x):  # 63 rows of 12 values, per-tensor scale
        w = weights(rng, (5, 12), 0, bits, per_tensor=True)
        return b.fully_connected(x, w, OUT, activation="RELU")

    return side_by_side(
        f"channels{bits}",
        (1, 9, 7, 12),
        [
            conv((12, 1, 1, 12), padding="VALID", activation="RELU"),
            conv((7, 1, 1, 12), padding="VALID"),
            conv((6, 3, 3, 12), padding="SAME", activation="RELU6"),
            conv((5, 3, 3, 12), stride=2, padding=(1, 0, 0, 1)),
            conv((4, 2, 2, 12), dilation=(2, 1), padding="VALID"),
            conv((3, 1, 1, 12), stride=2, padding="VALID"),
            dw((1, 3, 3, 12), padding="SAME", activation="RELU"),
            dw((1, 3, 3, 12), stride=2, padding=(0, 1, 1, 0)),
            dw((1, 3, 3, 12), dilation=2, padding="SAME"),
            dw((1, 3, 1, 12), padding="SAME", activation="RELU6"),
            dw((1, 3, 3, 24), depth_multiplier=2, padding="SAME", name="multiplier2"),
            lambda b, x: b.depthwise_conv2d(
                b.slice(x, (0, 0, 0, 0), (1, 9, 7, 10)), weights(rng, (1, 3, 3, 10), 3, bits), OUT
            ),
            flat_fc,
            rows_fc,
        ],
    )


def rows_graph(bits: int):
    """Long rows: input (1, 6, 5, 66); and a single-channel input as a first layer reads."""
    rng = np.random.default_rng(10 + bits)

    def conv(shape, **kw):
        return lambda b, x: b.conv2d(x, weights(rng, shape, 0, bits), OUT, **kw)

    return side_by_side(
        f"rows{bits}",
        (1, 6, 5, 66),
        [
            conv((5, 1, 1, 66), padding="VALID"),  # 66 values: packed rows unpacked in runs
            conv((4, 2, 2, 66), padding="VALID"),  # 264 values, gathered
            conv((3, 3, 3, 66), padding="SAME"),  # 594: two windows at a time
        ],
    )


def image_graph(bits: int):
    """Input (1, 12, 10, 1): the first layer of a keyword spotter, windows of 40 and 9 values."""
    rng = np.random.default_rng(20 + bits)
    return side_by_side(
        f"image{bits}",
        (1, 12, 10, 1),
        [
            lambda b, x: b.conv2d(
                x, weights(rng, (8, 10, 4, 1), 0, bits), OUT, stride=2, padding="SAME"
            ),
            lambda b, x: b.conv2d(x, weights(rng, (5, 3, 3, 1), 0, bits), OUT, padding="SAME"),
        ],
        zero_point=-128,
    )


GRAPHS = [channels_graph, rows_graph, image_graph]


@needs_gcc
@pytest.mark.parametrize(("bits", "sparse"), CASES)
def test_host_kernels_equal_the_interpreter(tmp_path, bits, sparse):
    for make in GRAPHS:
        graph = make(bits)
        assert_c_equals_interpreter(graph, tmp_path / graph.name, n=3, sparse=sparse)


@pytest.mark.slow
@needs_arm_gcc
@needs_qemu
@pytest.mark.parametrize(("bits", "sparse"), [(8, "off"), (4, "off"), (2, "always")])
def test_cortex_m4_kernels_equal_the_interpreter(tmp_path, bits, sparse):
    """The DSP paths, on the emulator; emulate_cortex_m4 raises on any differing value."""
    for make in GRAPHS:
        graph = make(bits)
        folder = export_c(graph, tmp_path / graph.name, cortex_m4="off", sparse=sparse)
        shape = graph.tensor(graph.inputs[0]).shape
        x = np.random.default_rng(bits).integers(-128, 128, (2, *shape[1:])).astype(np.int8)
        run = emulate_cortex_m4(folder, x, graph=graph)
        assert run.instructions > 0


def test_fold_input_offset_wraps_like_int32():
    w = np.full((2, 70000), 127, np.int8)  # 127 * 70000 * 128 overflows int32
    folded = fold_input_offset(np.array([5, -5], np.int32), w, 128, axis=0)
    expected = (np.array([5, -5]) + 128 * 127 * 70000 + 2**31) % 2**32 - 2**31
    assert folded.dtype == np.int32 and folded.tolist() == expected.tolist()


@needs_gcc
def test_layers_record_their_kernel(tmp_path):
    """export.json says which layers run the generic kernel: the depthwise convolution of depth
    multiplier 2; every other layer (4-bit rows of 756 values included) runs a fast path."""
    folder = export_c(channels_graph(4), tmp_path / "c", cortex_m4="off")
    layers = json.loads((folder / "export.json").read_text())["layers"]
    assert {r["name"] for r in layers if r["kernel"] == "generic"} == {"multiplier2"}
    assert len(layers) == 14
