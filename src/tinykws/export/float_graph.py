"""Lower a float PyTorch model to a float32 IntGraph (for float .tflite files and float metrics).

The model is traced exactly as for quantization (`tinykws.models.trace`): BatchNorms fold into
the conv or linear layer before them, ReLU / ReLU6 fuse into the op before them, a ZeroPad2d
joins the conv after it. Each step then becomes one float32 op with the same NHWC layout and
weight layouts as `tinykws.quant.lower` gives the int8 graph, so float and int8 files of one model
have the same structure (BC-ResNet's SubSpectralNorm and SiLU as `tinykws.quant.lower` describes).
A layer with no op is refused with one line naming it.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> graph = lower_float(build_model(model_config("tinyconv", 4, (49, 40))))
    >>> [op.type for op in graph.ops], graph.tensor(graph.inputs[0]).shape
    (['CONV_2D', 'RESHAPE', 'FULLY_CONNECTED'], (1, 49, 40, 1))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import IntGraphBuilder, Weights
from tinykws.ir.graph import IntGraph
from tinykws.quant.lower import (  # shape-only steps and conv options are the same in float
    NHWC_AXIS,
    _dropout,
    _pad,
    _pair,
    banded_depthwise,
    conv_options,
)

INPUT_NAME = "features"
OUTPUT_NAME = "logits"


@dataclass
class _Context:
    """The folded model, the builder, and graph names of the model's tensors so far."""

    module: object  # a folded tinykws.quant.model.QuantModel in float mode
    builder: IntGraphBuilder
    names: dict[str, str] = field(default_factory=dict)
    flattened: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (C, H, W) source

    def shape(self, step_input: str) -> tuple[int, ...]:
        return self.builder.graph.tensor(self.names[step_input]).shape

    def layer(self, step):
        return self.module.net.get_submodule(step.module)


def lower_float(model, name: str = "model") -> IntGraph:
    """The float32 IntGraph of a float PyTorch model (BatchNorm folded; the model is unchanged).

    `model` may also be a folded `tinykws.quant.model.QuantModel`: its float weights are used
    (the weights a quantized model was rounded from).

    Raises:
        TinyKWSError: a layer has no op in the graph (the message names it).
    """
    from tinykws.quant import QuantConfig
    from tinykws.quant.model import QuantModel

    if isinstance(model, QuantModel):
        module = model
        if any(step.bn for step in module.trace.steps):
            raise TinyKWSError("export: fold the BatchNorms first (QuantModel.fold)")
    else:
        module = QuantModel.prepare(model, QuantConfig())
        module.fold()
    ctx = _Context(module, IntGraphBuilder(name))
    frames, bins = module.trace.input_shape[2:]
    ctx.names["input"] = ctx.builder.input(INPUT_NAME, (1, frames, bins, 1))
    for step in module.trace.steps:
        ctx.names[step.name] = _LOWERERS[step.kind](ctx, step)
    graph = ctx.builder.build([ctx.names[module.trace.output]])
    _rename_output(graph, OUTPUT_NAME)
    graph.metadata["input_layout"] = "NHWC (batch, frames, bins, 1), normalised features"
    return graph


def _rename_output(graph: IntGraph, name: str) -> None:
    """Call the graph's output tensor `name` (as the int8 graph's output is called)."""
    old = graph.outputs[0]
    if old == name or name in graph.tensors or old in graph.inputs:
        return
    tensor = graph.tensors.pop(old)
    tensor.name = name
    graph.tensors[name] = tensor
    for op in graph.ops:
        op.outputs = [name if n == old else n for n in op.outputs]
        op.inputs = [name if n == old else n for n in op.inputs]
    graph.outputs[0] = name


def _weights(ctx: _Context, step, layout) -> Weights:
    weight, bias = ctx.module.layer_weight_bias(step)
    data = layout(weight.detach().cpu().numpy().astype(np.float32))
    return Weights(np.ascontiguousarray(data), (), bias.detach().cpu().numpy().astype(np.float32))


