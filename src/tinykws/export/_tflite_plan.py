"""How each Graph op becomes TFLite tensors and builtin ops (before serialization).

`plan_tflite(graph)` returns a `_Plan`: the TFLite tensors (IR tensors, plus int32 constants for
shapes, axes, paddings, slice bounds) and ops, one or two per IR op (a PAD or PADV2 goes in front
of a window op whose explicit padding SAME/VALID cannot express). `tinykws.export.tflite` then
serializes it; see there for what the files leave out and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph, Op, Tensor

_ACTIVATION = {"NONE": 0, "RELU": 1, "RELU6": 3}  # tflite.ActivationFunctionType
_PADDING = {"SAME": 0, "VALID": 1}  # tflite.Padding
_TENSOR_TYPE = {"float32": 0, "int32": 2, "int8": 9}  # tflite.TensorType
# Op versions for int8 kernels (TFLite's op_version.cc); float ops use version 1.
_INT8_VERSION = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "MAX_POOL_2D": 2,
    "AVERAGE_POOL_2D": 2,
    "MEAN": 2,
    "ADD": 2,
    "SOFTMAX": 2,
    "DEQUANTIZE": 2,
    "PAD": 2,
    "PADV2": 2,
    "MUL": 2,
    "LOGISTIC": 2,
    "SLICE": 2,
    "CONCATENATION": 2,
}
# Versions of hybrid ops (float32 input and output, int8 weights: dynamic-range quantization),
# per tensor and per channel (TFLite's op_version.cc); FULLY_CONNECTED with
# asymmetric_quantize_inputs is 9 either way.
_HYBRID_VERSION = {"CONV_2D": (2, 5), "DEPTHWISE_CONV_2D": (4, 6), "FULLY_CONNECTED": (9, 9)}


@dataclass(frozen=True)
class HybridWeight:
    """int8 weights that replace a float32 weight tensor of a float graph (dynamic range).

    Attributes:
        data: int8 values in the float tensor's layout and shape.
        scales: float32 scales, one per channel along `axis` (or one per tensor).
        axis: the channel axis of per-channel scales (0, or 3 for depthwise), else None.
        bits: the weight bit width (2..8; values within ±(2^(bits-1) - 1)).
    """

    data: np.ndarray
    scales: tuple[float, ...]
    axis: int | None
    bits: int = 8


@dataclass
class _TfTensor:
    """A tensor as the file stores it: constant data as little-endian bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: bytes | None = None
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    axis: int | None = None


@dataclass
class _TfOp:
    code: str
    version: int
    inputs: list[int]
    outputs: list[int]
    options: str | None  # the BuiltinOptions table name (None: the op has none)
    fields: dict[str, Any] = field(default_factory=dict)


