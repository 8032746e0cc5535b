"""One C kernel call per IntGraph op: its constant parameter struct and the call itself.

`EMITTERS[op.type](ctx, op)` appends the op's constants (weights, biases, multipliers, the
`static const` parameter struct of kernels.h) to `ctx.constants` and its call to `ctx.calls`.
Every constant is the graph's own: weights and biases as stored, the Q31 multipliers and shifts
computed when the graph was built (read from `op.params`, never recomputed). The layers with
weights, pooling and MEAN are emitted here; ADD, MUL, LOGISTIC, SOFTMAX and QUANTIZE in
`tinykws.export.c.elementwise`; PAD, RESHAPE, SLICE and CONCATENATION in
`tinykws.export.c.copies`. An op type missing from the table is refused by name.

Example:
    >>> sorted(EMITTERS)[:4]
    ['ADD', 'AVERAGE_POOL_2D', 'CONCATENATION', 'CONV_2D']
"""

from __future__ import annotations

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.carray import c_array, c_int
from tinykws.export.c.context import EmitContext, dims
from tinykws.export.c.copies import COPY_EMITTERS
from tinykws.export.c.elementwise import ELEMENTWISE_EMITTERS
from tinykws.export.c.sparse import EncodedWeights, choose_encoding
from tinykws.ir.graph import IntGraph, Op, Tensor


def scratch_bytes(graph: IntGraph, op: Op) -> int:
    """Scratch memory of the C kernel of `op` (for `tinykws.ir.plan.plan_arena`): one window
    of a CONV_2D with a filter larger than 1 x 1 (KH x KW x C_in bytes), else nothing."""
    if op.type != "CONV_2D":
        return 0
    kh, kw, c_in = graph.tensor(op.inputs[1]).shape[1:]
    return 0 if kh * kw == 1 else int(kh * kw * c_in)


def _window(op: Op) -> str:
    o = op.options
    stride, dilation = o["stride"], o.get("dilation", (1, 1))
    top, _, left, _ = o["pads"]
    return f"{{{stride[0]}, {stride[1]}, {dilation[0]}, {dilation[1]}, {top}, {left}}}"


def _quant(ctx: EmitContext, op: Op, x: Tensor, out: Tensor, n_out: int) -> str:
    """Per-channel multiplier and shift arrays (per-tensor ones repeated) and the tk_quant."""
    p = op.params
    multiplier = np.broadcast_to(np.ravel(p["multiplier"]), (n_out,))
    shift = np.broadcast_to(np.ravel(p["shift"]), (n_out,))
    ctx.constants.append(c_array("int32_t", f"{ctx.symbol}_multiplier", multiplier))
    ctx.constants.append(c_array("int8_t", f"{ctx.symbol}_shift", shift))
    low, high = (int(v) for v in p["activation_range"])
    return (
        f"{{{ctx.symbol}_multiplier, {ctx.symbol}_shift, {-x.zero_point[0]}, "
        f"{out.zero_point[0]}, {low}, {high}}}"
    )


def _weights(ctx: EmitContext, op: Op, rows: np.ndarray, sparse_ok: bool) -> str:
    """Emit a layer's weight arrays; returns the tk_weights initializer."""
    w = ctx.graph.tensors[op.inputs[1]]
    encoded = choose_encoding(rows, w.bits, ctx.sparse, sparse_ok)
    name = f"{ctx.symbol}_weights"
    comment = f"{op.name or op.type}: {w.bits}-bit weights {w.shape}, {encoded.kind}"
    ctx.constants.append(
        c_array("uint8_t", name, encoded.values, hexadecimal=True, comment=comment)
    )
    mask = "0"
    if encoded.kind == "sparse":
        mask = f"{ctx.symbol}_mask"
        ctx.constants.append(c_array("uint8_t", mask, encoded.mask, hexadecimal=True))
    _record_layer(ctx, op, w, encoded)
    return f"{{{name}, {encoded.bits}, {mask}}}"


def _record_layer(ctx: EmitContext, op: Op, w: Tensor, encoded: EncodedWeights) -> None:
    bias = ctx.graph.tensors[op.inputs[2]]
    n_out = int(bias.shape[0])
    ctx.layers.append(
        {
            "op": ctx.index,
            "name": op.name,
            "type": op.type,
            "bits": w.bits,
            "encoding": encoded.kind,
            "weights": int(w.data.size),
            "nonzero": int(np.count_nonzero(w.data)),
            "weight_bytes": encoded.nbytes,
            "dense_weight_bytes": encoded.dense_bytes,
            "bias_bytes": 4 * n_out,
            "quant_bytes": 5 * n_out,
        }
    )


def _bias(ctx: EmitContext, op: Op) -> str:
    name = f"{ctx.symbol}_bias"
    ctx.constants.append(c_array("int32_t", name, ctx.graph.tensors[op.inputs[2]].data))
    return name


