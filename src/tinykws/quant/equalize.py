"""Cross-layer equalization: rescale channels between two layers so that one weight scale per
tensor serves every channel (Nagel et al., 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction").

For a layer followed by a ReLU (or nothing) and then a second weighted layer, relu(x / s) =
relu(x) / s for s > 0. Dividing output channel i of the first layer (weights and bias) by s_i
and multiplying the weights that read channel i in the second layer by s_i therefore leaves the
float network unchanged. With r1_i the largest |weight| of channel i in the first layer and r2_i
that of input channel i in the second, s_i = sqrt(r1_i / r2_i) gives both the range
sqrt(r1_i * r2_i): channels that per-tensor scales would round to a few levels (DS-CNN's
depthwise filters differ by up to 40x after BatchNorm folding) meet in the middle. Chains of layers
(conv -> depthwise -> pointwise -> ...) are equalized pair by pair until the scales settle.

Pools, means, padding, dropout and flatten between the two layers act on each channel alone
and commute with positive scales, so they may stand between them. A pair is skipped when the
first layer's output feeds anything else (a residual add), goes through ReLU6 or SiLU (not
scale-invariant), or is normalized again (BC-ResNet's SubSpectralNorm).

Example:
    >>> import torch
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.models.fold import fold_batchnorm
    >>> from tinykws.models.trace import trace_steps
    >>> model = fold_batchnorm(build_model(model_config("dscnn_s", 12, (49, 10))))
    >>> x = torch.randn(2, 1, 49, 10)
    >>> before = model(x)
    >>> pairs = equalizable_pairs(trace_steps(model), model)
    >>> len(pairs), equalize(model, pairs) > 0
    (9, True)
    >>> bool(torch.allclose(model(x), before, atol=1e-5))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tinykws.models.trace import WEIGHTED, Step, Trace

# Steps that act on each channel alone and commute with a positive per-channel scale.
CHANNELWISE = ("max_pool", "avg_pool", "mean", "dropout", "pad", "flatten")
SCALE_INVARIANT = ("NONE", "RELU")


@dataclass(frozen=True)
class Pair:
    """Two weighted layers whose shared channels can be rescaled.

    Attributes:
        first, second: module paths of the layer writing the channels and the one reading them.
        spatial: input features of `second` per channel (H * W of a flattened (C, H, W)
            tensor before a linear layer; 1 otherwise).
    """

    first: str
    second: str
    spatial: int = 1


def equalizable_pairs(trace: Trace, net: nn.Module) -> list[Pair]:
    """The pairs of `trace` (BatchNorm already folded) that `equalize` may rescale."""
    consumers: dict[str, list[Step]] = {}
    for step in trace.steps:
        for name in step.inputs:
            consumers.setdefault(name, []).append(step)
    pairs = []
    for step in trace.steps:
        if step.kind in WEIGHTED and not (step.bn or step.ssn):
            pair = _pair_from(step, trace, net, consumers)
            if pair is not None:
                pairs.append(pair)
    return pairs


def _pair_from(first: Step, trace: Trace, net: nn.Module, consumers) -> Pair | None:
    """The pair starting at `first`, following single-consumer channel-wise steps."""
    step, spatial = first, 1
    while True:
        users = consumers.get(step.name, [])
        if step.activation not in SCALE_INVARIANT or step.name == trace.output or len(users) != 1:
            return None
        (step,) = users
        if step.kind == "flatten":
            spatial = _elements(trace, step.inputs[0]) // _channels(net, first)
        if step.kind not in CHANNELWISE:
            break
    if step.kind not in WEIGHTED or not _reads_channels(net, step, _channels(net, first)):
        return None
    return Pair(first.module, step.module, spatial)


def _channels(net: nn.Module, step: Step) -> int:
    return net.get_submodule(step.module).weight.shape[0]


def _elements(trace: Trace, name: str) -> int:
    shape = trace.input_shape if name == "input" else trace.step(name).shape
    return math.prod(shape[1:])


def _reads_channels(net: nn.Module, step: Step, channels: int) -> bool:
    """Whether `step`'s layer reads its input channels one weight slice each (no grouping
    other than depthwise with one filter per channel)."""
    layer = net.get_submodule(step.module)
    if isinstance(layer, nn.Linear):
        return layer.in_features % channels == 0
    if layer.groups == 1:
        return layer.in_channels == channels
    return layer.groups == layer.in_channels == layer.out_channels == channels


def _input_view(layer: nn.Module, pair: Pair) -> torch.Tensor:
    """The pair's second layer's weight as (rows, C, spatial, ...), input channel c on dim 1 (a
    view: writing to it writes the weight)."""
    weight = layer.weight
    if isinstance(layer, nn.Conv2d) and layer.groups > 1:  # depthwise: filter c reads channel c
        return weight.view(1, weight.shape[0], 1, *weight.shape[2:])
    return weight.view(weight.shape[0], -1, pair.spatial, *weight.shape[2:])


def input_ranges(layer: nn.Module, pair: Pair) -> torch.Tensor:
    """Largest |weight| reading each input channel of the pair's second layer, (C,)."""
    return _input_view(layer, pair).detach().abs().transpose(0, 1).flatten(1).amax(1)


@torch.no_grad()
def scale_channels(net: nn.Module, pair: Pair, scale: torch.Tensor) -> None:
    """Divide the pair's shared channels by `scale` (C,) > 0 in its first layer (weights and
    bias) and multiply the weights reading them in the second: the float network is unchanged."""
    first, second = net.get_submodule(pair.first), net.get_submodule(pair.second)
    first.weight.div_(scale.reshape(-1, *([1] * (first.weight.dim() - 1))))
    if first.bias is not None:
        first.bias.div_(scale)
    view = _input_view(second, pair)
    view.mul_(scale.reshape(1, -1, *([1] * (view.dim() - 2))))


@torch.no_grad()
def equalize(net: nn.Module, pairs: list[Pair], max_rounds: int = 100, tol: float = 1e-4) -> int:
    """Equalize `pairs` of `net` in place, round after round until every scale of a round is
    within `tol` of 1 (or `max_rounds`); returns the rounds run (0 when there are no pairs).

    Channels whose weights are all zero on either side (pruned) keep scale 1.
    """
    if not pairs:
        return 0
    for rounds in range(1, max_rounds + 1):
        if _equalize_round(net, pairs) < tol:
            return rounds
    return max_rounds


def _equalize_round(net: nn.Module, pairs: list[Pair]) -> float:
    """One pass over the pairs; returns the largest |log scale| it applied."""
    largest = 0.0
    for pair in pairs:
        r1 = net.get_submodule(pair.first).weight.detach().abs().flatten(1).amax(1)
        r2 = input_ranges(net.get_submodule(pair.second), pair)
        live = (r1 > 0) & (r2 > 0)
        scale = torch.where(live, torch.sqrt(r1 / torch.where(live, r2, 1.0)), 1.0)
        scale_channels(net, pair, scale)
        largest = max(largest, float(scale.log().abs().max()))
    return largest
