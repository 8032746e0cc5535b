"""Kernel paths chosen when the C is generated, against the integer interpreter (atol=0).

tk_config.h (tinykws.export.c.kconfig) compiles out the kernel paths a model does not use, so
a graph with only 3 x 3 depthwise layers builds only the 3 x 3 path (with its full-range or its
clamping requantization), and a dense int8 network no unpacking code. These graphs are small
enough for a path to be turned off, and are compared with the interpreter on the host (portable
C) and on the emulated Cortex-M4 (the inline-assembly paths); `-DTK_ALL_PATHS` builds every path
and gives the same outputs. The number of windows a convolution gathers is chosen so that the
arena does not grow (a layer given one window gathers more at the end of its output, where
the pixels come later). ADD and MUL take straight loops for each broadcasting pattern.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from c_support import assert_c_equals_interpreter, needs_arm_gcc, needs_gcc

from tinykws.export.c import export_c
from tinykws.export.c.build import CModel, build_shared_library
from tinykws.export.c.emit import gathered_windows, scratch_bytes
from tinykws.export.c.mcu import emulate_cortex_m4, qemu_binary
from tinykws.ir import GraphBuilder, QuantParams, Weights, interpret
from tinykws.ir.plan import plan_arena

needs_qemu = pytest.mark.skipif(qemu_binary() is None, reason="qemu-system-arm is not installed")
OUT = QuantParams(0.05, -7)


def weights(rng, shape, axis: int, bits: int) -> Weights:
    """Full-range weights, a fifth zero; scales from 1e-4 to 0.4, so every shift is negative
    (multipliers s_in * s_w / s_out = s_w below 0.5)."""
    limit = 2 ** (bits - 1) - 1
    data = rng.integers(-limit, limit + 1, shape)
    data[rng.random(shape) < 0.2] = 0
    scales = np.geomspace(1e-4, 0.4, shape[axis]).astype(np.float32)
    bias = rng.integers(-3000, 3000, shape[axis]).astype(np.int32)
    return Weights(data.astype(np.int8), scales, bias, bits)


def depthwise_graph(bits: int, activation: str):
    """3 x 3 depthwise layers side by side on (1, 9, 7, 12): padding on every side, stride 2 with
    uneven padding, padding of 2, no padding, and a 3 x 3 input (overhang on both sides)."""
    rng = np.random.default_rng(bits)
    b = GraphBuilder(f"dw{bits}{activation}")
    x = b.input("x", (1, 9, 7, 12), QuantParams(0.05, -3))
    small = b.slice(x, (0, 2, 1, 0), (1, 3, 3, 12))
    cases = [
        (x, {"padding": "SAME"}),
        (x, {"stride": 2, "padding": (0, 1, 1, 0)}),
        (x, {"padding": (2, 2, 2, 2)}),
        (x, {"padding": "VALID"}),
        (small, {"padding": "SAME"}),
    ]
    flat = []
    for source, options in cases:
        w = weights(rng, (1, 3, 3, 12), 3, bits)
        y = b.depthwise_conv2d(source, w, OUT, activation=activation, **options)
        flat.append(b.reshape(y, (1, int(np.prod(b.graph.tensor(y).shape)))))
    return b.build([b.concatenation(flat, axis=1)])


def config_of(folder) -> dict[str, int]:
    lines = (folder / "tk_config.h").read_text().splitlines()
    return {ln.split()[1]: int(ln.split()[2]) for ln in lines if ln.startswith("#define TK_")}


@needs_gcc
@pytest.mark.parametrize("activation", ["NONE", "RELU"])
@pytest.mark.parametrize("bits", [8, 4])
def test_depthwise_3x3_paths_equal_the_interpreter(tmp_path, bits, activation):
    graph = depthwise_graph(bits, activation)
    assert_c_equals_interpreter(graph, tmp_path / "c", n=5)
    config = config_of(tmp_path / "c")
    assert config["TK_DW_3X3"] == 1 and config["TK_DW_WINDOW"] == 0
    assert config["TK_DW_GENERIC"] == 0 and config["TK_CONV_PACKED"] == 0
    assert config["TK_DW_PACKED"] == int(bits != 8)
    assert (config["TK_DW_FULL"], config["TK_DW_CLAMP"]) == (
        (1, 0) if activation == "NONE" else (0, 1)
    )


@needs_gcc
def test_every_path_built_gives_the_same_outputs(tmp_path):
    graph = depthwise_graph(8, "NONE")
    folder = export_c(graph, tmp_path / "c", cortex_m4="off")
    model = CModel(build_shared_library(folder, optimization="-O2 -DTK_ALL_PATHS"))
    x = np.random.default_rng(1).integers(-128, 128, (4, 9, 7, 12)).astype(np.int8)
    expected = interpret(graph, x)[graph.outputs[0]].reshape(4, -1)
    np.testing.assert_array_equal(model.invoke(x), expected)


@pytest.mark.slow
@needs_arm_gcc
@needs_qemu
@pytest.mark.parametrize(("bits", "activation"), [(8, "NONE"), (8, "RELU"), (4, "NONE")])
def test_depthwise_3x3_paths_on_cortex_m4(tmp_path, bits, activation):
    """The inline-assembly 3 x 3 path with shifted weights at the borders; emulate_cortex_m4
    raises on any differing value."""
    graph = depthwise_graph(bits, activation)
    folder = export_c(graph, tmp_path / "c", cortex_m4="off")
    x = np.random.default_rng(bits).integers(-128, 128, (2, 9, 7, 12)).astype(np.int8)
    assert emulate_cortex_m4(folder, x, graph=graph).instructions > 0


def conv_graph(channels: int, second: int, bits: int = 8, c_in: int = 4):
    """A 3 x 3 convolution of (1, 10, 8, c_in) into `channels` channels, then a 1 x 1 one into
    `second`: (2, 16): the second layer holds the arena's peak; (32, 2): the first one does."""
    rng = np.random.default_rng(channels)
    b = GraphBuilder(f"conv{channels}_{bits}_{c_in}")
    x = b.input("x", (1, 10, 8, c_in), QuantParams(0.05, -3))
    y = b.conv2d(x, weights(rng, (channels, 3, 3, c_in), 0, bits), OUT, padding="SAME")
    y = b.conv2d(y, weights(rng, (second, 1, 1, channels), 0, bits), OUT, padding="VALID")
    return b.build([y])


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(
    ("channels", "second", "c_in", "windows"), [(2, 16, 4, 8), (32, 2, 4, 1), (32, 2, 8, 1)]
)
def test_gathered_windows_keep_the_arena(tmp_path, channels, second, c_in, windows, bits):
    """A convolution gathers up to 8 windows (of 36 or 72 values) where the arena has room, one
    where it is at the peak (and then more at the end of its output while they fit; 4-bit rows
    of 72 values unpacked in runs): the arena is the one of a single window."""
    graph = conv_graph(channels, second, bits, c_in)
    k = 9 * c_in
    assert gathered_windows(graph) == {0: windows}
    one = plan_arena(graph, scratch=lambda g, op: k if op is graph.ops[0] else 0).size_bytes
    assert plan_arena(graph, scratch=scratch_bytes).size_bytes == one
    assert_c_equals_interpreter(graph, tmp_path / "c", n=3)
    layers = json.loads((tmp_path / "c" / "export.json").read_text())["layers"]
    assert layers[0]["windows"] == windows


