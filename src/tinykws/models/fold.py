"""BatchNorm folding: a conv or linear layer followed by BatchNorm (inference statistics) equals
one conv or linear layer with scaled weights and a shifted bias.

    BN(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta
                = (W * f) x + (beta + (b - mean) * f),      f = gamma / sqrt(var + eps)

per output channel. Folding is exact in real arithmetic; in float32 it agrees to rounding
(tested at atol 1e-5 on normalised inputs).

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    >>> _ = model[1].running_mean.uniform_(-1, 1), model[1].running_var.uniform_(0.5, 2)
    >>> folded = fold_batchnorm(model)
    >>> type(folded[1]).__name__, folded[0].bias is not None
    ('Identity', True)
    >>> x = torch.randn(2, 1, 8, 8)
    >>> bool(torch.allclose(folded(x), model(x), atol=1e-5))
    True
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn


def folded_weight_bias(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight * f, beta + (bias - mean) * f) with f = gamma / sqrt(running_var + eps).

    Differentiable in weight, bias, gamma and beta (QAT trains through it). `weight` has the
    output channels on dim 0 (conv (C_out, C_in/groups, KH, KW), linear (C_out, C_in)).
    """
    factor = bn_factor(bn)
    beta = bn.bias if bn.affine else torch.zeros_like(factor)
    shift = bias - bn.running_mean if bias is not None else -bn.running_mean
    w = weight * factor.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, beta + shift * factor


def subspectral_weight_bias(
    weight: torch.Tensor, bias: torch.Tensor | None, ssn: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """A depthwise conv (C, 1, KH, KW) followed by a SubSpectralNorm of S sub-bands, folded into
    S depthwise convs: weight (C*S, 1, KH, KW) and bias (C*S,), entry c*S + s for band s.

    Run as one conv with groups=C (depth multiplier S), output channel c*S + s is channel c of
    band s; `band_select` then keeps, for every bin, the channel of the band it lies in.
    """
    bands = ssn.num_subbands
    weight = weight.repeat_interleave(bands, dim=0)
    if bias is not None:
        bias = bias.repeat_interleave(bands, dim=0)
    return folded_weight_bias(weight, bias, ssn.bn)


def band_select(y: torch.Tensor, bands: int) -> torch.Tensor:
    """(N, C*S, H, W) -> (N, C, H, W): bin w takes channel c*S + s of its band s = w // (W/S)."""
    n, channels, height, width = y.shape
    y = y.reshape(n, channels // bands, bands, height, width)
    band = torch.arange(width, device=y.device) // (width // bands)
    index = band.reshape(1, 1, 1, 1, width).expand(n, channels // bands, 1, height, width)
    return y.gather(2, index).squeeze(2)


def bn_factor(bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """gamma / sqrt(running_var + eps), per channel."""
    std = torch.sqrt(bn.running_var + bn.eps)
    return (bn.weight if bn.affine else torch.ones_like(std)) / std


@torch.no_grad()
def fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold `bn` into `layer` (Conv2d or Linear) in place; the layer gains a bias if it had none."""
    weight, bias = folded_weight_bias(layer.weight, layer.bias, bn)
    layer.weight.copy_(weight)
    if layer.bias is None:
        layer.bias = nn.Parameter(bias.detach().clone())
    else:
        layer.bias.copy_(bias)


def fold_steps(net: nn.Module, steps) -> None:
    """Fold the BatchNorm of every traced step (`tinykws.models.trace.Step.bn`) into its layer
    for good: the BatchNorm becomes Identity and the step forgets it."""
    for step in steps:
        if step.bn:
            fold_into(net.get_submodule(step.module), net.get_submodule(step.bn))
            replace_module(net, step.bn, nn.Identity())
            step.bn = ""


def layer_weight_bias(net: nn.Module, step) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced step's (folded) float weight and bias (zeros when the layer has none); one set
    per sub-band after a SubSpectralNorm (see `subspectral_weight_bias`)."""
    layer = net.get_submodule(step.module)
    if step.ssn:
        return subspectral_weight_bias(layer.weight, layer.bias, net.get_submodule(step.ssn))
    if step.bn:
        return folded_weight_bias(layer.weight, layer.bias, net.get_submodule(step.bn))
    bias = layer.bias
    if bias is None:
        bias = torch.zeros(layer.weight.shape[0], device=layer.weight.device)
    return layer.weight, bias


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` at dotted `path` inside `root`."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def fold_pairs(root: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each (layer path, BatchNorm path) pair in place; the BatchNorm becomes Identity."""
    for layer_path, bn_path in pairs:
        fold_into(root.get_submodule(layer_path), root.get_submodule(bn_path))
        replace_module(root, bn_path, nn.Identity())


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, BatchNorm) paths where a BatchNorm reads only the output of a Conv2d / Linear."""
    graph = fx.symbolic_trace(model).graph
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(
            model.get_submodule(node.target), (nn.BatchNorm1d, nn.BatchNorm2d)
        ):
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(model.get_submodule(source.target), (nn.Conv2d, nn.Linear))
            and len(source.users) == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every conv/linear -> BatchNorm pair folded.

    BatchNorms that do not follow a conv or linear layer (e.g. BC-ResNet's SubSpectralNorm) are
    left as they are. The copy keeps the module tree, so its layers have the same paths.
    """
    folded = copy.deepcopy(model).eval()
    fold_pairs(folded, conv_bn_pairs(folded))
    return folded
