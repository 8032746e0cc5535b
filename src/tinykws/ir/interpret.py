"""Run a Graph in numpy: the executable specification of tinykws's deployed arithmetic.

int8 ops follow TFLite Micro's reference integer kernels bit for bit (see `tinykws.ir.kernels`);
`runtime="litert"` swaps in LiteRT's reference FULLY_CONNECTED, the one op where the two differ
(LiteRT requantizes it in double precision), to reproduce LiteRT's builtin reference kernels
exactly. Float32 ops (float graphs, QUANTIZE/DEQUANTIZE at the boundary) use plain float32
numpy. Every exporter is tested for exact equality against `interpret`.

Inputs may carry any batch size in their first dimension (the graph usually says 1): every op
treats dimension 0 as the batch, so a whole validation set runs in one call.

Example:
    >>> import numpy as np
    >>> from tinykws.ir.builder import GraphBuilder, QuantParams, Weights
    >>> b = GraphBuilder("demo")
    >>> x = b.input("x", (1, 4), QuantParams(0.5, 0))
    >>> w = Weights(np.array([[1, 2, 3, 4]], np.int8), scales=(0.25,), bias=np.array([0], np.int32))
    >>> y = b.fully_connected(x, w, QuantParams(1.0, 0))
    >>> graph = b.build([y])
    >>> interpret(graph, np.array([[2, 2, 2, 2]], np.int8))[y].tolist()  # 20 * 0.125 = 2.5 -> 3
    [[3]]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir import kernels as k
from tinykws.ir.graph import DTYPES, Graph, Op, Tensor


def interpret(
    graph: Graph, inputs, *, return_all: bool = False, runtime: str = "tflm"
) -> dict[str, np.ndarray]:
    """Run `graph` on `inputs` and return its outputs by name.

    Args:
        graph: a validated Graph.
        inputs: one array (single-input graphs), a sequence in `graph.inputs` order, or a dict
            by input name. Shapes must match the graph except for the batch dimension; int8
            inputs must be integers within [-128, 127].
        return_all: also return every intermediate tensor (all non-constant tensors).
        runtime: "tflm" (TFLite Micro's kernels, the deployed arithmetic and the default) or
            "litert" (LiteRT's builtin reference kernels, which requantize FULLY_CONNECTED in
            double precision: about one FC output in a thousand differs by one LSB, where the
            fixed-point double rounding falls on the other side of a half).

    Returns:
        dict name -> array (int8 or float32), graph outputs in order (or all tensors).
    """
    if runtime not in RUNTIMES:
        raise TinyKWSError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    kernels = RUNTIMES[runtime]
    values: dict[str, np.ndarray] = _bind_inputs(graph, inputs)
    for op in graph.ops:
        ins = [graph.tensors[n] for n in op.inputs]
        out = graph.tensors[op.outputs[0]]
        args = [t.data if t.is_constant else values[t.name] for t in ins]
        values[out.name] = kernels[op.type](op, args, ins, out)
    names = list(values) if return_all else graph.outputs
    return {n: values[n] for n in names}


def _bind_inputs(graph: Graph, inputs) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(graph.inputs))
        if unknown:
            raise TinyKWSError(f"graph {graph.name}: no input named '{unknown[0]}'")
        arrays = [inputs.get(n) for n in graph.inputs]
    elif isinstance(inputs, (list, tuple)):
        arrays = list(inputs)
    else:
        arrays = [inputs]
    if len(arrays) != len(graph.inputs) or any(a is None for a in arrays):
        raise TinyKWSError(f"graph {graph.name}: expects inputs {', '.join(graph.inputs)}")
    return {n: _check_input(graph.tensors[n], a) for n, a in zip(graph.inputs, arrays)}


def _check_input(tensor: Tensor, array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != len(tensor.shape) or array.shape[1:] != tensor.shape[1:]:
        raise TinyKWSError(
            f"input '{tensor.name}': shape {array.shape} does not match "
            f"{tensor.shape} (the first dimension may differ)"
        )
    if tensor.dtype == "float32":
        return array.astype(np.float32)
    info = np.iinfo(DTYPES[tensor.dtype])
    if array.dtype.kind not in "iu" or (
        array.size and (array.min() < info.min or array.max() > info.max)
    ):
        raise TinyKWSError(f"input '{tensor.name}': needs {tensor.dtype} values, got {array.dtype}")
    return array.astype(DTYPES[tensor.dtype])


# --- op adapters: read options and params, call the kernel ------------------------------------


def _window(op: Op, filter_hw) -> k.Window:
    o = op.options
    return k.Window(
        tuple(filter_hw), tuple(o["stride"]), tuple(o.get("dilation", (1, 1))), tuple(o["pads"])
    )


def _requant(op: Op, out: Tensor) -> k.Requantize:
    p = op.params
    return k.Requantize(
        p["multiplier"], p["shift"], out.zero_point[0], tuple(int(v) for v in p["activation_range"])
    )


def _activate_f32(y: np.ndarray, op: Op) -> np.ndarray:
    activation = op.options.get("activation", "NONE")
    if activation == "RELU":
        y = np.maximum(y, np.float32(0))
    elif activation == "RELU6":
        y = np.clip(y, np.float32(0), np.float32(6))
    return y.astype(np.float32)


def _conv(op, args, ins, out):
    x, w, b = args
    window = _window(op, w.shape[1:3])
    if out.dtype == "float32":
        return _activate_f32(_conv_f32(x, w, b, window), op)
    return k.conv2d_s8(x, ins[0].zero_point[0], w, b, window, _requant(op, out))


def _conv_f32(x, w, b, window):
    out_hw = window.out_hw(x.shape[1], x.shape[2])
    acc = np.zeros((x.shape[0], *out_hw, w.shape[0]), np.float32)
    for i, j, tap in k.taps(k.pad_hw(x, window.pads, 0.0), window, out_hw):
        acc += tap @ w[:, i, j, :].T
    return acc + b


def _depthwise(op, args, ins, out):
    x, w, b = args
    window = _window(op, w.shape[1:3])
    multiplier = int(op.options.get("depth_multiplier", 1))
    if out.dtype == "float32":
        xs = np.repeat(x, multiplier, axis=3) if multiplier > 1 else x
        out_hw = window.out_hw(x.shape[1], x.shape[2])
        acc = np.zeros((x.shape[0], *out_hw, w.shape[3]), np.float32)
        for i, j, tap in k.taps(k.pad_hw(xs, window.pads, 0.0), window, out_hw):
            acc += tap * w[0, i, j]
        return _activate_f32(acc + b, op)
    return k.depthwise_conv2d_s8(
        x, ins[0].zero_point[0], w, b, multiplier, window, _requant(op, out)
    )


def _fully_connected(op, args, ins, out):
    x, w, b = args
    if out.dtype == "float32":
        return _activate_f32(x.reshape(-1, w.shape[1]) @ w.T + b, op)
    return k.fully_connected_s8(x, ins[0].zero_point[0], w, b, _requant(op, out))


def _fully_connected_litert(op, args, ins, out):
    x, w, b = args
    if out.dtype == "float32":
        return _fully_connected(op, args, ins, out)
    s_in, s_out = float(np.float32(ins[0].scale[0])), float(np.float32(out.scale[0]))
    scales = np.broadcast_to(np.asarray(ins[1].scale, np.float32), (w.shape[0],))
    real = np.array([s_in * float(s) / s_out for s in scales])  # double, in TFLite's order
    return k.fully_connected_double_s8(
        x, ins[0].zero_point[0], w, b, real, out.zero_point[0], tuple(op.params["activation_range"])
    )


def _max_pool(op, args, ins, out):
    window = _window(op, op.options["filter"])
    x = args[0]
    if out.dtype == "float32":
        out_hw = window.out_hw(x.shape[1], x.shape[2])
        acc = np.full((x.shape[0], *out_hw, x.shape[3]), np.finfo(np.float32).min, np.float32)
        for _, _, tap in k.taps(k.pad_hw(x, window.pads, -np.inf), window, out_hw):
            np.maximum(acc, tap, out=acc)
        return _activate_f32(acc, op)
    return k.max_pool2d_s8(x, window, tuple(op.params["activation_range"]))


def _avg_pool(op, args, ins, out):
    window = _window(op, op.options["filter"])
    x = args[0]
    if out.dtype == "float32":
        out_hw = window.out_hw(x.shape[1], x.shape[2])
        ones = k.pad_hw(np.ones((1, *x.shape[1:3], 1), np.float32), window.pads, 0.0)
        total = np.zeros((x.shape[0], *out_hw, x.shape[3]), np.float32)
        count = np.zeros((1, *out_hw, 1), np.float32)
        padded = k.pad_hw(x, window.pads, 0.0)
        for (_, _, tap), (_, _, one) in zip(
            k.taps(padded, window, out_hw), k.taps(ones, window, out_hw)
        ):
            total += tap
            count += one
        return _activate_f32(total / count, op)
    return k.avg_pool2d_s8(x, window, tuple(op.params["activation_range"]))


def _mean(op, args, ins, out):
    x, axes = args[0], tuple(op.options["axes"])
    if out.dtype == "float32":
        return x.mean(axis=axes, keepdims=True, dtype=np.float32)
    p = op.params
    zero_points = (ins[0].zero_point[0], p["multiplier"], p["shift"], out.zero_point[0])
    return k.mean_s8(x, axes, *zero_points)


def _add(op, args, ins, out):
    a, b = args
    if out.dtype == "float32":
        return _activate_f32(a + b, op)
    zero_points = (ins[0].zero_point[0], ins[1].zero_point[0], out.zero_point[0])
    return k.add_s8(a, b, zero_points, op.params)


def _mul(op, args, ins, out):
    a, b = args
    if out.dtype == "float32":
        return _activate_f32(a * b, op)
    zero_points = (ins[0].zero_point[0], ins[1].zero_point[0], out.zero_point[0])
    return k.mul_s8(a, b, zero_points, op.params)


def _logistic(op, args, ins, out):
    if out.dtype == "float32":
        return (1.0 / (1.0 + np.exp(-args[0]))).astype(np.float32)
    return k.logistic_s8(args[0], op.params["table"])


def _slice(op, args, ins, out):
    begin, size = op.options["begin"], op.options["size"]
    # dimension 0 is the batch: every sample is sliced alike
    index = (slice(None), *(slice(b, b + n) for b, n in zip(begin[1:], size[1:])))
    return args[0][index]


def _concatenation(op, args, ins, out):
    return np.concatenate(args, axis=op.options["axis"])


def _reshape(op, args, ins, out):
    return args[0].reshape((-1, *out.shape[1:]))  # dimension 0 is the batch


def _softmax(op, args, ins, out):
    x = args[0]
    if out.dtype == "float32":
        beta = np.float32(op.options.get("beta", 1.0))
        e = np.exp((x - x.max(axis=-1, keepdims=True)) * beta)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    p = op.params
    return k.softmax_s8(x, p["input_multiplier"], p["input_left_shift"], p["diff_min"])


def _quantize(op, args, ins, out):
    if ins[0].dtype == "int8":
        p = op.params
        return k.requantize_s8(
            args[0], ins[0].zero_point[0], p["multiplier"], p["shift"], out.zero_point[0]
        )
    return k.quantize_f32_s8(args[0], out.scale[0], out.zero_point[0])


def _dequantize(op, args, ins, out):
    return k.dequantize_s8_f32(args[0], ins[0].scale[0], ins[0].zero_point[0])


def _pad(op, args, ins, out):
    value = (
        out.zero_point[0] if out.dtype == "int8" else 0.0
    )  # TFLite pads int8 with the zero point
    widths = [tuple(int(v) for v in p) for p in op.options["pads"]]
    return np.pad(args[0], widths, constant_values=value)


KERNELS: dict[str, Callable[[Op, list, list, Tensor], np.ndarray]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _max_pool,
    "AVERAGE_POOL_2D": _avg_pool,
    "MEAN": _mean,
    "ADD": _add,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "PAD": _pad,
    "MUL": _mul,
    "LOGISTIC": _logistic,
    "SLICE": _slice,
    "CONCATENATION": _concatenation,
}

RUNTIMES: dict[str, dict[str, Callable[[Op, list, list, Tensor], np.ndarray]]] = {
    "tflm": KERNELS,
    "litert": {**KERNELS, "FULLY_CONNECTED": _fully_connected_litert},
}
