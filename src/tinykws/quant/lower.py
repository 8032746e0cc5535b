"""Lower a fake-quantized model (`tinykws.quant`) to an IntGraph.

Every step of the model's trace becomes one op (or none), with the integers the fake-quant
model rounds to: the same int weights, the same int32 biases, the same scales and zero points.
The graph's fixed-point constants (Q31 multipliers and shifts) are computed once, here, as each
op is added (`tinykws.ir.builder`).

Layout. PyTorch runs NCHW with H = frames and W = bins; the graph is NHWC like TFLite:
- the graph input is float32 (1, frames, bins, 1): normalised features, quantized by QUANTIZE;
- conv weights (C_out, C_in, KH, KW) become OHWI, depthwise (C, 1, KH, KW) become (1, KH, KW, C);
- a flatten of a (C, H, W) map becomes a RESHAPE of (H, W, C), so the fully connected layer
  reading it gets its weight columns permuted from (c, h, w) order to (h, w, c) order;
- the output is DEQUANTIZE of the last layer's int8 logits (SOFTMAX before it on request).

BC-ResNet's layers that are not one op each:
- a depthwise conv with a SubSpectralNorm after it has one set of folded weights per sub-band
  (`banded_depthwise`): PAD, then for each band a SLICE of the bins its outputs read and a VALID
  DEPTHWISE_CONV_2D with that band's weights, all onto one output grid, joined by
  CONCATENATION along the bins (a copy: the parts share the output's scale and zero point);
- SiLU is LOGISTIC then MUL(x, sigmoid(x)), as TensorFlow's converter writes it;
- the average over every bin and the temporal depthwise conv after it are one
  DEPTHWISE_CONV_2D over (time, all bins) whose weights repeat the temporal weights in every
  bin at 1/bins of their scale (`Step.bins`): one requantization of the exact sum. A MEAN
  would compute the same in LiteRT's reference kernels, but LiteRT's optimised MEAN rounds in
  float32 with a bias of its own and lands one step away on about one output in five, which
  the blocks after it amplify (top-1 agreement with the graph 98.6 % in LiteRT's default path
  instead of 99.6 %). The weights take bins times the bytes (BC-ResNet-1: 3.4 kB more
  .tflite, 2.7 kB more Cortex-M4 flash).

Example:
    >>> import numpy as np
    >>> from tinykws.features.frontend import Normalization
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig, QuantData, quantize
    >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
    >>> data = QuantData(np.random.default_rng(0).normal(size=(8, 49, 40)).astype(np.float32),
    ...                  Normalization(mean=(0.0,) * 40, std=(1.0,) * 40))
    >>> graph = lower(quantize(model, QuantConfig(), data))
    >>> [op.type for op in graph.ops]
    ['QUANTIZE', 'CONV_2D', 'RESHAPE', 'FULLY_CONNECTED', 'DEQUANTIZE']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import IntGraphBuilder, QuantParams, Weights
from tinykws.ir.graph import IntGraph

INPUT_NAME = "features"
OUTPUT_NAME = "logits"


@dataclass
class _Context:
    """What the lowering of one step reads: the model, the builder, names so far."""

    module: object
    builder: IntGraphBuilder
    names: dict[str, str] = field(default_factory=dict)  # model tensor -> graph tensor
    flattened: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (C, H, W) source

    def qparams(self, tensor: str) -> QuantParams:
        scale, zero_point = self.module.qparams(tensor)
        return QuantParams(scale, zero_point)


def lower(quantized, name: str = "model", *, softmax: bool = False) -> IntGraph:
    """The IntGraph of a `QuantizedModel` (method ptq or qat, 8-bit activations).

    Args:
        quantized: a `tinykws.quant.model.QuantizedModel` (or its `QuantModel`).
        name: the graph's name.
        softmax: end with SOFTMAX (int8 probabilities, scale 1/256) before the DEQUANTIZE.

    Raises:
        TinyKWSError: the model cannot be lowered (dynamic range, activations below 8 bits).
    """
    from tinykws.quant.model import QuantModel

    module = getattr(quantized, "module", quantized)
    if not isinstance(module, QuantModel):
        raise TinyKWSError(
            "lower: a dynamic-range model keeps float activations; the integer "
            "graph needs a ptq or qat model"
        )
    if module.config.activation_bits != 8:
        raise TinyKWSError(
            f"lower: the integer graph holds int8 activations; this model uses "
            f"{module.config.activation_bits}-bit activations (use 8)"
        )
    if any(step.bn for step in module.trace.steps):
        raise TinyKWSError("lower: fold the BatchNorms first (QuantModel.fold)")
    ctx = _Context(module, IntGraphBuilder(name))
    frames, bins = module.trace.input_shape[2:]
    x = ctx.builder.input(INPUT_NAME, (1, frames, bins, 1))
    ctx.names["input"] = ctx.builder.quantize(x, ctx.qparams("input"), name="input_q")
    for step in module.trace.steps:
        ctx.names[step.name] = LOWERERS[step.kind](ctx, step)
    out = ctx.names[module.trace.output]
    if softmax:
        out = ctx.builder.softmax(out, name="softmax")
    graph = ctx.builder.build([ctx.builder.dequantize(out, name=OUTPUT_NAME)])
    graph.metadata.update(
        input_layout="NHWC (batch, frames, bins, 1), normalised features",
        weight_bits=module.config.weight_bits,
        activation_bits=module.config.activation_bits,
    )
    return graph


def _weights(ctx: _Context, step, layout) -> Weights:
    layer = ctx.module.integer_layer(step)
    weight = layout(layer.weight.cpu().numpy()).astype(np.int8)
    return Weights(
        np.ascontiguousarray(weight),
        tuple(layer.scale.cpu().numpy().astype(np.float32)),
        layer.bias.cpu().numpy().astype(np.int32),
        layer.bits,
    )


def _conv_options(ctx: _Context, step) -> dict:
    return conv_options(ctx.module.net.get_submodule(step.module), step)


def conv_options(layer, step) -> dict:
    """Builder keyword arguments of a convolution step: stride, padding, dilation, activation."""
    return {
        "stride": tuple(layer.stride),
        "padding": tuple(step.pads),
        "dilation": tuple(layer.dilation),
        "activation": step.activation,
    }


def _conv(ctx: _Context, step) -> str:
    weights = _weights(ctx, step, lambda w: w.transpose(0, 2, 3, 1))  # OIHW -> OHWI
    return ctx.builder.conv2d(
        ctx.names[step.inputs[0]],
        weights,
        ctx.qparams(step.name),
        name=step.name,
        **_conv_options(ctx, step),
    )


def _depthwise(ctx: _Context, step) -> str:
    layer = ctx.module.net.get_submodule(step.module)
    weights = _weights(
        ctx, step, lambda w: w.transpose(1, 2, 3, 0)
    )  # (C, 1, KH, KW) -> (1, KH, KW, C)
    if step.ssn:
        bands = ctx.module.net.get_submodule(step.ssn).num_subbands
        x, out = ctx.names[step.inputs[0]], ctx.qparams(step.name)
        return banded_depthwise(
            ctx.builder, x, weights, bands, out, name=step.name, **_conv_options(ctx, step)
        )
    multiplier = layer.out_channels // layer.in_channels
    return ctx.builder.depthwise_conv2d(
        ctx.names[step.inputs[0]],
        weights,
        ctx.qparams(step.name),
        depth_multiplier=multiplier,
        name=step.name,
        **_conv_options(ctx, step),
    )


def banded_depthwise(
    builder: IntGraphBuilder,
    x: str,
    weights: Weights,
    bands: int,
    out: QuantParams | None,
    *,
    stride,
    padding,
    dilation,
    activation: str,
    name: str,
) -> str:
    """A depthwise conv whose weights change along the bins in `bands` equal sub-bands.

    `weights.data` is (1, KH, KW, C * bands), channel c * bands + s holding band s of channel c
    (as `tinykws.models.fold.subspectral_weight_bias` orders them); `padding` is the explicit
    (top, bottom, left, right) of the whole conv. Returns the CONCATENATION's output name.
    """
    if any(padding):
        top, bottom, left, right = padding
        x = builder.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], name=f"{name}/pad")
    _, height, width, channels = builder.graph.tensor(x).shape
    kernel_w = weights.data.shape[2]
    out_width = (width - (kernel_w - 1) * dilation[1] - 1) // stride[1] + 1
    band_width = out_width // bands
    span = (band_width - 1) * stride[1] + (kernel_w - 1) * dilation[1] + 1
    scales = tuple(weights.scales)
    parts = []
    for band in range(bands):
        part = builder.slice(
            x,
            (0, 0, band * band_width * stride[1], 0),
            (1, height, span, channels),
            name=f"{name}/band{band}/bins",
        )
        band_weights = Weights(
            np.ascontiguousarray(weights.data[..., band::bands]),
            scales[band::bands] if len(scales) > 1 else scales,
            None if weights.bias is None else weights.bias[band::bands],
            weights.bits,
        )
        parts.append(
            builder.depthwise_conv2d(
                part,
                band_weights,
                out,
                stride=stride,
                padding="VALID",
                dilation=dilation,
                activation=activation,
                name=f"{name}/band{band}",
            )
        )
    return builder.concatenation(parts, axis=2, name=name)


def _silu(ctx: _Context, step) -> str:
    return ctx.builder.silu(ctx.names[step.inputs[0]], ctx.qparams(step.name), name=step.name)


def _linear(ctx: _Context, step) -> str:
    source = ctx.flattened.get(step.inputs[0])

    def layout(w: np.ndarray) -> np.ndarray:
        if source is None or source[1] * source[2] == 1:
            return w
        channels, height, width = source  # columns (c, h, w) -> (h, w, c), as NHWC flattens
        return w.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    x = ctx.names[step.inputs[0]]
    if len(ctx.builder.graph.tensor(x).shape) != 2:
        raise TinyKWSError(
            f"lower: layer {step.layer} must read a flattened (batch, features) tensor"
        )
    return ctx.builder.fully_connected(
        x,
        _weights(ctx, step, layout),
        ctx.qparams(step.name),
        activation=step.activation,
        name=step.name,
    )


def _pool_options(ctx: _Context, step) -> dict:
    """Filter, stride and TFLite pads equal to the PyTorch pool (padding, ceil_mode)."""
    pool = ctx.module.net.get_submodule(step.module)
    kernel, stride, padding = (
        _pair(v) for v in (pool.kernel_size, pool.stride or pool.kernel_size, pool.padding)
    )
    in_hw = ctx.builder.graph.tensor(ctx.names[step.inputs[0]]).shape[1:3]
    out_hw = step.shape[2:]
    pads = []
    for axis in (0, 1):  # the last window may hang over the end (ceil_mode): pad the rest
        after = (out_hw[axis] - 1) * stride[axis] + kernel[axis] - in_hw[axis] - padding[axis]
        pads += [padding[axis], max(after, 0)]
    return {"stride": stride, "padding": tuple(pads), "activation": step.activation}


def _max_pool(ctx: _Context, step) -> str:
    kernel = _pair(ctx.module.net.get_submodule(step.module).kernel_size)
    return ctx.builder.max_pool2d(
        ctx.names[step.inputs[0]], kernel, name=step.name, **_pool_options(ctx, step)
    )


def _avg_pool(ctx: _Context, step) -> str:
    kernel = _pair(ctx.module.net.get_submodule(step.module).kernel_size)
    return ctx.builder.avg_pool2d(
        ctx.names[step.inputs[0]], kernel, name=step.name, **_pool_options(ctx, step)
    )


NHWC_AXIS = {2: 1, 3: 2}  # NCHW axis -> NHWC axis, for H and W


def _mean(ctx: _Context, step) -> str:
    axes = [NHWC_AXIS[a] for a in step.axes]
    return ctx.builder.mean(
        ctx.names[step.inputs[0]], ctx.qparams(step.name), axes=axes, name=step.name
    )


def _add(ctx: _Context, step) -> str:
    a, b = (ctx.names[n] for n in step.inputs)
    return ctx.builder.add(a, b, ctx.qparams(step.name), activation=step.activation, name=step.name)


def _flatten(ctx: _Context, step) -> str:
    x = ctx.names[step.inputs[0]]
    shape = ctx.builder.graph.tensor(x).shape
    if len(shape) == 4:
        ctx.flattened[step.name] = (shape[3], shape[1], shape[2])
    return ctx.builder.reshape(x, (1, int(np.prod(shape[1:]))), name=step.name)


def _dropout(ctx: _Context, step) -> str:
    source = step.inputs[0]
    if source in ctx.flattened:
        ctx.flattened[step.name] = ctx.flattened[source]
    return ctx.names[source]  # identity at inference


def _pad(ctx: _Context, step) -> str:
    top, bottom, left, right = step.pads
    return ctx.builder.pad(
        ctx.names[step.inputs[0]], [(0, 0), (top, bottom), (left, right), (0, 0)], name=step.name
    )


def _pair(value) -> tuple[int, int]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * 2


LOWERERS = {
    "conv": _conv,
    "depthwise": _depthwise,
    "linear": _linear,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "mean": _mean,
    "add": _add,
    "silu": _silu,
    "flatten": _flatten,
    "dropout": _dropout,
    "pad": _pad,
}
