"""What each Graph op is: its inputs, its output shape, its checks, its fixed-point constants.

`OP_KINDS[type]` holds, for every op type, an `OpKind` with
- `infer(inputs, options) -> output shape`,
- `check(inputs, output, options)` raising `OpError` with a one-line reason, and
- `prepare(inputs, output, options) -> params`: the fixed-point constants the integer kernel reads
  (Q31 multipliers, shifts, clamping range), computed by `tinykws.ir.params` exactly as TFLite's
  `Prepare` functions compute them from the float32 scales, once, when the op is added.

Layouts (as TFLite): activations NHWC; CONV_2D weights OHWI (C_out, KH, KW, C_in), scales per
output channel (axis 0); DEPTHWISE_CONV_2D weights (1, KH, KW, C_in * depth_multiplier), axis 3;
FULLY_CONNECTED weights (C_out, C_in), axis 0; biases int32 (C_out,) at scale s_in * s_w[c].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinykws.ir.params import (
    LOGISTIC_OUTPUT_SCALE,
    LOGISTIC_OUTPUT_ZERO_POINT,
    OpError,
    activation_params,
    add_params,
    conv_params,
    fully_connected_params,
    logistic_params,
    mean_params,
    mul_params,
    quantize_params,
    require,
    softmax_params,
)

__all__ = ["OP_KINDS", "OpError", "OpKind", "op_macs", "resolve_pads", "same_pads"]

ACTIVATIONS = ("NONE", "RELU", "RELU6")
PADDINGS = ("SAME", "VALID", "EXPLICIT")
SOFTMAX_OUTPUT_SCALE = 1.0 / 256.0
SOFTMAX_OUTPUT_ZERO_POINT = -128


@dataclass(frozen=True)
class OpKind:
    """How to infer, check and prepare one op type (see the module docstring); `n_inputs` 0
    means one or more (CONCATENATION)."""

    n_inputs: int
    infer: Callable[[list, dict], tuple[int, ...]]
    check: Callable[[list, Any, dict], None]
    prepare: Callable[[list, Any, dict], dict[str, np.ndarray]]


# --- padding -------------------------------------------------------------------------------------


def same_pads(in_size: int, filter_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding for one spatial axis: (before, after); the odd pixel goes after."""
    effective = (filter_size - 1) * dilation + 1
    out_size = (in_size + stride - 1) // stride
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def resolve_pads(padding, in_hw, filter_hw, stride, dilation=(1, 1)) -> tuple[str, list[int]]:
    """Turn "SAME" / "VALID" / explicit (top, bottom, left, right) into (label, pads).

    The label is "SAME" or "VALID" when the pads equal what TFLite would use for that padding
    on this input size, else "EXPLICIT" (an exporter then inserts a PAD op or refuses).
    """
    if isinstance(padding, str):
        require(
            padding in ("SAME", "VALID"), f"padding must be SAME, VALID or 4 ints, got {padding!r}"
        )
        if padding == "VALID":
            return "VALID", [0, 0, 0, 0]
        pads = [
            *same_pads(in_hw[0], filter_hw[0], stride[0], dilation[0]),
            *same_pads(in_hw[1], filter_hw[1], stride[1], dilation[1]),
        ]
        return "SAME", pads
    pads = [int(p) for p in padding]
    require(
        len(pads) == 4 and min(pads) >= 0, f"explicit pads must be 4 ints >= 0, got {padding!r}"
    )
    if pads == [0, 0, 0, 0]:
        return "VALID", pads
    same = resolve_pads("SAME", in_hw, filter_hw, stride, dilation)[1]
    return ("SAME" if pads == same else "EXPLICIT"), pads


def _window_out(in_size: int, before: int, after: int, k: int, stride: int, dilation: int) -> int:
    effective = (k - 1) * dilation + 1
    out = (in_size + before + after - effective) // stride + 1
    require(out >= 1, f"window {k} (dilation {dilation}) does not fit input {in_size} + padding")
    return out


