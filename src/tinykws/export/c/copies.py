"""Emitters of the ops that only move int8 values: PAD, RESHAPE, SLICE, CONCATENATION.

Their outputs keep their inputs' scale and zero point (the graph checks it), so each is a copy
(PAD fills with the zero point). A RESHAPE costs nothing where the arena plan gave its output
its input's bytes; a CONCATENATION reads all its inputs at once, so its call passes an array
of their arena addresses.

Example:
    >>> concatenation_blocks([(1, 49, 4, 8), (1, 49, 2, 8)], axis=2)   # (outer, block sizes)
    (49, [32, 16])
"""

from __future__ import annotations

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.carray import c_array
from tinykws.export.c.context import EmitContext, four, int_list
from tinykws.ir.graph import Op


def _check_rank(ctx: EmitContext, op: Op, shape) -> None:
    if len(shape) > 4:
        raise TinyKWSError(
            f"{ctx.where(op)}: the C kernel runs {op.type} on tensors of at most 4 dimensions"
        )


def emit_pad(ctx: EmitContext, op: Op) -> None:
    (x,), out = ctx.tensors(op)
    _check_rank(ctx, op, x.shape)
    before = [int(b) for b, _ in op.options["pads"]]
    fields = {
        "input_shape": four(x.shape),
        "output_shape": four(out.shape),
        "pad_before": int_list([0] * (4 - len(before)) + before),
        "value": str(out.zero_point[0]),
    }
    ctx.struct("tk_pad_params", fields)
    ctx.call(op, "tk_pad_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def emit_reshape(ctx: EmitContext, op: Op) -> None:
    """No code: the arena plan gives a RESHAPE's output its input's bytes (else a copy)."""
    if ctx.plan.offsets[op.inputs[0]] != ctx.plan.offsets[op.outputs[0]]:
        ctx.call(
            op,
            "tk_copy_s8",
            ctx.buffer(op.inputs[0]),
            ctx.buffer(op.outputs[0]),
            str(int(np.prod(ctx.graph.tensors[op.inputs[0]].shape))),
        )


def emit_slice(ctx: EmitContext, op: Op) -> None:
    (x,), out = ctx.tensors(op)
    _check_rank(ctx, op, x.shape)
    begin = [int(b) for b in op.options["begin"]]
    fields = {
        "input_shape": four(x.shape),
        "begin": int_list([0] * (4 - len(begin)) + begin),
        "size": four(out.shape),
    }
    ctx.struct("tk_slice_params", fields)
    ctx.call(op, "tk_slice_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def concatenation_blocks(shapes, axis: int) -> tuple[int, list[int]]:
    """(outer, block sizes) of a concatenation along `axis`: every input is `outer` contiguous
    blocks (outer = product of the dimensions before the axis, the same for all), one block
    of each input after the other in the output."""
    outer = int(np.prod(shapes[0][:axis]))
    return outer, [int(np.prod(shape[axis:])) for shape in shapes]


def emit_concatenation(ctx: EmitContext, op: Op) -> None:
    inputs, out = ctx.tensors(op)
    outer, blocks = concatenation_blocks([t.shape for t in inputs], int(op.options["axis"]))
    name = f"{ctx.symbol}_input_block"
    ctx.constants.append(c_array("int32_t", name, np.array(blocks, np.int64)))
    fields = {"n_inputs": str(len(inputs)), "outer": str(outer), "input_block": name}
    ctx.struct("tk_concatenation_params", fields)
    pointers = ", ".join(ctx.buffer(t.name) for t in inputs)
    # the arena is a local pointer, so the input addresses are gathered where the call is
    ctx.calls.append(f"    {{\n        const int8_t *const inputs[{len(inputs)}] = {{{pointers}}};")
    ctx.call(op, "tk_concatenation_s8", "inputs", ctx.buffer(out.name), indent=" " * 8)
    ctx.calls.append("    }")


COPY_EMITTERS = {
    "PAD": emit_pad,
    "RESHAPE": emit_reshape,
    "SLICE": emit_slice,
    "CONCATENATION": emit_concatenation,
}