@pytest.mark.slow
@needs_arm_gcc
@needs_qemu
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("c_in", [4, 8])
def test_one_window_convolution_on_cortex_m4(tmp_path, bits, c_in):
    graph = conv_graph(32, 2, bits, c_in)
    folder = export_c(graph, tmp_path / "c", cortex_m4="off")
    x = np.random.default_rng(bits).integers(-128, 128, (2, 10, 8, c_in)).astype(np.int8)
    assert emulate_cortex_m4(folder, x, graph=graph).instructions > 0


def elementwise_graph():
    """ADD and MUL of (1, 6, 5, 8) with inputs of their own scales (one output scale, as the
    concatenation needs): the same shape, a row broadcast along W (either side), one value per
    channel, one value per pixel."""
    b = GraphBuilder("elementwise")
    x = b.input("x", (1, 6, 5, 8), QuantParams(0.05, -3))
    row = b.mean(x, QuantParams(0.03, 4), axes=(2,))  # (1, 6, 1, 8)
    channel = b.mean(x, QuantParams(0.02, -5))  # (1, 1, 1, 8)
    pixel = b.slice(x, (0, 0, 0, 2), (1, 6, 5, 1))  # (1, 6, 5, 1)
    out = QuantParams(0.07, 3)
    outputs = [
        b.add(x, x, out),
        b.add(x, row, out, activation="RELU"),
        b.add(row, x, out),
        b.add(x, channel, out),
        b.add(pixel, x, out),
        b.mul(x, row, out),
        b.mul(channel, x, out, activation="RELU"),
        b.mul(x, pixel, out),
    ]
    flat = [b.reshape(y, (1, int(np.prod(b.graph.tensor(y).shape)))) for y in outputs]
    return b.build([b.concatenation(flat, axis=1)])


@needs_gcc
def test_add_and_mul_broadcasts_equal_the_interpreter(tmp_path):
    assert_c_equals_interpreter(elementwise_graph(), tmp_path / "c", n=20)


@pytest.mark.slow
@needs_arm_gcc
@needs_qemu
def test_add_and_mul_broadcasts_on_cortex_m4(tmp_path):
    graph = elementwise_graph()
    folder = export_c(graph, tmp_path / "c", cortex_m4="off")
    x = np.random.default_rng(3).integers(-128, 128, (3, 6, 5, 8)).astype(np.int8)
    assert emulate_cortex_m4(folder, x, graph=graph).instructions > 0