def _spatial_out(x_shape, options, filter_hw) -> tuple[int, int]:
    """Output (H, W) of a windowed op, after checking its geometry and padding label."""
    top, bottom, left, right = options["pads"]
    stride, dilation = options["stride"], options.get("dilation", (1, 1))
    require(min(*stride, *dilation, *filter_hw) >= 1, "strides, dilations and filters must be >= 1")
    label = options.get("padding")
    require(label in PADDINGS, f"padding must be one of {', '.join(PADDINGS)}, got {label!r}")
    if label != "EXPLICIT":
        expected = resolve_pads(label, x_shape[1:3], filter_hw, stride, dilation)[1]
        require(list(options["pads"]) == expected, f"{label} padding here means pads {expected}")
    return (
        _window_out(x_shape[1], top, bottom, filter_hw[0], stride[0], dilation[0]),
        _window_out(x_shape[2], left, right, filter_hw[1], stride[1], dilation[1]),
    )


# --- checks shared by several ops ----------------------------------------------------------------


def _check_int8_act(t, what: str) -> None:
    require(t.dtype == "int8", f"{what} '{t.name}' must be int8, got {t.dtype}")
    require(len(t.scale) == 1 and t.axis is None, f"{what} '{t.name}' must be quantized per tensor")


def _check_float_or_int8(inputs, output) -> None:
    if all(t.dtype == "float32" for t in (inputs[0], output)):
        return
    _check_int8_act(inputs[0], "input")
    _check_int8_act(output, "output")


def _check_activation(options) -> None:
    activation = options.get("activation", "NONE")
    require(activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}")


def _check_same_qparams(a, b) -> None:
    if a.dtype == "int8":
        require(
            a.scale == b.scale and a.zero_point == b.zero_point,
            f"'{a.name}' and '{b.name}' must share scale and zero point",
        )


def _check_weighted(inputs, output, options, axis: int) -> None:
    x, w, b = inputs
    _check_float_or_int8([x], output)
    require(w.data is not None and b.data is not None, "weights and bias must be constants")
    _check_activation(options)
    n_out = w.shape[axis]
    require(b.shape == (n_out,), f"bias shape {b.shape} must be ({n_out},)")
    if x.dtype == "float32":
        require(w.dtype == b.dtype == "float32", "a float op needs float32 weights and bias")
        return
    require(w.dtype == "int8" and b.dtype == "int32", "weights must be int8 and bias int32")
    require(len(w.scale) in (1, n_out), f"weights need 1 or {n_out} scales, got {len(w.scale)}")
    require(len(w.scale) == 1 or w.axis == axis, f"per-channel weights must use axis {axis}")
    require(all(z == 0 for z in w.zero_point), "weights must be symmetric (zero point 0)")


# --- per-op shape inference and checks -----------------------------------------------------------


def _conv_infer(inputs, options):
    x, w = inputs[0], inputs[1]
    require(len(x.shape) == 4 and len(w.shape) == 4, "input and weights must be 4-D (NHWC, OHWI)")
    require(
        w.shape[3] == x.shape[3], f"weights expect {w.shape[3]} input channels, got {x.shape[3]}"
    )
    return (x.shape[0], *_spatial_out(x.shape, options, w.shape[1:3]), w.shape[0])


def _depthwise_infer(inputs, options):
    x, w = inputs[0], inputs[1]
    multiplier = options.get("depth_multiplier", 1)
    require(
        len(x.shape) == 4 and len(w.shape) == 4 and w.shape[0] == 1,
        "input must be NHWC and weights (1, KH, KW, C_in * depth_multiplier)",
    )
    require(
        w.shape[3] == x.shape[3] * multiplier,
        f"weights have {w.shape[3]} channels, expected {x.shape[3]} x {multiplier}",
    )
    return (x.shape[0], *_spatial_out(x.shape, options, w.shape[1:3]), w.shape[3])


