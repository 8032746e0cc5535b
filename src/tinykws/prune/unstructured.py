"""Unstructured magnitude pruning: zero the smallest weights, keep them zero while fine-tuning.

Every convolution and fully connected weight (biases and norms excluded) gets a 0/1 mask. The
mask keeps the `1 - amount` largest |w| (L1 magnitude), counted per layer (`scope="layer"`) or
over all weights of the network at once (`scope="global"`). Masks are attached with
`torch.nn.utils.parametrize`: the layer's `weight` becomes `original * mask`, so the optimizer
updates `original` while every pruned weight stays exactly 0. `finalize` bakes the masks in and
leaves an ordinary model (same architecture, zeros in the weights); the zeros make the model
smaller only once it is compressed or stored sparsely, not faster on dense kernels.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
    >>> apply_magnitude_masks(model, 0.5)
    >>> round(sparsity(model)["total"], 2)
    0.5
    >>> _ = finalize(model)
    >>> round(sparsity(model)["total"], 2)
    0.5
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from tinykws.errors import TinyKWSError
from tinykws.prune.config import SCOPES, check_amount
from tinykws.prune.surgery import clone_model

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


class WeightMask(nn.Module):
    """Parametrization weight -> weight * mask; `mask` is a 0/1 buffer of the weight's shape."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> every Conv2d / Linear layer, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the layer computes with (masked, when a mask is attached)."""
    return layer.weight.detach()


def magnitude_masks(
    model: nn.Module, amount: float, scope: str = "layer"
) -> dict[str, torch.Tensor]:
    """0/1 masks removing the `amount` fraction of smallest-|w| weights, per layer or globally.

    Weights that are already zero (an earlier mask) are the smallest, so masks only grow.
    Exactly floor(amount * n) weights are removed (ties broken by position).
    """
    check_amount("amount", amount)
    if scope not in SCOPES:
        raise TinyKWSError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    layers = weight_layers(model)
    if not layers:
        raise TinyKWSError(f"{type(model).__name__}: nothing to prune (no conv or FC weights)")
    magnitudes = {name: effective_weight(m).abs().flatten() for name, m in layers.items()}
    if scope == "layer":
        return {
            name: _keep_largest(mag, amount).view_as(layers[name].weight)
            for name, mag in magnitudes.items()
        }
    flat = _keep_largest(torch.cat(list(magnitudes.values())), amount)
    masks, start = {}, 0
    for name, mag in magnitudes.items():
        masks[name] = flat[start : start + mag.numel()].view_as(layers[name].weight)
        start += mag.numel()
    return masks


def _keep_largest(magnitude: torch.Tensor, amount: float) -> torch.Tensor:
    remove = int(amount * magnitude.numel())
    mask = torch.ones_like(magnitude)
    if remove:
        mask[torch.topk(magnitude, remove, largest=False).indices] = 0.0
    return mask


def apply_magnitude_masks(model: nn.Module, amount: float, scope: str = "layer") -> None:
    """Attach (or update) magnitude masks on every conv / FC weight of `model`, in place."""
    masks = magnitude_masks(model, amount, scope)
    set_masks(model, masks)


def set_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Attach `masks` (layer name -> 0/1 tensor), replacing the masks already attached."""
    layers = weight_layers(model)
    for name, mask in masks.items():
        layer = layers[name]
        mask = mask.to(layer.weight.device, layer.weight.dtype)
        if parametrize.is_parametrized(layer, "weight"):
            layer.parametrizations.weight[0].mask.copy_(mask)
        else:
            parametrize.register_parametrization(layer, "weight", WeightMask(mask))


def finalize(model: nn.Module) -> nn.Module:
    """Bake attached masks into the weights and remove them; returns `model` (changed in place)."""
    for layer in weight_layers(model).values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights per conv / FC layer, and "total" over all of them."""
    result, zeros, total = {}, 0, 0
    for name, layer in weight_layers(model).items():
        weight = effective_weight(layer)
        layer_zeros = int((weight == 0).sum())
        result[name] = layer_zeros / weight.numel()
        zeros, total = zeros + layer_zeros, total + weight.numel()
    result["total"] = zeros / max(total, 1)
    return result


def magnitude_prune(model: nn.Module, config, data=None, work_dir=None) -> tuple[nn.Module, dict]:
    """`prune` entry for method "magnitude": a masked copy of `model` (masks stay attached so
    fine-tuning keeps the zeros; `tinykws.prune.prune` finalizes after retraining)."""
    pruned = clone_model(model)
    apply_magnitude_masks(pruned, config.amount, config.scope)
    return pruned, {"sparsity": sparsity(pruned)}
