"""Build a Graph layer by layer from integer weights and float scales.

Each method adds one op, infers its output shape, creates the output tensor with the given
quantization, and lets the graph compute the op's fixed-point constants. Methods return the
output tensor's name, so layers chain like a functional model. Pass `QuantParams` for int8
graphs; pass `None` (and float32 weights) to build the same network in float32.

Example:
    >>> import numpy as np
    >>> from tinykws.ir.params import quantize_bias
    >>> b = GraphBuilder("kws")
    >>> x = b.input("features", (1, 4, 4, 1), QuantParams(0.05, -10))
    >>> w = Weights(np.ones((2, 3, 3, 1), np.int8), scales=(0.01, 0.02),
    ...             bias=quantize_bias(np.array([0.1, -0.1]), 0.05, (0.01, 0.02)))
    >>> y = b.conv2d(x, w, QuantParams(0.1, -128), stride=2, padding="SAME", activation="RELU")
    >>> y = b.mean(y, QuantParams(0.1, -128), keep_dims=False)
    >>> graph = b.build([y])
    >>> graph.tensor(y).shape
    (1, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph, Tensor
from tinykws.ir.ops import (
    ACTIVATIONS,
    LOGISTIC_OUTPUT_SCALE,
    LOGISTIC_OUTPUT_ZERO_POINT,
    OP_KINDS,
    SOFTMAX_OUTPUT_SCALE,
    SOFTMAX_OUTPUT_ZERO_POINT,
    OpError,
    resolve_pads,
)


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor activation quantization: real = scale * (q - zero_point), q in int8."""

    scale: float
    zero_point: int = 0


@dataclass(frozen=True)
class Weights:
    """A layer's constants.

    Attributes:
        data: int8 weights (float32 for a float graph), in the op's layout (see `tinykws.ir.ops`).
        scales: one scale per output channel, or a single scale (per tensor); empty for float.
        bias: int32 (C_out,) at scale s_in * s_w[c] (`tinykws.ir.params.quantize_bias`); None
            means zeros.
        bits: weight bit width 2..8 (values within ±(2^(bits-1) - 1) below 8).
    """

    data: np.ndarray
    scales: Any = ()
    bias: np.ndarray | None = None
    bits: int = 8


def pair(value) -> tuple[int, int]:
    """(h, w) of a window size, stride or dilation given as one int or as (h, w)."""
    return (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)


def _explicit(padding):
    """int p -> (p, p, p, p); (ph, pw) -> (ph, ph, pw, pw); strings and 4-tuples unchanged."""
    if isinstance(padding, str):
        return padding
    if np.isscalar(padding):
        return (int(padding),) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