def _conv(ctx: EmitContext, op: Op) -> None:
    (x, w, _), out = ctx.tensors(op)
    ctx.struct(
        "tk_conv_params",
        {
            "input": dims(x.shape),
            "output": dims(out.shape),
            "filter_h": str(w.shape[1]),
            "filter_w": str(w.shape[2]),
            "window": _window(op),
            "weights": _weights(ctx, op, w.data.reshape(w.shape[0], -1), sparse_ok=True),
            "bias": _bias(ctx, op),
            "quant": _quant(ctx, op, x, out, w.shape[0]),
        },
    )
    scratch = f"scratch:{ctx.index}"
    window = ctx.buffer(scratch) if scratch in ctx.plan.offsets else "0"
    ctx.call(op, "tk_conv2d_s8", ctx.buffer(x.name), ctx.buffer(out.name), window)


def _depthwise(ctx: EmitContext, op: Op) -> None:
    (x, w, _), out = ctx.tensors(op)
    ctx.struct(
        "tk_depthwise_params",
        {
            "input": dims(x.shape),
            "output": dims(out.shape),
            "filter_h": str(w.shape[1]),
            "filter_w": str(w.shape[2]),
            "depth_multiplier": str(int(op.options.get("depth_multiplier", 1))),
            "window": _window(op),
            "weights": _weights(ctx, op, w.data, sparse_ok=False),
            "bias": _bias(ctx, op),
            "quant": _quant(ctx, op, x, out, w.shape[3]),
        },
    )
    ctx.call(op, "tk_depthwise_conv2d_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def _fully_connected(ctx: EmitContext, op: Op) -> None:
    (x, w, _), out = ctx.tensors(op)
    ctx.struct(
        "tk_fully_connected_params",
        {
            "rows": str(int(np.prod(x.shape)) // w.shape[1]),
            "input_size": str(w.shape[1]),
            "output_size": str(w.shape[0]),
            "weights": _weights(ctx, op, w.data, sparse_ok=True),
            "bias": _bias(ctx, op),
            "quant": _quant(ctx, op, x, out, w.shape[0]),
        },
    )
    ctx.call(op, "tk_fully_connected_s8", ctx.buffer(x.name), ctx.buffer(out.name))


def _pool(kernel: str):
    def emit(ctx: EmitContext, op: Op) -> None:
        (x,), out = ctx.tensors(op)
        low, high = (int(v) for v in op.params["activation_range"])
        fields = {
            "input": dims(x.shape),
            "output": dims(out.shape),
            "filter_h": str(op.options["filter"][0]),
            "filter_w": str(op.options["filter"][1]),
            "window": _window(op),
            "activation_min": str(low),
            "activation_max": str(high),
        }
        ctx.struct("tk_pool_params", fields)
        ctx.call(op, kernel, ctx.buffer(x.name), ctx.buffer(out.name))

    return emit


def _mean(ctx: EmitContext, op: Op) -> None:
    (x,), out = ctx.tensors(op)
    n, h, w, c = x.shape
    if sorted(op.options["axes"]) == [2]:  # over W only: rows of (N*H) images of height 1
        n, h = n * h, 1
    fields = {
        "input": dims((n, h, w, c)),
        "input_offset": str(-x.zero_point[0]),
        "output_offset": str(out.zero_point[0]),
        "multiplier": c_int(op.params["multiplier"]),
        "shift": str(int(op.params["shift"])),
    }
    ctx.struct("tk_mean_params", fields)
    ctx.call(op, "tk_mean_hw_s8", ctx.buffer(x.name), ctx.buffer(out.name))


EMITTERS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool("tk_max_pool2d_s8"),
    "AVERAGE_POOL_2D": _pool("tk_avg_pool2d_s8"),
    "MEAN": _mean,
    **ELEMENTWISE_EMITTERS,
    **COPY_EMITTERS,
}


def emit_op(ctx: EmitContext, index: int, op: Op) -> None:
    """Emit op `index` of the graph, or refuse it in one line naming the op.

    Raises:
        TinyKWSError: the op has no C kernel, or works on float32 tensors.
    """
    ctx.index = index
    names = [n for n in (*op.inputs, *op.outputs) if not ctx.graph.tensors[n].is_constant]
    floats = [n for n in names if ctx.graph.tensors[n].dtype != "int8"]
    if floats:
        raise TinyKWSError(
            f"{ctx.where(op)}: tensor '{floats[0]}' is {ctx.graph.tensors[floats[0]].dtype}; "
            "the C backend runs int8 graphs only (quantize the model first)"
        )
    if op.type not in EMITTERS:
        raise TinyKWSError(
            f"{ctx.where(op)}: the C backend has no kernel for {op.type}; it supports "
            f"{', '.join(sorted(EMITTERS))} on int8 tensors"
        )
    EMITTERS[op.type](ctx, op)


__all__ = ["EMITTERS", "EmitContext", "emit_op", "scratch_bytes"]