def _fc_infer(inputs, options):
    x, w = inputs[0], inputs[1]
    size = int(np.prod(x.shape))
    require(
        len(w.shape) == 2 and size % w.shape[1] == 0,
        f"input of {size} values cannot feed weights of shape {w.shape}",
    )
    return (size // w.shape[1], w.shape[0])


def _pool_infer(inputs, options):
    x, (kh, kw) = inputs[0], options["filter"]
    require(len(x.shape) == 4, "input must be 4-D (NHWC)")
    top, bottom, left, right = options["pads"]
    require(
        max(top, bottom) < kh and max(left, right) < kw,
        "pool padding must be smaller than the filter (no window may be all padding)",
    )
    return (x.shape[0], *_spatial_out(x.shape, options, options["filter"]), x.shape[3])


def _pool_check(inputs, output, options):
    _check_float_or_int8(inputs, output)
    _check_activation(options)
    _check_same_qparams(inputs[0], output)


def _mean_infer(inputs, options):
    x, axes = inputs[0], sorted(options.get("axes", ()))
    require(
        len(x.shape) == 4 and axes in ([1, 2], [2]) and options.get("keep_dims", True),
        "MEAN supports NHWC input over axes (1, 2) or (2,) with keep_dims (add a RESHAPE after)",
    )
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _add_infer(inputs, options):
    a, b = inputs
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise OpError(f"shapes {a.shape} and {b.shape} do not broadcast") from None


def _binary_check(inputs, output, options):
    """ADD and MUL: two int8 (or float) inputs, numpy broadcasting."""
    _check_float_or_int8(inputs, output)
    _check_activation(options)
    require(inputs[1].dtype == inputs[0].dtype, "both inputs must have the same dtype")
    if output.dtype == "int8":
        _check_int8_act(inputs[1], "input")


def _fixed_output_check(op_type: str, scale: float, zero_point: int):
    """The check of an op whose int8 output has one fixed scale and zero point (TFLite's)."""

    def check(inputs, output, options):
        _check_float_or_int8(inputs, output)
        if output.dtype == "int8":
            require(
                np.float32(output.scale[0]) == np.float32(scale)
                and output.zero_point[0] == zero_point,
                f"int8 {op_type} output must have scale 1/{round(1 / scale)} and zero point "
                f"{zero_point}",
            )

    return check


def _slice_infer(inputs, options):
    shape, begin, size = inputs[0].shape, options["begin"], options["size"]
    require(
        len(begin) == len(size) == len(shape)
        and all(b >= 0 and n >= 1 and b + n <= d for b, n, d in zip(begin, size, shape)),
        f"SLICE begin {list(begin)} size {list(size)} does not fit shape {shape}",
    )
    return tuple(int(n) for n in size)


def _concat_infer(inputs, options):
    axis, first = options["axis"], inputs[0].shape
    require(0 <= axis < len(first), f"axis {axis} is not a dimension of {first}")
    for t in inputs[1:]:
        require(
            len(t.shape) == len(first)
            and all(a == b for i, (a, b) in enumerate(zip(t.shape, first)) if i != axis),
            f"shapes {first} and {t.shape} differ outside axis {axis}",
        )
    return (*first[:axis], sum(t.shape[axis] for t in inputs), *first[axis + 1 :])


def _concat_check(inputs, output, options):
    for t in inputs:
        _check_float_or_int8([t], output)
        _check_same_qparams(t, output)  # int8 CONCATENATION copies; it never requantizes


def _reshape_infer(inputs, options):
    shape = tuple(int(d) for d in options["shape"])
    require(
        int(np.prod(shape)) == int(np.prod(inputs[0].shape)),
        f"cannot reshape {inputs[0].shape} to {shape}",
    )
    return shape


def _reshape_check(inputs, output, options):
    require(inputs[0].dtype == output.dtype, "RESHAPE keeps the dtype")
    _check_same_qparams(inputs[0], output)


def _quantize_check(inputs, output, options):
    _check_int8_act(output, "output")
    require(inputs[0].dtype in ("float32", "int8"), "QUANTIZE input must be float32 or int8")
    if inputs[0].dtype == "int8":
        _check_int8_act(inputs[0], "input")


def _dequantize_check(inputs, output, options):
    _check_int8_act(inputs[0], "input")
    require(output.dtype == "float32", "DEQUANTIZE output must be float32")


def _pad_infer(inputs, options):
    pads = options["pads"]
    require(
        len(pads) == len(inputs[0].shape) and all(min(p) >= 0 and len(p) == 2 for p in pads),
        "PAD needs (before, after) >= 0 for every dimension",
    )
    return tuple(d + int(b) + int(a) for d, (b, a) in zip(inputs[0].shape, pads))


def _same_shape(inputs, options):
    return tuple(inputs[0].shape)


def _no_params(inputs, output, options):
    return {}


def _unary_check(inputs, output, options):
    _check_float_or_int8(inputs, output)
    _check_same_qparams(inputs[0], output)


OP_KINDS: dict[str, OpKind] = {
    "CONV_2D": OpKind(3, _conv_infer, lambda i, o, p: _check_weighted(i, o, p, 0), conv_params),
    "DEPTHWISE_CONV_2D": OpKind(
        3, _depthwise_infer, lambda i, o, p: _check_weighted(i, o, p, 3), conv_params
    ),
    "FULLY_CONNECTED": OpKind(
        3, _fc_infer, lambda i, o, p: _check_weighted(i, o, p, 0), fully_connected_params
    ),
    "MAX_POOL_2D": OpKind(1, _pool_infer, _pool_check, lambda i, o, p: activation_params(o, p)),
    "AVERAGE_POOL_2D": OpKind(1, _pool_infer, _pool_check, lambda i, o, p: activation_params(o, p)),
    "MEAN": OpKind(1, _mean_infer, lambda i, o, p: _check_float_or_int8(i, o), mean_params),
    "ADD": OpKind(2, _add_infer, _binary_check, add_params),
    "RESHAPE": OpKind(1, _reshape_infer, _reshape_check, _no_params),
    "SOFTMAX": OpKind(
        1,
        _same_shape,
        _fixed_output_check("SOFTMAX", SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT),
        softmax_params,
    ),
    "QUANTIZE": OpKind(1, _same_shape, _quantize_check, quantize_params),
    "DEQUANTIZE": OpKind(1, _same_shape, _dequantize_check, _no_params),
    "PAD": OpKind(1, _pad_infer, _unary_check, _no_params),
    "MUL": OpKind(2, _add_infer, _binary_check, mul_params),
    "LOGISTIC": OpKind(
        1,
        _same_shape,
        _fixed_output_check("LOGISTIC", LOGISTIC_OUTPUT_SCALE, LOGISTIC_OUTPUT_ZERO_POINT),
        logistic_params,
    ),
    "SLICE": OpKind(1, _slice_infer, _unary_check, _no_params),
    "CONCATENATION": OpKind(0, _concat_infer, _concat_check, _no_params),
}


def op_macs(graph, op) -> int:
    """Multiply-accumulates of one op of `graph` at batch 1 (0 for ops without weights)."""
    out = int(np.prod(graph.tensor(op.outputs[0]).shape))
    if op.type == "CONV_2D":
        kh, kw, c_in = graph.tensor(op.inputs[1]).shape[1:]
        return out * kh * kw * c_in
    if op.type == "DEPTHWISE_CONV_2D":
        kh, kw = graph.tensor(op.inputs[1]).shape[1:3]
        return out * kh * kw
    if op.type == "FULLY_CONNECTED":
        return out * graph.tensor(op.inputs[1]).shape[1]
    return 0