class GraphBuilder:
    """Adds layers to an `Graph`; `build(outputs)` validates and returns it."""

    def __init__(self, name: str = "model") -> None:
        self.graph = Graph(name)
        self._count = 0

    # --- tensors ---------------------------------------------------------------------------

    def input(self, name: str, shape, qparams: QuantParams | None = None) -> str:
        """Declare a graph input: int8 with `qparams`, or float32 when `qparams` is None."""
        self.graph.add_tensor(self._activation(name, shape, qparams))
        self.graph.inputs.append(name)
        return name

    def constant(self, name: str, data, scales=(), axis: int | None = None, bits: int = 8) -> str:
        """Add a constant tensor; dtype follows `data` (int8, int32 or float32)."""
        data = np.asarray(data)
        scales = tuple(np.ravel(scales))
        tensor = Tensor(
            name,
            data.shape,
            str(data.dtype),
            scales,
            (0,) * len(scales),
            axis if len(scales) > 1 else None,
            data,
            bits,
        )
        self.graph.add_tensor(tensor)
        return name

    def _activation(self, name, shape, qparams: QuantParams | None) -> Tensor:
        if qparams is None:
            return Tensor(name, tuple(shape), "float32")
        return Tensor(name, tuple(shape), "int8", (qparams.scale,), (qparams.zero_point,))

    def _weights(self, name: str, x: str, weights: Weights, axis: int) -> list[str]:
        """Add weight and bias tensors for a layer reading `x`; bias scale s_in * s_w[c]."""
        data = np.asarray(weights.data)
        n_out = data.shape[axis]
        scales = np.ravel(np.asarray(weights.scales, np.float32))
        bias = weights.bias
        if data.dtype == np.float32:
            bias = np.zeros(n_out, np.float32) if bias is None else np.asarray(bias, np.float32)
            return [self.constant(f"{name}/weights", data), self.constant(f"{name}/bias", bias)]
        bias = np.zeros(n_out, np.int32) if bias is None else np.asarray(bias)
        bias_scales = np.float32(self.graph.tensor(x).scale[0]) * scales
        return [
            self.constant(f"{name}/weights", data, scales, axis, weights.bits),
            self.constant(f"{name}/bias", bias, bias_scales, 0),
        ]

    # --- ops -------------------------------------------------------------------------------

    def _add(
        self,
        op_type: str,
        inputs: list[str],
        out: QuantParams | None,
        options: dict,
        name: str | None,
    ) -> str:
        """Infer the output shape, create the output tensor, add the op; returns the output name."""
        name = name or f"{op_type.lower()}_{self._count}"
        self._count += 1
        ins = [self.graph.tensor(n) for n in inputs]
        try:
            shape = OP_KINDS[op_type].infer(ins, options)
        except OpError as exc:
            raise TinyKWSError(f"graph {self.graph.name}: {op_type} '{name}': {exc}") from None
        self.graph.add_tensor(self._activation(name, shape, out))
        self.graph.add_op(op_type, inputs, [name], options, name)
        return name

    def _windowed(self, x: str, filter_hw, stride, padding, dilation=1) -> dict:
        in_hw = self.graph.tensor(x).shape[1:3]
        stride, dilation = list(pair(stride)), list(pair(dilation))
        try:
            label, pads = resolve_pads(_explicit(padding), in_hw, filter_hw, stride, dilation)
        except OpError as exc:
            raise TinyKWSError(f"graph {self.graph.name}: {exc}") from None
        return {"stride": stride, "dilation": dilation, "padding": label, "pads": pads}

    def _check_activation(self, activation: str) -> None:
        if activation not in ACTIVATIONS:
            raise TinyKWSError(
                f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}"
            )

    def conv2d(
        self,
        x: str,
        weights: Weights,
        out: QuantParams | None,
        *,
        activation: str = "NONE",
        stride=1,
        padding="SAME",
        dilation=1,
        name: str | None = None,
    ) -> str:
        """CONV_2D. weights.data (C_out, KH, KW, C_in); padding "SAME", "VALID", p, (ph, pw) or
        (top, bottom, left, right)."""
        self._check_activation(activation)
        name = name or f"conv_2d_{self._count}"
        options = self._windowed(x, np.shape(weights.data)[1:3], stride, padding, dilation)
        options["activation"] = activation
        return self._add("CONV_2D", [x, *self._weights(name, x, weights, 0)], out, options, name)

    def depthwise_conv2d(
        self,
        x: str,
        weights: Weights,
        out: QuantParams | None,
        *,
        depth_multiplier: int = 1,
        stride=1,
        padding="SAME",
        dilation=1,
        activation: str = "NONE",
        name: str | None = None,
    ) -> str:
        """DEPTHWISE_CONV_2D. weights.data (1, KH, KW, C_in * depth_multiplier)."""
        self._check_activation(activation)
        name = name or f"depthwise_conv_2d_{self._count}"
        options = self._windowed(x, np.shape(weights.data)[1:3], stride, padding, dilation)
        options.update(activation=activation, depth_multiplier=int(depth_multiplier))
        inputs = [x, *self._weights(name, x, weights, 3)]
        return self._add("DEPTHWISE_CONV_2D", inputs, out, options, name)

    def fully_connected(
        self,
        x: str,
        weights: Weights,
        out: QuantParams | None,
        *,
        activation: str = "NONE",
        name: str | None = None,
    ) -> str:
        """FULLY_CONNECTED. weights.data (C_out, C_in); the input is read as rows of C_in."""
        self._check_activation(activation)
        name = name or f"fully_connected_{self._count}"
        inputs = [x, *self._weights(name, x, weights, 0)]
        return self._add("FULLY_CONNECTED", inputs, out, {"activation": activation}, name)

    def max_pool2d(self, x: str, filter_size, **window) -> str:
        """MAX_POOL_2D; the output keeps the input's qparams. `window`: stride (default: the
        filter size), padding ("VALID"), activation ("NONE"), name."""
        return self._pool("MAX_POOL_2D", x, filter_size, **window)

    def avg_pool2d(self, x: str, filter_size, **window) -> str:
        """AVERAGE_POOL_2D (TFLite semantics: padded pixels are not counted); `window` as for
        `max_pool2d`."""
        return self._pool("AVERAGE_POOL_2D", x, filter_size, **window)

    def _pool(
        self, op_type, x, filter_size, stride=None, padding="VALID", activation="NONE", name=None
    ) -> str:
        self._check_activation(activation)
        filter_hw = list(pair(filter_size))
        options = self._windowed(x, filter_hw, filter_hw if stride is None else stride, padding)
        options.update(filter=filter_hw, activation=activation)
        return self._add(op_type, [x], self._same_q(x), options, name)

    def mean(
        self,
        x: str,
        out: QuantParams | None,
        *,
        keep_dims: bool = True,
        axes=(1, 2),
        name: str | None = None,
    ) -> str:
        """MEAN over H and W (global average pooling) or over W only (axes (2,)); keep_dims=False
        (global only) adds a RESHAPE to (N, C)."""
        options = {"axes": [int(a) for a in axes], "keep_dims": True}
        y = self._add("MEAN", [x], out, options, name if keep_dims else None)
        if keep_dims:
            return y
        shape = self.graph.tensor(y).shape
        return self.reshape(y, (shape[0], shape[3]), name=name)

    def add(self, a: str, b: str, out: QuantParams | None, **options) -> str:
        """ADD of two tensors (numpy broadcasting), requantized to `out`. `options`: activation
        ("NONE"), name."""
        return self._binary("ADD", a, b, out, **options)

    def mul(self, a: str, b: str, out: QuantParams | None, **options) -> str:
        """MUL of two tensors (numpy broadcasting), requantized to `out`; `options` as for
        `add`."""
        return self._binary("MUL", a, b, out, **options)

    def _binary(self, op_type, a, b, out, activation="NONE", name=None) -> str:
        self._check_activation(activation)
        return self._add(op_type, [a, b], out, {"activation": activation}, name)

    def logistic(self, x: str, *, name: str | None = None) -> str:
        """LOGISTIC (sigmoid); int8 output has scale 1/256 and zero point -128."""
        out = (
            QuantParams(LOGISTIC_OUTPUT_SCALE, LOGISTIC_OUTPUT_ZERO_POINT)
            if self.graph.tensor(x).is_quantized
            else None
        )
        return self._add("LOGISTIC", [x], out, {}, name)

    def silu(self, x: str, out: QuantParams | None, *, name: str | None = None) -> str:
        """SiLU (swish) as TFLite has it: MUL(x, LOGISTIC(x)); returns the MUL's output."""
        sigmoid = self.logistic(x, name=f"{name}/sigmoid" if name else None)
        return self.mul(x, sigmoid, out, name=name)

    def slice(self, x: str, begin, size, *, name: str | None = None) -> str:
        """SLICE: `size` elements from `begin` along every dimension; qparams unchanged."""
        options = {"begin": [int(v) for v in begin], "size": [int(v) for v in size]}
        return self._add("SLICE", [x], self._same_q(x), options, name)

    def concatenation(self, inputs, axis: int, *, name: str | None = None) -> str:
        """CONCATENATION along `axis`; int8 inputs must share the output's qparams (a copy)."""
        inputs = list(inputs)
        return self._add("CONCATENATION", inputs, self._same_q(inputs[0]), {"axis": axis}, name)

    def reshape(self, x: str, shape, *, name: str | None = None) -> str:
        """RESHAPE to `shape` (dimension 0 stays the batch); qparams unchanged."""
        options = {"shape": [int(d) for d in shape]}
        return self._add("RESHAPE", [x], self._same_q(x), options, name)

    def softmax(self, x: str, *, name: str | None = None) -> str:
        """SOFTMAX over the last axis; int8 output has scale 1/256 and zero point -128."""
        tensor = self.graph.tensor(x)
        out = (
            QuantParams(SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT)
            if tensor.is_quantized
            else None
        )
        return self._add("SOFTMAX", [x], out, {"beta": 1.0}, name)

    def quantize(self, x: str, out: QuantParams, *, name: str | None = None) -> str:
        """QUANTIZE float32 -> int8 (or int8 -> int8 with new qparams)."""
        return self._add("QUANTIZE", [x], out, {}, name)

    def dequantize(self, x: str, *, name: str | None = None) -> str:
        """DEQUANTIZE int8 -> float32."""
        return self._add("DEQUANTIZE", [x], None, {}, name)

    def pad(self, x: str, pads, *, name: str | None = None) -> str:
        """PAD with the zero point; pads = (before, after) per dimension."""
        options = {"pads": [[int(b), int(a)] for b, a in pads]}
        return self._add("PAD", [x], self._same_q(x), options, name)

    def _same_q(self, x: str) -> QuantParams | None:
        t = self.graph.tensor(x)
        return QuantParams(t.scale[0], t.zero_point[0]) if t.is_quantized else None

    def build(self, outputs) -> Graph:
        """Mark `outputs` (names, or one name) as graph outputs, validate, return the graph."""
        self.graph.outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        self.graph.validate()
        return self.graph
