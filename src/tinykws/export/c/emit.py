"""One C kernel call per Graph op: its constant parameter struct and the call itself.

`EMITTERS[op.type](ctx, op)` appends the op's constants (weights, biases, multipliers, the
`static const` parameter struct of kernels.h) to `ctx.constants` and its call to `ctx.calls`.
Every constant is the graph's own: weights as stored, the Q31 multipliers and shifts computed
when the graph was built (read from `op.params`, never recomputed); the biases of the layers
with weights have the input offset folded in (`fold_input_offset`, exact modulo 2^32), so the
kernels' inner loops are plain int8 dot products. Each layer's record says whether its fast or
its generic kernel runs, and the log says why a layer runs the generic one. The layers with
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
from tinykws.export.c.carray import c_array
from tinykws.export.c.context import EmitContext, dims
from tinykws.export.c.copies import COPY_EMITTERS
from tinykws.export.c.elementwise import ELEMENTWISE_EMITTERS, emit_rescaling
from tinykws.export.c.sparse import EncodedWeights, choose_encoding
from tinykws.ir.graph import Graph, Op, Tensor
from tinykws.ir.plan import plan_arena
from tinykws.log import logger


def scratch_bytes(graph: Graph, op: Op) -> int:
    """Scratch memory of the C kernel of `op` (for `tinykws.ir.plan.plan_arena`) with the
    default ("auto") weight encoding: what its fast path needs (see kernels.h), else nothing."""
    if op.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    w = graph.tensor(op.inputs[1])
    sparse_ok = op.type != "DEPTHWISE_CONV_2D"
    rows = w.data.reshape(w.shape[0], -1) if sparse_ok else w.data
    encoded = choose_encoding(rows, w.bits, "auto", sparse_ok)
    return _fast_scratch(graph, op, encoded)


def _gathers(graph: Graph, op: Op) -> bool:
    """Whether a CONV_2D kernel gathers windows: a filter larger than 1 x 1, padding, or an
    output of another size than the input (kernels_conv.c `conv_gathers`)."""
    if op.type != "CONV_2D":
        return False
    kh, kw = graph.tensor(op.inputs[1]).shape[1:3]
    x, y = graph.tensor(op.inputs[0]).shape, graph.tensor(op.outputs[0]).shape
    return kh * kw > 1 or any(op.options["pads"]) or tuple(x[1:3]) != tuple(y[1:3])


WINDOW_BYTES = 512  # windows gathered at a time: up to this many bytes, 2 to 8 windows
_LAST_WINDOWS: list = [None, {}]  # the last graph given to gathered_windows, and its answer


def gathered_windows(graph: Graph) -> dict[int, int]:
    """Op index -> windows its CONV_2D kernel gathers at a time, for every CONV_2D that gathers.

    One window each is the least any kernel needs; more are faster (two output pixels share
    each weight load) but must not raise the arena: each layer, in order, gets the most (up to
    WINDOW_BYTES, 2 to 8 windows, then halved down to 1) that keeps the planned arena at its
    size with one window each.
    """
    if _LAST_WINDOWS[0] is graph:
        return _LAST_WINDOWS[1]
    k = {
        i: int(np.prod(graph.tensor(op.inputs[1]).shape[1:]))
        for i, op in enumerate(graph.ops)
        if _gathers(graph, op)
    }
    windows = dict.fromkeys(k, 1)

    def arena_bytes() -> int:
        sizes = {id(graph.ops[i]): n * k[i] for i, n in windows.items()}
        return plan_arena(graph, scratch=lambda g, op: sizes.get(id(op), 0)).size_bytes

    peak = arena_bytes()
    for i in k:
        n = min(8, max(2, WINDOW_BYTES // k[i]))
        while n > 1:
            windows[i] = n
            if arena_bytes() <= peak:
                break
            windows[i] = 1
            n //= 2
    _LAST_WINDOWS[:] = [graph, windows]
    return windows


def _fast_scratch(graph: Graph, op: Op, encoded: EncodedWeights) -> int:
    """Bytes of scratch the fast path of a layer needs (kernels.h): the windows a CONV_2D
    gathers at a time (`gathered_windows`); packed and sparse weights are unpacked on the stack,
    whatever `encoded` is."""
    if not _gathers(graph, op):
        return 0
    index = next(i for i, o in enumerate(graph.ops) if o is op)
    return gathered_windows(graph)[index] * int(np.prod(graph.tensor(op.inputs[1]).shape[1:]))


def fold_input_offset(bias: np.ndarray, weights: np.ndarray, input_offset: int, axis: int):
    """bias[c] + input_offset * (sum of the weights of channel c), wrapped to int32.

    `axis` is the output-channel axis of `weights`. The kernels then accumulate
    bias + sum(x * w): the same value modulo 2^32 as bias + sum((x + input_offset) * w).

    Example:
        >>> w = np.array([[1, 2], [-3, 4]], np.int8)
        >>> fold_input_offset(np.array([10, 20], np.int32), w, 5, axis=0).tolist()
        [25, 25]
    """
    sums = np.moveaxis(weights.astype(np.int64), axis, 0).reshape(weights.shape[axis], -1)
    folded = bias.astype(np.int64) + int(input_offset) * sums.sum(axis=1)
    return ((folded + 2**31) % 2**32 - 2**31).astype(np.int32)


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
            "storage_bits": encoded.bits,
            "weights": int(w.data.size),
            "nonzero": int(np.count_nonzero(w.data)),
            "weight_bytes": encoded.nbytes,
            "dense_weight_bytes": encoded.dense_bytes,
            "bias_bytes": 4 * n_out,
            "quant_bytes": 5 * n_out,
        }
    )


def _bias(ctx: EmitContext, op: Op) -> str:
    """The layer's bias with the input offset folded in (see `fold_input_offset`)."""
    name = f"{ctx.symbol}_bias"
    x, w, bias = (ctx.graph.tensors[n] for n in op.inputs[:3])
    axis = 3 if op.type == "DEPTHWISE_CONV_2D" else 0
    folded = fold_input_offset(bias.data, w.data, -int(x.zero_point[0]), axis)
    ctx.constants.append(c_array("int32_t", name, folded))
    return name


