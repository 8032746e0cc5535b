"""Emitters of the ops without weights that compute: ADD, MUL, LOGISTIC, SOFTMAX, QUANTIZE.

Each writes its kernel's parameter struct from the op's own `params` (the Q31 multipliers,
shifts and LOGISTIC's table computed when the graph was built; nothing is recomputed here) and
one call. ADD and MUL broadcast as numpy does, over at most 4 dimensions: each input is read
through per-axis element strides, 0 along an axis it is broadcast on.

Example:
    >>> broadcast_strides((1, 49, 1, 8), (1, 49, 20, 8))   # (1, T, 1, C) onto (1, T, F, C)
    [392, 8, 0, 1]
"""

from __future__ import annotations

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.carray import c_array, c_int
from tinykws.export.c.context import EmitContext, four, int_list
from tinykws.ir.graph import Op


def emit_rescaling(ctx: EmitContext, op: Op, struct: str, kernel: str, **shape: str) -> None:
    """The struct and call of a kernel that moves int8 values from its input's grid onto its
    output's with one Q31 multiplier (QUANTIZE int8 -> int8, MEAN): the `shape` fields, then
    input_offset, output_offset, multiplier, shift."""
    (x,), out = ctx.tensors(op)
    fields = {
        **shape,
        "input_offset": str(-x.zero_point[0]),
        "output_offset": str(out.zero_point[0]),
        "multiplier": c_int(op.params["multiplier"]),
        "shift": str(int(op.params["shift"])),
    }
    ctx.struct(struct, fields)
    ctx.call(op, kernel, ctx.buffer(x.name), ctx.buffer(out.name))


def broadcast_strides(shape, out_shape) -> list[int]:
    """Element strides of a C-contiguous tensor along each of the 4 output axes (0: broadcast)."""
    padded = [1] * (4 - len(shape)) + [int(d) for d in shape]
    out = [1] * (4 - len(out_shape)) + [int(d) for d in out_shape]
    strides = [int(np.prod(padded[i + 1 :])) for i in range(4)]
    return [0 if padded[i] == 1 and out[i] > 1 else strides[i] for i in range(4)]


def _binary_fields(ctx: EmitContext, op: Op) -> dict[str, str]:
    """shape, a_stride, b_stride, a_offset, b_offset, output_offset of ADD / MUL."""
    (a, b), out = ctx.tensors(op)
    if len(out.shape) > 4:
        raise TinyKWSError(
            f"{ctx.where(op)}: the C kernel runs {op.type} on tensors of at most 4 dimensions"
        )
    return {
        "shape": four(out.shape),
        "a_stride": int_list(broadcast_strides(a.shape, out.shape)),
        "b_stride": int_list(broadcast_strides(b.shape, out.shape)),
        "a_offset": str(-a.zero_point[0]),
        "b_offset": str(-b.zero_point[0]),
        "output_offset": str(out.zero_point[0]),
    }


def _activation_fields(op: Op) -> dict[str, str]:
    low, high = (int(v) for v in op.params["activation_range"])
    return {"activation_min": str(low), "activation_max": str(high)}


def _binary_call(ctx: EmitContext, op: Op, kernel: str) -> None:
    a, b = op.inputs
    ctx.call(op, kernel, ctx.buffer(a), ctx.buffer(b), ctx.buffer(op.outputs[0]))


def emit_add(ctx: EmitContext, op: Op) -> None:
    p = op.params
    fields = {
        **_binary_fields(ctx, op),
        "left_shift": str(int(p["left_shift"])),
        "a_multiplier": c_int(p["input_multiplier"][0]),
        "a_shift": str(int(p["input_shift"][0])),
        "b_multiplier": c_int(p["input_multiplier"][1]),
        "b_shift": str(int(p["input_shift"][1])),
        "output_multiplier": c_int(p["output_multiplier"]),
        "output_shift": str(int(p["output_shift"])),
        **_activation_fields(op),
    }
    ctx.struct("tk_add_params", fields)
    _binary_call(ctx, op, "tk_add_s8")


def emit_mul(ctx: EmitContext, op: Op) -> None:
    fields = {
        **_binary_fields(ctx, op),
        "multiplier": c_int(op.params["multiplier"]),
        "shift": str(int(op.params["shift"])),
        **_activation_fields(op),
    }
    ctx.struct("tk_mul_params", fields)
    _binary_call(ctx, op, "tk_mul_s8")


def emit_logistic(ctx: EmitContext, op: Op) -> None:
    (x,), out = ctx.tensors(op)
    table = np.asarray(op.params["table"], np.int8)
    name = f"{ctx.symbol}_table"
    comment = f"{op.name or op.type}: sigmoid of input q at index q + 128, scale 1/256, zp -128"
    ctx.constants.append(c_array("int8_t", name, table, comment=comment))
    ctx.struct("tk_logistic_params", {"size": str(int(np.prod(x.shape))), "table": name})
    ctx.call(op, "tk_logistic_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def emit_softmax(ctx: EmitContext, op: Op) -> None:
    (x,), out = ctx.tensors(op)
    depth = int(x.shape[-1])
    fields = {
        "rows": str(int(np.prod(x.shape)) // depth),
        "depth": str(depth),
        "input_multiplier": c_int(op.params["input_multiplier"]),
        "input_left_shift": str(int(op.params["input_left_shift"])),
        "diff_min": c_int(op.params["diff_min"]),
    }
    ctx.struct("tk_softmax_params", fields)
    ctx.call(op, "tk_softmax_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def emit_requantize(ctx: EmitContext, op: Op) -> None:
    """QUANTIZE int8 -> int8 (the float -> int8 QUANTIZE at the boundary is the front end's)."""
    size = str(int(np.prod(ctx.tensors(op)[0][0].shape)))
    emit_rescaling(ctx, op, "tk_requantize_params", "tk_requantize_s8", size=size)


ELEMENTWISE_EMITTERS = {
    "ADD": emit_add,
    "MUL": emit_mul,
    "LOGISTIC": emit_logistic,
    "SOFTMAX": emit_softmax,
    "QUANTIZE": emit_requantize,
}
