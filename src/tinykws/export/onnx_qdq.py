"""A Graph as an ONNX model in QDQ form: float ops between QuantizeLinear/DequantizeLinear.

Every int8 activation becomes QuantizeLinear (its scale and zero point) followed by
DequantizeLinear; weights are int8 initializers read through a per-channel DequantizeLinear
(axis = the output channel), biases int32 initializers at scale s_in * s_w[c] (the float32
product, as in the graph). ONNX Runtime fuses these patterns into its integer kernels
(QLinearConv, QGemm, ...); a float32 Graph gives a plain float ONNX model.

Layout: ONNX works in NCHW, the graph in NHWC. 4-D tensors are transposed once, at the
boundary: the model input is (batch, 1, frames, bins) like the PyTorch model's; weights are
re-laid out (OHWI -> OIHW, depthwise (1, KH, KW, C) -> (C, 1, KH, KW)); a RESHAPE of a 4-D
tensor goes through NHWC (a Transpose first) so flattened features keep the graph's (h, w, c)
order, which its FULLY_CONNECTED weights expect.

Storage (`unsigned=True`, the default of `tinykws.export.onnx`): activations and weights are
stored as uint8, the same values shifted by 128 (zero points + 128). On x86 CPUs without VNNI,
ONNX Runtime's u8 x s8 kernels sum pairs of products in saturating 16-bit lanes (VPMADDUBSW),
which overflows for 8-bit weights and moved DS-CNN outputs by up to 36 steps; with uint8
weights it takes its u8 x u8 kernels, which sum in 32 bits, and the file computes what the
graph says. `unsigned=False` writes plain int8 (what TFLite-minded tools expect).

Rounding differs from the graph in a few places, each by at most one step: QuantizeLinear
rounds half to even (TFLite: half away from zero), the fused kernels requantize in float, and
float convolutions (unfused) sum in another order than PyTorch's fake-quant model.

Example:
    >>> import numpy as np
    >>> from tinykws.ir import GraphBuilder, QuantParams
    >>> b = GraphBuilder()
    >>> x = b.quantize(b.input("features", (1, 4)), QuantParams(0.1, 0))
    >>> g = b.build([b.dequantize(b.softmax(x))])
    >>> sorted({n.op_type for n in qdq_graph(g).node})
    ['DequantizeLinear', 'Identity', 'QuantizeLinear', 'Softmax']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinykws.ir.graph import Graph, Op, Tensor

TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


class _Emitter:
    """Nodes and initializers of the ONNX graph being built, and each IR tensor's float name."""

    def __init__(self, graph: Graph, unsigned: bool) -> None:
        self.graph = graph
        self.offset = 128 if unsigned else 0  # uint8 storage: the same values shifted by 128
        self.nodes: list = []
        self.initializers: list = []
        self.value: dict[str, str] = {}  # IR tensor -> ONNX tensor holding its float value
        self._count = 0

    @property
    def storage(self):
        return np.uint8 if self.offset else np.int8

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def node(
        self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attributes
    ) -> str:
        from onnx import helper

        output = output or self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def constant(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        # np.asarray, not np.ascontiguousarray, which turns 0-d scales into 1-d ones
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
        return name

    def qparams(self, tensor: Tensor, dtype=None) -> tuple[str, str]:
        """(scale, zero point) initializers: scalars per tensor, vectors per channel. With no
        `dtype`, int8 tensors are stored as `self.storage` (uint8: zero point + 128)."""
        scale = np.asarray(tensor.scale, np.float32)
        shift = self.offset if dtype is None and tensor.dtype == "int8" else 0
        dtype = self.storage if dtype is None else dtype
        zero = (np.asarray(tensor.zero_point, np.int64) + shift).astype(dtype)
        if tensor.axis is None:
            scale, zero = scale.reshape(()), zero.reshape(())
        return self.constant(f"{tensor.name}_scale", scale), self.constant(
            f"{tensor.name}_zero_point", zero
        )

    def settle(self, tensor: Tensor, float_value: str) -> None:
        """Record `tensor`'s value: int8 tensors go through QuantizeLinear + DequantizeLinear."""
        if tensor.dtype != "int8":
            self.value[tensor.name] = float_value
            return
        scale, zero = self.qparams(tensor)
        quantized = self.node("QuantizeLinear", [float_value, scale, zero], f"{tensor.name}_q")
        self.value[tensor.name] = self.node(
            "DequantizeLinear", [quantized, scale, zero], tensor.name
        )

    def weights(self, name: str, layout: Callable[[np.ndarray], np.ndarray], axis: int) -> str:
        """A constant (weights or bias) as a float value, through DequantizeLinear if integer."""
        tensor = self.graph.tensor(name)
        data = layout(tensor.data)
        if tensor.dtype == "float32":
            return self.constant(name, data.astype(np.float32))
        if tensor.dtype == "int8":
            data = (data.astype(np.int16) + self.offset).astype(self.storage)
        stored = self.constant(name, data)
        scale, zero = self.qparams(tensor, None if tensor.dtype == "int8" else data.dtype)
        extra = {"axis": axis} if tensor.axis is not None else {}
        return self.node("DequantizeLinear", [stored, scale, zero], f"{name}_dq", **extra)


def _activation(e: _Emitter, x: str, op: Op) -> str:
    activation = op.options.get("activation", "NONE")
    if activation == "RELU":
        return e.node("Relu", [x], f"{op.outputs[0]}_relu")
    if activation == "RELU6":
        low = e.constant("zero", np.array(0.0, np.float32))
        high = e.constant("six", np.array(6.0, np.float32))
        return e.node("Clip", [x, low, high], f"{op.outputs[0]}_relu6")
    return x


def _onnx_pads(pads) -> list[int]:
    top, bottom, left, right = (int(p) for p in pads)
    return [top, left, bottom, right]


def _conv(e: _Emitter, op: Op) -> str:
    o = op.options
    depthwise = op.type == "DEPTHWISE_CONV_2D"
    if depthwise:
        w = e.weights(op.inputs[1], lambda d: d.transpose(3, 0, 1, 2), axis=0)
        group = e.graph.tensor(op.inputs[0]).shape[3]
    else:
        w = e.weights(op.inputs[1], lambda d: d.transpose(0, 3, 1, 2), axis=0)
        group = 1
    b = e.weights(op.inputs[2], lambda d: d, axis=0)
    kernel = list(e.graph.tensor(op.inputs[1]).shape[1:3])
    y = e.node(
        "Conv",
        [e.value[op.inputs[0]], w, b],
        op.outputs[0],
        kernel_shape=kernel,
        strides=list(o["stride"]),
        dilations=list(o.get("dilation", (1, 1))),
        pads=_onnx_pads(o["pads"]),
        group=group,
    )
    return _activation(e, y, op)


def _fully_connected(e: _Emitter, op: Op) -> str:
    x = e.value[op.inputs[0]]
    c_in = e.graph.tensor(op.inputs[1]).shape[1]
    if len(e.graph.tensor(op.inputs[0]).shape) != 2:
        x = _reshape_value(e, op.inputs[0], (-1, c_in))
    w = e.weights(op.inputs[1], lambda d: d, axis=0)
    b = e.weights(op.inputs[2], lambda d: d, axis=0)
    return _activation(e, e.node("Gemm", [x, w, b], op.outputs[0], transB=1), op)


def _pool(e: _Emitter, op: Op) -> str:
    o = op.options
    attributes = {
        "kernel_shape": list(o["filter"]),
        "strides": list(o["stride"]),
        "pads": _onnx_pads(o["pads"]),
    }
    if op.type == "AVERAGE_POOL_2D":
        kind, attributes["count_include_pad"] = "AveragePool", 0  # TFLite skips padded pixels
    else:
        kind = "MaxPool"
    y = e.node(kind, [e.value[op.inputs[0]]], op.outputs[0], **attributes)
    out = e.graph.tensor(op.outputs[0])
    if kind == "AveragePool" and out.dtype == "int8":
        y = _round_ties_away(e, y, out, int(np.prod(o["filter"])))
    return _activation(e, y, op)


def _round_ties_away(e: _Emitter, y: str, out: Tensor, count: int) -> str:
    """`y` nudged by 1/(4 count) of a step away from zero in the int8 domain, so that the
    QuantizeLinear after it (ties to even) rounds a mean of `count` integers as TFLite's
    AVERAGE_POOL_2D does (ties away from zero). A mean's fraction is a multiple of 1/count, so
    the nudge moves only exact ties."""
    scale = np.float32(out.scale[0])
    raw = e.node("Div", [y, e.constant("scale", scale)], f"{out.name}_raw")
    raw = e.node("Add", [raw, e.constant("zp", np.float32(out.zero_point[0]))], f"{out.name}_raw")
    away = e.node("Sign", [raw], f"{out.name}_sign")
    nudge = e.node("Mul", [away, e.constant("nudge", scale / np.float32(4 * count))], out.name)
    return e.node("Add", [y, nudge], f"{out.name}_nudged")


def _reshape_value(e: _Emitter, name: str, shape) -> str:
    """The float value of IR tensor `name` reshaped (in NHWC element order) to `shape`."""
    x, source = e.value[name], e.graph.tensor(name).shape
    if len(source) == 4 and source[1] * source[2] > 1:
        x = e.node("Transpose", [x], f"{name}_nhwc", perm=list(TO_NHWC))
    elif len(source) == 4:
        pass  # (N, C, 1, 1) and (N, 1, 1, C) hold the same elements in the same order
    target = [-1, *[int(d) for d in shape[1:]]]
    if len(shape) == 4:  # reshape to NHWC, then back to NCHW
        y = e.node("Reshape", [x, e.constant("shape", np.array(target, np.int64))], f"{name}_r")
        return e.node("Transpose", [y], f"{name}_nchw", perm=list(TO_NCHW))
    return e.node("Reshape", [x, e.constant("shape", np.array(target, np.int64))], f"{name}_r")


def _reshape(e: _Emitter, op: Op) -> str:
    return _reshape_value(e, op.inputs[0], e.graph.tensor(op.outputs[0]).shape)


def _softmax(e: _Emitter, op: Op) -> str:
    axis = 1 if len(e.graph.tensor(op.inputs[0]).shape) == 4 else -1  # channels in NCHW
    return e.node("Softmax", [e.value[op.inputs[0]]], op.outputs[0], axis=axis)


def _pad(e: _Emitter, op: Op) -> str:
    pads = op.options["pads"]
    if len(pads) == 4:
        pads = [pads[i] for i in TO_NCHW]
    before, after = [int(p[0]) for p in pads], [int(p[1]) for p in pads]
    widths = e.constant("pads", np.array(before + after, np.int64))
    return e.node("Pad", [e.value[op.inputs[0]], widths], op.outputs[0])  # zeros: real 0


def _mean(e: _Emitter, op: Op) -> str:
    x = e.value[op.inputs[0]]
    if sorted(op.options["axes"]) == [1, 2]:
        return e.node("GlobalAveragePool", [x], op.outputs[0])
    axes = [_nchw_axis(e, op.inputs[0], a) for a in op.options["axes"]]
    return e.node("ReduceMean", [x], op.outputs[0], axes=axes, keepdims=1)


def _nchw_axis(e: _Emitter, name: str, axis: int) -> int:
    """The ONNX (NCHW) axis of NHWC axis `axis` of IR tensor `name`."""
    return TO_NHWC[axis] if len(e.graph.tensor(name).shape) == 4 else axis


def _slice(e: _Emitter, op: Op) -> str:
    begin, size = op.options["begin"], op.options["size"]
    axes = [_nchw_axis(e, op.inputs[0], a) for a in range(1, len(begin))]  # not the batch
    starts = np.array(begin[1:], np.int64)
    ends = starts + np.array(size[1:], np.int64)
    inputs = [
        e.value[op.inputs[0]],
        e.constant("starts", starts),
        e.constant("ends", ends),
        e.constant("axes", np.array(axes, np.int64)),
    ]
    return e.node("Slice", inputs, op.outputs[0])


def _concatenation(e: _Emitter, op: Op) -> str:
    axis = _nchw_axis(e, op.inputs[0], op.options["axis"])
    return e.node("Concat", [e.value[n] for n in op.inputs], op.outputs[0], axis=axis)


def _quantize(e: _Emitter, op: Op) -> str:
    return e.value[op.inputs[0]]  # `settle` adds the QuantizeLinear of the output's qparams


_EMIT: dict[str, Callable[[_Emitter, Op], str]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool,
    "AVERAGE_POOL_2D": _pool,
    "MEAN": _mean,
    "ADD": lambda e, op: _activation(
        e, e.node("Add", [e.value[n] for n in op.inputs], op.outputs[0]), op
    ),
    "MUL": lambda e, op: _activation(
        e, e.node("Mul", [e.value[n] for n in op.inputs], op.outputs[0]), op
    ),
    "LOGISTIC": lambda e, op: e.node("Sigmoid", [e.value[op.inputs[0]]], op.outputs[0]),
    "SLICE": _slice,
    "CONCATENATION": _concatenation,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": lambda e, op: e.value[op.inputs[0]],
    "PAD": _pad,
}


def _onnx_shape(shape) -> list:
    """NHWC -> NCHW for 4-D shapes; the batch dimension is symbolic."""
    dims = [shape[i] for i in TO_NCHW] if len(shape) == 4 else list(shape)
    return ["batch", *dims[1:]]


def _bind_inputs(e: _Emitter) -> list:
    from onnx import TensorProto, helper

    infos = []
    for name in e.graph.inputs:
        tensor = e.graph.tensor(name)
        dtype = TensorProto.INT8 if tensor.dtype == "int8" else TensorProto.FLOAT
        infos.append(helper.make_tensor_value_info(name, dtype, _onnx_shape(tensor.shape)))
        if tensor.dtype == "int8":  # int8 at the boundary, whatever the storage inside
            scale, zero = e.qparams(tensor, np.int8)
            e.value[name] = e.node("DequantizeLinear", [name, scale, zero], f"{name}_dq")
        else:
            e.value[name] = name
    return infos


def _bind_outputs(e: _Emitter) -> list:
    from onnx import TensorProto, helper

    infos = []
    for name in e.graph.outputs:
        tensor = e.graph.tensor(name)
        int8 = tensor.dtype == "int8"
        if int8:  # re-quantizing the dequantized value gives back the same integers
            scale, zero = e.qparams(tensor, np.int8)
            e.node("QuantizeLinear", [e.value[name], scale, zero], f"{name}_out", output=name)
        else:
            e.node("Identity", [e.value[name]], f"{name}_out", output=name)
        dtype = TensorProto.INT8 if int8 else TensorProto.FLOAT
        infos.append(helper.make_tensor_value_info(name, dtype, _onnx_shape(tensor.shape)))
    return infos


def qdq_graph(graph: Graph, unsigned: bool = False):
    """The `onnx.GraphProto` of `graph` (see the module docstring); `unsigned` stores int8
    activations and weights as uint8 (values + 128, zero points + 128)."""
    from onnx import helper

    graph.validate()
    e = _Emitter(graph, unsigned)
    inputs = _bind_inputs(e)
    for op in graph.ops:
        e.settle(graph.tensor(op.outputs[0]), _EMIT[op.type](e, op))
    outputs = _bind_outputs(e)
    return helper.make_graph(e.nodes, graph.name, inputs, outputs, e.initializers)