def _scratch(ctx: EmitContext, op: Op) -> tuple[str, str]:
    """The `scratch` and `windows` fields of a CONV_2D or FULLY_CONNECTED (after its weights
    are emitted): the arena buffer its fast path needs and the windows it holds, or NULL, its
    generic kernel, when the plan holds none big enough. Fields, not arguments: the calls stay
    the same size whatever the weights. The layer's record says which kernel runs (and how many
    windows it gathers); the log says why a layer runs the generic one."""
    record = ctx.layers[-1]
    encoded = EncodedWeights(record["encoding"], record["storage_bits"], np.zeros(0, np.uint8))
    need = _fast_scratch(ctx.graph, op, encoded)
    record["kernel"] = "fast"
    if need == 0:
        return "0", "0"
    if ctx.plan.scratch.get(ctx.index, 0) >= need:
        windows = gathered_windows(ctx.graph)[ctx.index]
        record["windows"] = windows
        return f"(int8_t *)tinykws_arena + {ctx.plan.offsets[f'scratch:{ctx.index}']}", str(windows)
    record["kernel"] = "generic"
    logger.info(f"{ctx.where(op)}: generic kernel: its windows need {need} scratch bytes")
    return "0", "0"


def _depthwise_kernel(ctx: EmitContext, op: Op) -> None:
    """Record (and log, when generic) which depthwise kernel runs: the fast one computes four
    channels at a time for depth multiplier 1 and filters of at most 25 taps."""
    w, record = ctx.graph.tensor(op.inputs[1]), ctx.layers[-1]
    multiplier = int(op.options.get("depth_multiplier", 1))
    record["kernel"] = "fast" if multiplier == 1 and w.shape[1] * w.shape[2] <= 25 else "generic"
    if record["kernel"] == "generic":
        logger.info(
            f"{ctx.where(op)}: generic kernel: depth multiplier {multiplier}, "
            f"{w.shape[1]} x {w.shape[2]} filter"
        )


def _conv(ctx: EmitContext, op: Op) -> None:
    (x, w, _), out = ctx.tensors(op)
    fields = {
        "input": dims(x.shape),
        "output": dims(out.shape),
        "filter_h": str(w.shape[1]),
        "filter_w": str(w.shape[2]),
        "window": _window(op),
        "weights": _weights(ctx, op, w.data.reshape(w.shape[0], -1), sparse_ok=True),
        "bias": _bias(ctx, op),
        "quant": _quant(ctx, op, x, out, w.shape[0]),
    }
    fields["scratch"], fields["windows"] = _scratch(ctx, op)
    ctx.struct("tk_conv_params", fields)
    ctx.call(op, "tk_conv2d_s8", ctx.buffer(x.name), ctx.buffer(out.name))


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
    _depthwise_kernel(ctx, op)
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
    _scratch(ctx, op)  # none: records the fast kernel
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
    n, h, w, c = ctx.tensors(op)[0][0].shape
    if sorted(op.options["axes"]) == [2]:  # over W only: rows of (N*H) images of height 1
        n, h = n * h, 1
    emit_rescaling(ctx, op, "tk_mean_params", "tk_mean_hw_s8", input=dims((n, h, w, c)))


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