class _Plan:
    """TFLite tensors and ops, before serialization."""

    def __init__(
        self,
        graph: Graph,
        widen_narrow_weights: bool,
        compact_bias: bool,
        hybrid: dict[str, HybridWeight] | None = None,
    ) -> None:
        self.graph = graph
        self.widen = widen_narrow_weights
        self.compact_bias = compact_bias
        self.hybrid = hybrid or {}
        self.tensors: list[_TfTensor] = []
        self.index: dict[str, int] = {}
        self.ops: list[_TfOp] = []

    def tensor(self, name: str, quantization: bool = True) -> int:
        """Index of IR tensor `name`, adding it on first use (optionally without its qparams)."""
        if name in self.hybrid and name not in self.index:
            h = self.hybrid[name]
            data = _le_bytes(np.asarray(h.data, np.int8))
            zeros = (0,) * len(h.scales)
            t = _TfTensor(name, h.data.shape, "int8", data, h.scales, zeros, h.axis)
            self.index[name] = self._append(t)
        if name not in self.index:
            t = self.graph.tensors[name]
            data = None if t.data is None else _le_bytes(t.data)
            q = (t.scale, t.zero_point, t.axis) if quantization else ((), (), None)
            self.index[name] = self._append(_TfTensor(t.name, t.shape, t.dtype, data, *q))
        return self.index[name]

    def bias(self, op: Op) -> int:
        """The bias of a conv/FC op, with its quantization (s_in * s_w[c], zero point 0,
        quantized dimension 0), which LiteRT's XNNPACK delegate requires of a quantized bias.
        `compact_bias` leaves it out where no builtin kernel reads it (per-channel
        requantization); per-tensor FULLY_CONNECTED checks the bias scale against s_in * s_w,
        so there it always stays."""
        weights = self.graph.tensors[op.inputs[1]]
        per_tensor_fc = op.type == "FULLY_CONNECTED" and len(weights.scale) == 1
        return self.tensor(op.inputs[2], quantization=per_tensor_fc or not self.compact_bias)

    def constant(self, name: str, values) -> int:
        """A new int32 constant (shapes, axes, paddings)."""
        array = np.asarray(values, dtype="<i4")
        return self._append(_TfTensor(name, array.shape, "int32", data=array.tobytes()))

    def like(self, name: str, source: Tensor, shape) -> int:
        """A new activation tensor with `source`'s dtype and quantization."""
        quantization = (source.scale, source.zero_point, source.axis)
        return self._append(_TfTensor(name, tuple(shape), source.dtype, None, *quantization))

    def _append(self, tensor: _TfTensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def hybrid_version(self, op: Op) -> int | None:
        """The version of a hybrid op (int8 weights in a float graph), else None."""
        weight = self.hybrid.get(op.inputs[1]) if len(op.inputs) > 1 else None
        if weight is None:
            return None
        return _HYBRID_VERSION[op.type][len(weight.scales) > 1]

    def add(self, code: str, inputs, outputs, options: str | None, dtype: str, **fields) -> None:
        version = fields.pop("version", None)
        if version is None:
            version = _INT8_VERSION.get(code, 1) if dtype == "int8" else 1
        self.ops.append(_TfOp(code, version, list(inputs), list(outputs), options, fields))


def _le_bytes(array: np.ndarray) -> bytes:
    """Little-endian, C-ordered bytes, as TFLite buffers store them."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _where(op: Op) -> str:
    return f"{op.type} '{op.name}'" if op.name else op.type


def _padded_input(plan: _Plan, op: Op, lowest: bool) -> int:
    """Insert PAD (zero point) or PADV2 (lowest value) for explicit pads; return the new input."""
    x = plan.graph.tensors[op.inputs[0]]
    top, bottom, left, right = op.options["pads"]
    shape = (x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3])
    padded = plan.like(f"{op.outputs[0]}/padded", x, shape)
    pads = plan.constant(
        f"{op.outputs[0]}/paddings", [[0, 0], [top, bottom], [left, right], [0, 0]]
    )
    if not lowest:
        plan.add("PAD", [plan.tensor(x.name), pads], [padded], "PadOptions", x.dtype)
        return padded
    low = np.array(
        -128 if x.dtype == "int8" else np.finfo(np.float32).min,
        dtype="<i1" if x.dtype == "int8" else "<f4",
    )
    name = f"{op.outputs[0]}/pad_value"
    value = plan._append(_TfTensor(name, (), x.dtype, low.tobytes(), x.scale, x.zero_point))
    plan.add("PADV2", [plan.tensor(x.name), pads, value], [padded], "PadV2Options", x.dtype)
    return padded


def _window_input(plan: _Plan, op: Op, lowest: bool = False) -> tuple[int, int]:
    """(input index, TFLite padding) for a windowed op, inserting a pad op when needed."""
    if op.options["padding"] != "EXPLICIT":
        return plan.tensor(op.inputs[0]), _PADDING[op.options["padding"]]
    return _padded_input(plan, op, lowest), _PADDING["VALID"]


def _check_bits(plan: _Plan, op: Op) -> None:
    w = plan.hybrid.get(op.inputs[1]) or plan.graph.tensors[op.inputs[1]]
    if w.bits < 8 and not plan.widen:
        raise TinyKWSError(
            f"{_where(op)}: {w.bits}-bit weights cannot be stored packed in "
            "TFLite (int8 only); use --format c, or widen them to int8"
        )


def _lower_conv(plan: _Plan, op: Op) -> None:
    _check_bits(plan, op)
    o, out = op.options, plan.graph.tensors[op.outputs[0]]
    x, padding = _window_input(plan, op)
    fields = {
        "StrideH": o["stride"][0],
        "StrideW": o["stride"][1],
        "DilationHFactor": o["dilation"][0],
        "DilationWFactor": o["dilation"][1],
    }
    table = "Conv2DOptions"
    if op.type == "DEPTHWISE_CONV_2D":
        table, fields["DepthMultiplier"] = "DepthwiseConv2DOptions", o["depth_multiplier"]
    # The one-byte fields last, side by side: they share one 4-byte slot of the table.
    fields.update(Padding=padding, FusedActivationFunction=_ACTIVATION[o["activation"]])
    inputs = [x, plan.tensor(op.inputs[1]), plan.bias(op)]
    fields["version"] = plan.hybrid_version(op)
    plan.add(op.type, inputs, [plan.tensor(out.name)], table, out.dtype, **fields)


def _lower_fc(plan: _Plan, op: Op) -> None:
    _check_bits(plan, op)
    out = plan.graph.tensors[op.outputs[0]]
    inputs = [plan.tensor(op.inputs[0]), plan.tensor(op.inputs[1]), plan.bias(op)]
    fields = {"FusedActivationFunction": _ACTIVATION[op.options["activation"]]}
    fields["KeepNumDims"] = False
    version = plan.hybrid_version(op)
    if version is not None:  # quantize each input row with its own zero point, as TF does
        fields["AsymmetricQuantizeInputs"] = True
    plan.add(
        "FULLY_CONNECTED",
        inputs,
        [plan.tensor(out.name)],
        "FullyConnectedOptions",
        out.dtype,
        version=version,
        **fields,
    )


def _lower_pool(plan: _Plan, op: Op) -> None:
    o, out = op.options, plan.graph.tensors[op.outputs[0]]
    if op.type == "AVERAGE_POOL_2D" and o["padding"] == "EXPLICIT":
        raise TinyKWSError(
            f"{_where(op)}: padding {o['pads']} is neither SAME nor VALID, which "
            "TFLite's average pooling cannot express; pad explicitly before it"
        )
    x, padding = _window_input(plan, op, lowest=True)
    plan.add(
        op.type,
        [x],
        [plan.tensor(out.name)],
        "Pool2DOptions",
        out.dtype,
        StrideH=o["stride"][0],
        StrideW=o["stride"][1],
        FilterHeight=o["filter"][0],
        FilterWidth=o["filter"][1],
        Padding=padding,
        FusedActivationFunction=_ACTIVATION[o["activation"]],
    )


def _lower_with_constant(plan: _Plan, op: Op, suffix: str, values, table: str, **fields) -> None:
    """The op reading its input and one new int32 constant (axes, shape, paddings)."""
    out = plan.graph.tensors[op.outputs[0]]
    constant = plan.constant(f"{out.name}/{suffix}", values)
    inputs = [plan.tensor(op.inputs[0]), constant]
    plan.add(op.type, inputs, [plan.tensor(out.name)], table, out.dtype, **fields)


def _lower_mean(plan: _Plan, op: Op) -> None:
    axes = op.options["axes"]
    _lower_with_constant(plan, op, "axes", axes, "ReducerOptions", KeepDims=True)


def _flattens_into_fc(graph: Graph, op: Op) -> bool:
    """Whether RESHAPE `op` only flattens (..., K) to (N, K) for the input of FULLY_CONNECTED
    ops. They flatten their input themselves (rows = elements / K, fully_connected.cc), so the
    RESHAPE can go, as TensorFlow's converter drops it (RemoveReshapeBeforeFullyConnected)."""
    x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    readers = graph.consumers(out.name)
    return (
        len(out.shape) == 2
        and out.shape[-1] == x.shape[-1]
        and out.name not in graph.outputs
        and bool(readers)
        and all(r.type == "FULLY_CONNECTED" and r.inputs[0] == out.name for r in readers)
    )


def _lower_reshape(plan: _Plan, op: Op) -> None:
    if _flattens_into_fc(plan.graph, op):
        plan.index[op.outputs[0]] = plan.tensor(op.inputs[0])
        return
    shape = plan.graph.tensors[op.outputs[0]].shape
    new_shape = np.asarray(shape, np.int32)
    _lower_with_constant(plan, op, "shape", shape, "ReshapeOptions", NewShape=new_shape)


def _lower_simple(table: str | None, **fixed):
    def lower(plan: _Plan, op: Op) -> None:
        out = plan.graph.tensors[op.outputs[0]]
        fields = dict(fixed)
        if "activation" in op.options:
            fields["FusedActivationFunction"] = _ACTIVATION[op.options["activation"]]
        dtype = plan.graph.tensors[op.inputs[0]].dtype
        plan.add(
            op.type,
            [plan.tensor(n) for n in op.inputs],
            [plan.tensor(out.name)],
            table,
            dtype if op.type != "QUANTIZE" else out.dtype,
            **fields,
        )

    return lower


def _lower_pad(plan: _Plan, op: Op) -> None:
    _lower_with_constant(plan, op, "paddings", op.options["pads"], "PadOptions")


def _lower_slice(plan: _Plan, op: Op) -> None:
    out = plan.graph.tensors[op.outputs[0]]
    begin = plan.constant(f"{out.name}/begin", op.options["begin"])
    size = plan.constant(f"{out.name}/size", op.options["size"])
    inputs = [plan.tensor(op.inputs[0]), begin, size]
    plan.add("SLICE", inputs, [plan.tensor(out.name)], "SliceOptions", out.dtype)


def _lower_concatenation(plan: _Plan, op: Op) -> None:
    out = plan.graph.tensors[op.outputs[0]]
    plan.add(
        "CONCATENATION",
        [plan.tensor(n) for n in op.inputs],
        [plan.tensor(out.name)],
        "ConcatenationOptions",
        out.dtype,
        Axis=op.options["axis"],
    )


_LOWER = {
    "CONV_2D": _lower_conv,
    "DEPTHWISE_CONV_2D": _lower_conv,
    "FULLY_CONNECTED": _lower_fc,
    "MAX_POOL_2D": _lower_pool,
    "AVERAGE_POOL_2D": _lower_pool,
    "MEAN": _lower_mean,
    "ADD": _lower_simple("AddOptions"),
    "RESHAPE": _lower_reshape,
    "SOFTMAX": _lower_simple("SoftmaxOptions", Beta=1.0),
    "QUANTIZE": _lower_simple("QuantizeOptions"),
    "DEQUANTIZE": _lower_simple("DequantizeOptions"),
    "PAD": _lower_pad,
    "MUL": _lower_simple("MulOptions"),
    "LOGISTIC": _lower_simple(None),
    "SLICE": _lower_slice,
    "CONCATENATION": _lower_concatenation,
}


def plan_tflite(
    graph: Graph,
    widen_narrow_weights: bool = False,
    compact_bias: bool = False,
    hybrid: dict[str, HybridWeight] | None = None,
) -> _Plan:
    """Map every IR op onto TFLite builtin ops (plus PAD where padding needs it); `hybrid`
    stores the named float32 weight tensors as int8 (dynamic-range quantization)."""
    graph.validate()
    plan = _Plan(graph, widen_narrow_weights, compact_bias, hybrid)
    for name in graph.inputs:
        plan.tensor(name)
    for op in graph.ops:
        if op.type not in _LOWER:
            raise TinyKWSError(
                f"{_where(op)} has no TFLite lowering here yet; use --format onnx or --format c"
            )
        _LOWER[op.type](plan, op)
    return plan
