"""Lower a traced network (`tinykws.models.trace`) to a Graph, step by step: one table for the
int8 graph (`tinykws.quant.lower`) and the float32 graph (`tinykws.export.float_graph`).

Every step becomes one op (or none). What differs between the two graphs is only what a step
reads, and the `Lowering` carries it: the weights in the graph's layout (int8 with scales and an
int32 bias, or float32) and each tensor's quantization (`QuantParams`, or None for float32).

Layout. PyTorch runs NCHW with H = frames and W = bins; the graph is NHWC like TFLite:
- conv weights (C_out, C_in, KH, KW) become OHWI, depthwise (C, 1, KH, KW) become (1, KH, KW, C);
- a flatten of a (C, H, W) map becomes a RESHAPE of (H, W, C), so the fully connected layer
  reading it gets its weight columns permuted from (c, h, w) order to (h, w, c) order;
- pools get the explicit pads that reproduce PyTorch's padding and ceil_mode.

BC-ResNet's layers that are not one op each:
- a depthwise conv with a SubSpectralNorm after it has one set of folded weights per sub-band
  (`banded_depthwise`): PAD, then for each band a SLICE of the bins its outputs read and a VALID
  DEPTHWISE_CONV_2D with that band's weights, all onto one output grid, joined by
  CONCATENATION along the bins (a copy: the parts share the output's scale and zero point);
- SiLU is LOGISTIC then MUL(x, sigmoid(x)), as TensorFlow's converter writes it;
- an average over every bin fused into the temporal depthwise conv after it (`Step.bins`) is,
  in the int8 graph, one DEPTHWISE_CONV_2D whose weights repeat over the bins at 1/bins of their
  scale (`Lowering.bins_in_weights`; see `tinykws.quant.lower` for why), and in the float32
  graph the MEAN the model computes followed by the depthwise conv.

Example:
    >>> from tinykws.ir.builder import GraphBuilder
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.models.trace import trace_steps
    >>> net = build_model(model_config("tinyconv", 4, (49, 40))).eval()
    >>> trace = trace_steps(net)
    >>> lowering = Lowering(net, GraphBuilder(), float_weights(net), lambda tensor: None)
    >>> lowering.names["input"] = lowering.builder.input("features", (1, 49, 40, 1))
    >>> out = lower_steps(lowering, trace)
    >>> [op.type for op in lowering.builder.build([out]).ops]
    ['CONV_2D', 'RESHAPE', 'FULLY_CONNECTED']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import GraphBuilder, QuantParams, Weights, pair
from tinykws.models.fold import layer_weight_bias
from tinykws.models.trace import Step, Trace

INPUT_NAME = "features"  # the graph input: normalised features, NHWC (1, frames, bins, 1)
OUTPUT_NAME = "logits"
NHWC_AXIS = {2: 1, 3: 2}  # NCHW axis -> NHWC axis, for H and W

Layout = Callable[[np.ndarray], np.ndarray]


@dataclass
class Lowering:
    """What lowering one step reads and writes.

    Attributes:
        net: the traced network (BatchNorms folded); layer options are read from it.
        builder: the graph being built.
        weights: `weights(step, layout)`, the step's `Weights` with `layout` applied to the
            PyTorch-layout weight array (int8 with scales and int32 bias, or float32).
        qparams: `qparams(tensor)`, the quantization of a step's output; None in float32.
        bins_in_weights: the weights of a `Step.bins` depthwise already span every bin (int8);
            otherwise the bins are averaged by a MEAN first (float32).
        verb: what messages start with ("lower", "export").
        names: model tensor -> graph tensor, filled in as steps are lowered.
        flattened: a flattened tensor -> the (C, H, W) map it came from.
    """

    net: nn.Module
    builder: GraphBuilder
    weights: Callable[[Step, Layout], Weights]
    qparams: Callable[[str], QuantParams | None]
    bins_in_weights: bool = False
    verb: str = "lower"
    names: dict[str, str] = field(default_factory=dict)
    flattened: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def input_name(self, step: Step, index: int = 0) -> str:
        return self.names[step.inputs[index]]

    def shape(self, step: Step) -> tuple[int, ...]:
        """The graph shape (NHWC) of the step's first input."""
        return self.builder.graph.tensor(self.input_name(step)).shape

    def layer(self, step: Step) -> nn.Module:
        return self.net.get_submodule(step.module)


def lower_steps(lowering: Lowering, trace: Trace) -> str:
    """Lower every step of `trace` (its input already in `lowering.names["input"]`); returns the
    graph name of the trace's output."""
    for step in trace.steps:
        lowering.names[step.name] = LOWERERS[step.kind](lowering, step)
    return lowering.names[trace.output]


def float_weights(net: nn.Module) -> Callable[[Step, Layout], Weights]:
    """`Lowering.weights` of a float32 graph: the folded float weights and bias of `net`."""

    def weights(step: Step, layout: Layout) -> Weights:
        weight, bias = layer_weight_bias(net, step)
        data = layout(weight.detach().cpu().numpy().astype(np.float32))
        return Weights(
            np.ascontiguousarray(data), (), bias.detach().cpu().numpy().astype(np.float32)
        )

    return weights


def conv_options(layer: nn.Module, step: Step) -> dict:
    """Builder keyword arguments of a convolution step: stride, padding, dilation, activation."""
    return {
        "stride": tuple(layer.stride),
        "padding": tuple(step.pads),
        "dilation": tuple(layer.dilation),
        "activation": step.activation,
    }