def _conv(ctx: _Context, step) -> str:
    weights = _weights(ctx, step, lambda w: w.transpose(0, 2, 3, 1))  # OIHW -> OHWI
    return ctx.builder.conv2d(
        ctx.names[step.inputs[0]],
        weights,
        None,
        name=step.name,
        **conv_options(ctx.layer(step), step),
    )


def _depthwise(ctx: _Context, step) -> str:
    layer = ctx.layer(step)
    weights = _weights(ctx, step, lambda w: w.transpose(1, 2, 3, 0))  # (C,1,KH,KW) -> (1,KH,KW,C)
    if step.ssn:
        bands = ctx.module.net.get_submodule(step.ssn).num_subbands
        return banded_depthwise(
            ctx.builder,
            ctx.names[step.inputs[0]],
            weights,
            bands,
            None,
            name=step.name,
            **conv_options(layer, step),
        )
    x = ctx.names[step.inputs[0]]
    if step.bins:  # a fused bin average: in float, the MEAN the model computes
        x = ctx.builder.mean(x, None, axes=(2,), name=f"{step.name}/bin_average")
    return ctx.builder.depthwise_conv2d(
        x,
        weights,
        None,
        name=step.name,
        depth_multiplier=layer.out_channels // layer.in_channels,
        **conv_options(layer, step),
    )


def _linear(ctx: _Context, step) -> str:
    source = ctx.flattened.get(step.inputs[0])

    def layout(w: np.ndarray) -> np.ndarray:
        if source is None or source[1] * source[2] == 1:
            return w
        channels, height, width = source  # columns (c, h, w) -> (h, w, c), as NHWC flattens
        return w.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    if len(ctx.shape(step.inputs[0])) != 2:
        raise TinyKWSError(
            f"export: layer {step.layer} must read a flattened (batch, features) tensor"
        )
    return ctx.builder.fully_connected(
        ctx.names[step.inputs[0]],
        _weights(ctx, step, layout),
        None,
        activation=step.activation,
        name=step.name,
    )


def _pool(ctx: _Context, step) -> str:
    """MAX_POOL_2D / AVERAGE_POOL_2D with pads reproducing PyTorch's padding and ceil_mode."""
    pool = ctx.layer(step)
    kernel, stride, padding = (
        _pair(v) for v in (pool.kernel_size, pool.stride or pool.kernel_size, pool.padding)
    )
    in_hw, out_hw = ctx.shape(step.inputs[0])[1:3], step.shape[2:]
    pads = []
    for axis in (0, 1):  # the last window may hang over the end (ceil_mode): pad the rest
        after = (out_hw[axis] - 1) * stride[axis] + kernel[axis] - in_hw[axis] - padding[axis]
        pads += [padding[axis], max(after, 0)]
    method = ctx.builder.max_pool2d if step.kind == "max_pool" else ctx.builder.avg_pool2d
    return method(
        ctx.names[step.inputs[0]],
        kernel,
        stride=stride,
        padding=tuple(pads),
        activation=step.activation,
        name=step.name,
    )


def _mean(ctx: _Context, step) -> str:
    axes = [NHWC_AXIS[a] for a in step.axes]
    return ctx.builder.mean(ctx.names[step.inputs[0]], None, axes=axes, name=step.name)


def _add(ctx: _Context, step) -> str:
    a, b = (ctx.names[n] for n in step.inputs)
    return ctx.builder.add(a, b, None, activation=step.activation, name=step.name)


def _silu(ctx: _Context, step) -> str:
    return ctx.builder.silu(ctx.names[step.inputs[0]], None, name=step.name)


def _flatten(ctx: _Context, step) -> str:
    shape = ctx.shape(step.inputs[0])
    if len(shape) == 4:
        ctx.flattened[step.name] = (shape[3], shape[1], shape[2])
    return ctx.builder.reshape(
        ctx.names[step.inputs[0]], (1, int(np.prod(shape[1:]))), name=step.name
    )


_LOWERERS = {
    "conv": _conv,
    "depthwise": _depthwise,
    "linear": _linear,
    "max_pool": _pool,
    "avg_pool": _pool,
    "mean": _mean,
    "add": _add,
    "silu": _silu,
    "flatten": _flatten,
    "dropout": _dropout,
    "pad": _pad,
}
