"""Norm-based channel pruning: rank output channels by the L1, L2 or L-infinity norm of their
filters and remove the weakest physically.

The filter of channel c is every weight that produces c: the convolution's filter and, where
channels are tied (a DS-CNN depthwise kernel, the convolutions of a BC-ResNet stage), the
filters of the tied layers too, concatenated. Per layer (`scope="layer"`) each group loses
floor(amount * channels); globally (`scope="global"`) one ranking over all groups removes
floor(amount * all channels), comparing size-normalised norms (mean |w|, root-mean-square,
max |w|) so layers with larger filters are not favoured. A request that would empty a layer is
an error.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.prune.surgery import ChannelGroup, find_channel_groups, remove_channels

NORMS = {
    "l1": lambda rows: rows.abs().sum(1),
    "l2": lambda rows: rows.pow(2).sum(1).sqrt(),
    "linf": lambda rows: rows.abs().amax(1),
}
# Divides a norm of k weights so filters of different sizes compare (global ranking).
SIZE_SCALE = {"l1": lambda k: k, "l2": math.sqrt, "linf": lambda k: 1.0}


@torch.no_grad()
def filter_rows(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """(size, K) float: row c holds every weight producing channel c of `group`."""
    points = {p.name: p for p in group.points}
    parts = []
    for name in group.filters:
        weight = model.get_submodule(name).weight.detach()
        rows = torch.zeros(group.size, weight[0].numel(), device=weight.device)
        rows[torch.tensor(points[name].channel_of, device=weight.device)] = weight.flatten(1)
        parts.append(rows)
    return torch.cat(parts, dim=1)


def channel_norms(
    model: nn.Module, groups: list[ChannelGroup], norm: str, size_normalised: bool = False
) -> list[torch.Tensor]:
    """Per group, the `norm` ("l1", "l2", "linf") of each channel's filter, shape (size,);
    divided by the filter size's scale (`SIZE_SCALE`) when `size_normalised`."""
    norms = []
    for group in groups:
        rows = filter_rows(model, group)
        scale = SIZE_SCALE[norm](rows.shape[1]) if size_normalised else 1.0
        norms.append(NORMS[norm](rows) / scale)
    return norms


def select_channels(
    norms: list[torch.Tensor], groups: list[ChannelGroup], amount: float, scope: str, norm: str
) -> dict[str, list[int]]:
    """Group name -> indices of the channels to remove (the lowest norms)."""
    if scope == "layer":
        return {
            g.name: torch.argsort(v)[: int(amount * g.size)].tolist() for g, v in zip(groups, norms)
        }
    ranked = []
    for g, values in zip(groups, norms):
        ranked += [(float(v), g.name, c) for c, v in enumerate(values)]
    total = sum(g.size for g in groups)
    chosen: dict[str, list[int]] = {g.name: [] for g in groups}
    for _, name, channel in sorted(ranked)[: int(amount * total)]:
        chosen[name].append(channel)
    for g in groups:
        if len(chosen[g.name]) >= g.size:
            raise TinyKWSError(
                f"{g.name}: global {norm} pruning of {amount:.0%} would remove all {g.size} of its "
                "channels; lower the amount or use scope 'layer'"
            )
    return chosen


def norm_prune(model: nn.Module, config, data=None, work_dir=None) -> tuple[nn.Module, dict]:
    """`prune` entry for methods "l1", "l2", "linf": remove `config.amount` of the channels."""
    groups = find_channel_groups(model)
    if not groups:
        raise TinyKWSError(
            f"{model.config.family}: nothing prunable (no layer has two or more channels)"
        )
    norms = channel_norms(model, groups, config.method, size_normalised=config.scope == "global")
    removed = select_channels(norms, groups, config.amount, config.scope, config.method)
    if not any(removed.values()):
        logger.warning(f"{config.method} pruning of {config.amount:.0%} removes no channel")
    pruned = remove_channels(model, removed, groups)
    return pruned, {"removed": {name: len(idxs) for name, idxs in removed.items()}}