def _conv(lowering: Lowering, step: Step) -> str:
    weights = lowering.weights(step, lambda w: w.transpose(0, 2, 3, 1))  # OIHW -> OHWI
    return lowering.builder.conv2d(
        lowering.input_name(step),
        weights,
        lowering.qparams(step.name),
        name=step.name,
        **conv_options(lowering.layer(step), step),
    )


def _depthwise(lowering: Lowering, step: Step) -> str:
    layer = lowering.layer(step)
    weights = lowering.weights(
        step, lambda w: w.transpose(1, 2, 3, 0)
    )  # (C,1,KH,KW) -> (1,KH,KW,C)
    x, out, builder = lowering.input_name(step), lowering.qparams(step.name), lowering.builder
    if step.ssn:
        bands = lowering.net.get_submodule(step.ssn).num_subbands
        options = conv_options(layer, step)
        return banded_depthwise(builder, x, weights, bands, out, name=step.name, **options)
    if step.bins and not lowering.bins_in_weights:  # the bin average the model computes
        x = builder.mean(x, None, axes=(2,), name=f"{step.name}/bin_average")
    return builder.depthwise_conv2d(
        x,
        weights,
        out,
        depth_multiplier=layer.out_channels // layer.in_channels,
        name=step.name,
        **conv_options(layer, step),
    )


def banded_depthwise(
    builder: GraphBuilder,
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
    parts = []
    for band in range(bands):
        part = builder.slice(
            x,
            (0, 0, band * band_width * stride[1], 0),
            (1, height, span, channels),
            name=f"{name}/band{band}/bins",
        )
        parts.append(
            builder.depthwise_conv2d(
                part,
                _band(weights, band, bands),
                out,
                stride=stride,
                padding="VALID",
                dilation=dilation,
                activation=activation,
                name=f"{name}/band{band}",
            )
        )
    return builder.concatenation(parts, axis=2, name=name)


def _band(weights: Weights, band: int, bands: int) -> Weights:
    """The weights, scales and bias of one sub-band (every `bands`-th channel from `band`)."""
    scales = tuple(weights.scales)
    return Weights(
        np.ascontiguousarray(weights.data[..., band::bands]),
        scales[band::bands] if len(scales) > 1 else scales,
        None if weights.bias is None else weights.bias[band::bands],
        weights.bits,
    )


def _linear(lowering: Lowering, step: Step) -> str:
    source = lowering.flattened.get(step.inputs[0])

    def layout(w: np.ndarray) -> np.ndarray:
        if source is None or source[1] * source[2] == 1:
            return w
        channels, height, width = source  # columns (c, h, w) -> (h, w, c), as NHWC flattens
        return w.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    if len(lowering.shape(step)) != 2:
        raise TinyKWSError(
            f"{lowering.verb}: layer {step.layer} must read a flattened (batch, features) tensor"
        )
    return lowering.builder.fully_connected(
        lowering.input_name(step),
        lowering.weights(step, layout),
        lowering.qparams(step.name),
        activation=step.activation,
        name=step.name,
    )


def _pool(lowering: Lowering, step: Step) -> str:
    """MAX_POOL_2D / AVERAGE_POOL_2D with pads reproducing PyTorch's padding and ceil_mode."""
    pool = lowering.layer(step)
    kernel, stride, padding = (
        pair(v) for v in (pool.kernel_size, pool.stride or pool.kernel_size, pool.padding)
    )
    in_hw, out_hw = lowering.shape(step)[1:3], step.shape[2:]
    pads = []
    for axis in (0, 1):  # the last window may hang over the end (ceil_mode): pad the rest
        after = (out_hw[axis] - 1) * stride[axis] + kernel[axis] - in_hw[axis] - padding[axis]
        pads += [padding[axis], max(after, 0)]
    builder = lowering.builder
    method = builder.max_pool2d if step.kind == "max_pool" else builder.avg_pool2d
    return method(
        lowering.input_name(step),
        kernel,
        stride=stride,
        padding=tuple(pads),
        activation=step.activation,
        name=step.name,
    )


def _mean(lowering: Lowering, step: Step) -> str:
    axes = [NHWC_AXIS[a] for a in step.axes]
    x, out = lowering.input_name(step), lowering.qparams(step.name)
    return lowering.builder.mean(x, out, axes=axes, name=step.name)


def _add(lowering: Lowering, step: Step) -> str:
    a, b = lowering.input_name(step, 0), lowering.input_name(step, 1)
    out = lowering.qparams(step.name)
    return lowering.builder.add(a, b, out, activation=step.activation, name=step.name)


def _silu(lowering: Lowering, step: Step) -> str:
    x, out = lowering.input_name(step), lowering.qparams(step.name)
    return lowering.builder.silu(x, out, name=step.name)


def _flatten(lowering: Lowering, step: Step) -> str:
    shape = lowering.shape(step)
    if len(shape) == 4:
        lowering.flattened[step.name] = (shape[3], shape[1], shape[2])
    x = lowering.input_name(step)
    return lowering.builder.reshape(x, (1, int(np.prod(shape[1:]))), name=step.name)


def _dropout(lowering: Lowering, step: Step) -> str:
    source = step.inputs[0]
    if source in lowering.flattened:
        lowering.flattened[step.name] = lowering.flattened[source]
    return lowering.names[source]  # identity at inference


def _pad(lowering: Lowering, step: Step) -> str:
    top, bottom, left, right = step.pads
    pads = [(0, 0), (top, bottom), (left, right), (0, 0)]
    return lowering.builder.pad(lowering.input_name(step), pads, name=step.name)


LOWERERS = {
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
