"""Building blocks shared by the model families: TensorFlow-style padding, conv blocks, checks.

Padding. TFLite's CONV_2D, DEPTHWISE_CONV_2D and pooling kernels know two paddings, SAME and
VALID, so every convolution and pooling layer built here is exactly one of them for the input
shape in the model's config (`same_padding` gives TensorFlow's pads, so a lowering can check):

- VALID: `padding=0`.
- SAME with equal pads on both sides: the layer's own `padding=(ph, pw)`.
- SAME with one more row/column at the bottom/right (even kernels, or a stride that does not
  divide the input): convolutions get an `nn.ZeroPad2d` named ``pad`` directly before a Conv2d
  with `padding=0`; max pools use `padding=before` with `ceil_mode=True`, which lets the last
  window hang over the end exactly as SAME does.

Layout: tensors are (batch, channels, frames, bins) — H is time, W is frequency.

Example:
    >>> same_padding(49, kernel=10, stride=2)   # TensorFlow puts the odd pad at the end
    (4, 5)
    >>> block, out_hw = conv_block(1, 8, ConvSpec((10, 8), (2, 2)), (49, 40))
    >>> out_hw, list(dict(block.named_children()))
    ((25, 20), ['pad', 'conv', 'bn', 'act'])
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from torch import nn

from tinykws.config import check_choice, check_range
from tinykws.errors import TinyKWSError

PADDINGS = ("same", "valid")
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


def pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """(v, v) for an int, the value itself for a pair."""
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: (before, after), the odd pad going after.

    The output has ceil(size / stride) positions.
    """
    span = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, pads: tuple[int, int], dilation=1) -> int:
    """Positions of a VALID sliding window over `size` plus `pads` (floor division)."""
    span = (kernel - 1) * dilation + 1
    return (size + pads[0] + pads[1] - span) // stride + 1


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of one convolution: kernel, stride and dilation as (time, freq), groups, padding.

    `groups=0` means depthwise (one group per input channel).
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding: str = "same"

    def pads(self, in_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) for an input of `in_hw` (frames, bins)."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        return tuple(
            same_padding(in_hw[i], self.kernel[i], self.stride[i], self.dilation[i]) for i in (0, 1)
        )

    def output_hw(self, in_hw: tuple[int, int], where: str = "model") -> tuple[int, int]:
        """Output (frames, bins); a one-line error when the input is too small for the kernel."""
        pads = self.pads(in_hw)
        out = tuple(
            output_size(in_hw[i], self.kernel[i], self.stride[i], pads[i], self.dilation[i])
            for i in (0, 1)
        )
        if min(out) < 1:
            raise TinyKWSError(
                f"{where}: a {self.kernel[0]}x{self.kernel[1]} {self.padding} convolution does not "
                f"fit a {in_hw[0]}x{in_hw[1]} feature map; use a larger input_shape"
            )
        return out


def conv_layers(
    in_channels: int, out_channels: int, spec: ConvSpec, in_hw: tuple[int, int], bias=False
) -> tuple[list[tuple[str, nn.Module]], tuple[int, int]]:
    """[("pad", ZeroPad2d)?, ("conv", Conv2d)] realising `spec` on `in_hw`, and the output size."""
    out_hw = spec.output_hw(in_hw)
    (top, bottom), (left, right) = spec.pads(in_hw)
    layers: list[tuple[str, nn.Module]] = []
    padding: tuple[int, int] = (top, left)
    if top != bottom or left != right:
        layers.append(("pad", nn.ZeroPad2d((left, right, top, bottom))))
        padding = (0, 0)
    groups = in_channels if spec.groups == 0 else spec.groups
    conv = nn.Conv2d(
        in_channels, out_channels, spec.kernel, spec.stride, padding, spec.dilation, groups, bias
    )
    layers.append(("conv", conv))
    return layers, out_hw


def conv_block(
    in_channels: int,
    out_channels: int,
    spec: ConvSpec,
    in_hw: tuple[int, int],
    norm: bool = True,
    act: str | None = "relu",
) -> tuple[nn.Sequential, tuple[int, int]]:
    """Conv (+ BatchNorm) (+ activation) as a Sequential with children pad?, conv, bn?, act?.

    The convolution has a bias only when no BatchNorm follows (the BN's shift replaces it).
    """
    layers, out_hw = conv_layers(in_channels, out_channels, spec, in_hw, bias=not norm)
    if norm:
        layers.append(("bn", nn.BatchNorm2d(out_channels)))
    if act is not None:
        layers.append(("act", ACTIVATIONS[act]()))
    return nn.Sequential(OrderedDict(layers)), out_hw


def max_pool_same(kernel, stride, in_hw: tuple[int, int]) -> tuple[nn.MaxPool2d, tuple[int, int]]:
    """A MaxPool2d equal to TensorFlow's SAME max pool on `in_hw`, and its output size."""
    kernel, stride = pair(kernel), pair(stride)
    pads = [same_padding(in_hw[i], kernel[i], stride[i]) for i in (0, 1)]
    if any(after != before and s == 1 for (before, after), s in zip(pads, stride)):
        raise ValueError("SAME max pooling with stride 1 needs an odd kernel")
    out_hw = tuple(-(-in_hw[i] // stride[i]) for i in (0, 1))
    before = (pads[0][0], pads[1][0])
    return nn.MaxPool2d(kernel, stride, padding=before, ceil_mode=True), out_hw


def check_model_config(config: Any) -> None:
    """Checks every model config shares: classes, input shape, widths, dropout rates.

    Width fields are named by the config class's `WIDTH_FIELDS`; each holds a positive int or a
    tuple of positive ints.
    """
    where = config.family
    if not isinstance(config.n_classes, int) or config.n_classes < 2:
        raise TinyKWSError(f"{where}: n_classes must be an integer >= 2; got {config.n_classes!r}")
    shape = config.input_shape
    if len(shape) != 2 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise TinyKWSError(
            f"{where}: input_shape must be two positive integers [frames, bins]; got {shape!r}"
        )
    for name in config.WIDTH_FIELDS:
        value = getattr(config, name)
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise TinyKWSError(
                f"{where}: {name} must be positive integers (a layer needs at least one "
                f"channel); got {value!r}"
            )
    for name in (f.name for f in dataclasses.fields(config) if "dropout" in f.name):
        check_range(f"{where}: {name}", getattr(config, name), 0.0, 1.0, high_open=True)
    if hasattr(config, "padding"):
        check_choice(f"{where}: padding", config.padding, PADDINGS)


def check_pairs(config: Any, *names: str) -> None:
    """Each named field is a pair of positive ints (kernel, stride, ...)."""
    for name in names:
        value = getattr(config, name)
        if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
            raise TinyKWSError(
                f"{config.family}: {name} must be two positive integers; got {value!r}"
            )


def scale_width(width: int, multiplier: float) -> int:
    """round(width * multiplier), at least 1 channel."""
    return max(1, int(round(width * multiplier)))
