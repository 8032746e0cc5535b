"""Channel surgery: find the coupled channel groups of a network, mask them, remove them.

Removing output channel c of a layer also removes everything coupled to it: the BatchNorm entry,
the next convolution's input channel, the matching depthwise filter (DS-CNN), the FC inputs fed
by c after a flatten or a pool, and every channel tied to c by a residual addition (BC-ResNet,
where a whole stage shares its channels). Torch-Pruning's `DependencyGraph` traces the network
and finds these couplings; tinykws adds only a pruner for BC-ResNet's `SubSpectralNorm` (channel
c owns BatchNorm features c*S .. c*S+S-1) and the rebuild from data.

Three views of the same decision (remove channels `idxs` of group `g`):

- `ChannelMasks`: the *masked* network. A forward hook multiplies the output of every layer that
  produces g's channels (convolutions, BatchNorms, SubSpectralNorm, hidden FCs) by a 0/1 mask, so
  a removed channel is exactly 0 wherever it flows (ReLU/SiLU/max/average of 0 are 0, and a zero
  input contributes nothing to the next layer).
- `remove_channels`: the *physically smaller* network. Torch-Pruning slices every coupled
  tensor; the result is rebuilt with `build_model(config_of(pruned))` (architecture is data) and
  the kept weights, and checked to give the masked network's outputs.
- The new config: only its width fields differ from the original's.

The last `nn.Linear` (the classifier) keeps its outputs; every other convolution and hidden FC
is a root of a group. A group never loses its last channel.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> model = build_model(model_config("dscnn_s", 12, (49, 10)))
    >>> groups = find_channel_groups(model)
    >>> [(g.name, g.size) for g in groups][:2]
    [('first.conv', 64), ('blocks.0.pointwise.conv', 64)]
    >>> smaller = remove_channels(model, {"first.conv": range(32)})
    >>> smaller.config.first_filters
    32
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch_pruning as tp
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models import build_model, config_of
from tinykws.models.bcresnet import SubSpectralNorm

# Layers whose outputs carry a group's channels and get masked.
CHANNEL_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, SubSpectralNorm)
NORM_LAYERS = (nn.BatchNorm2d, SubSpectralNorm)
ROOT_TYPES = (nn.Conv2d, nn.Linear)


class SubSpectralNormPruner(tp.pruner.function.BasePruningFunc):
    """Torch-Pruning handler for `SubSpectralNorm`: channel c owns BN features c*S .. c*S+S-1."""

    TARGET_MODULES = (SubSpectralNorm,)

    def prune_out_channels(self, layer: SubSpectralNorm, idxs: Sequence[int]) -> nn.Module:
        s = layer.num_subbands
        features = [c * s + k for c in sorted(idxs) for k in range(s)]
        tp.prune_batchnorm_out_channels(layer.bn, features)
        return layer

    prune_in_channels = prune_out_channels  # channel-wise: in and out are the same channels

    def get_out_channels(self, layer: SubSpectralNorm) -> int:
        return layer.bn.num_features // layer.num_subbands

    get_in_channels = get_out_channels


CUSTOM_PRUNERS = {SubSpectralNorm: SubSpectralNormPruner()}


@dataclass(frozen=True)
class MaskPoint:
    """A layer producing a group's channels: output channel j is the group's `channel_of[j]`."""

    name: str
    channel_of: tuple[int, ...]
    scored: bool  # where Taylor scores are read (not a conv whose output goes straight to a norm)


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels that can only be removed together.

    Attributes:
        name: the root layer's module name (its output channels index the group).
        size: number of channels.
        points: every layer whose output carries these channels (masked together).
        filters: names of the convolutions / FCs whose output filters make these channels
            (their weights are what L1/L2/Linf ranking measures).
    """

    name: str
    size: int
    points: tuple[MaskPoint, ...]
    filters: tuple[str, ...]


def dependency_graph(model: nn.Module) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of a tinykws model, traced on a zero input."""
    frames, bins = model.config.input_shape
    device = next(model.parameters()).device
    was_training = model.training
    graph = tp.DependencyGraph()
    for layer_type, pruner in CUSTOM_PRUNERS.items():
        graph.register_customized_layer(layer_type, pruner)
    with torch.enable_grad():  # Torch-Pruning traces through autograd
        graph.build_dependency(model, example_inputs=torch.zeros(1, 1, frames, bins, device=device))
    model.train(was_training)  # tracing switches the model to eval mode
    return graph


def output_layer(model: nn.Module) -> nn.Module:
    """The classifier: the last `nn.Linear` of the model (its outputs are the classes)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TinyKWSError(f"{type(model).__name__}: no fully connected output layer found")
    return linears[-1]


def find_channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """Every group of coupled output channels (size >= 2) that may lose channels, in model order."""
    graph = dependency_graph(model)
    names = {module: name for name, module in model.named_modules()}
    order = {name: i for i, name in enumerate(names.values())}
    groups = []
    for group in graph.get_all_groups([output_layer(model)], ROOT_TYPES):
        # Name (and index) the group by its first filter layer in model order, e.g. DS-CNN's
        # first conv rather than the depthwise conv whose channels are tied to it.
        members = [item.dep.target.module for item in group]
        root = min(
            (m for m in members if isinstance(m, ROOT_TYPES) and m in names),
            key=lambda m: order[names[m]],
        )
        pruner = graph.get_pruner_of_module(root)
        size = pruner.get_out_channels(root)
        if size >= 2:
            group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(size)))
            found = _channel_group(graph, group, names, size)
            if found is not None:
                groups.append(found)
    return sorted(groups, key=lambda g: order[g.name])


def _channel_group(graph, group, names: dict, size: int) -> ChannelGroup | None:
    # None when a layer shares only some of its channels with the group (e.g. a concatenation):
    # such channels cannot be masked one-to-one, so the group is left alone.
    points, filters, seen = [], [], set()
    for item in group:
        module = item.dep.target.module
        name = names.get(module)
        if name is None or name in seen or not isinstance(module, CHANNEL_LAYERS):
            continue
        if not graph.is_out_channel_pruning_fn(item.dep.handler):
            continue
        seen.add(name)
        channel_of = [-1] * graph.get_out_channels(module)
        for idx, root_idx in zip(item.idxs, item.root_idxs):
            channel_of[idx] = root_idx
        if -1 in channel_of:
            return None
        feeds_norm = any(isinstance(m, NORM_LAYERS) for m in _next_layers(graph, module, names))
        points.append(MaskPoint(name, tuple(channel_of), scored=not feeds_norm))
        if isinstance(module, ROOT_TYPES):
            filters.append(name)
    return ChannelGroup(names[group[0].dep.target.module], size, tuple(points), tuple(filters))


def _next_layers(graph, module: nn.Module, names: dict) -> list[nn.Module]:
    """The model layers that consume `module`'s output, looking through reshapes and the like."""
    found, stack, seen = [], list(graph.module2node[module].outputs), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.module in names:
            found.append(node.module)
        else:
            stack.extend(node.outputs)
    return found


class ChannelMasks(nn.Module):
    """0/1 masks over the channels of each group, applied by forward hooks on `model`.

    `mask(i)` is a float buffer (groups[i].size,) of 0 (removed) and 1 (kept). `capture`, when
    set, is called as capture(group_index, point, masked_output) for every scored point, which
    is how Taylor pruning reads activations. `remove()` takes the hooks off again.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup]):
        super().__init__()
        self.groups = list(groups)
        device = next(model.parameters()).device
        for index, group in enumerate(self.groups):
            self.register_buffer(f"mask{index}", torch.ones(group.size, device=device))
        self.capture = None
        self._handles = []
        for index, group in enumerate(self.groups):
            for point in group.points:
                channel_of = torch.tensor(point.channel_of, device=device)
                hook = partial(self._mask_output, index, point, channel_of)
                self._handles.append(model.get_submodule(point.name).register_forward_hook(hook))

    def mask(self, index: int) -> torch.Tensor:
        """The 0/1 mask of group `index`, shape (size,)."""
        return getattr(self, f"mask{index}")

    def _mask_output(self, index, point, channel_of, _module, _inputs, output):
        mask = self.mask(index)[channel_of.to(output.device)]
        masked = output * mask.view(1, -1, *[1] * (output.dim() - 2))
        if self.capture is not None and point.scored:
            self.capture(index, point, masked)
        return masked

    def set_removed(self, removed: dict[str, Iterable[int]]) -> None:
        """Mask the channels `removed[group name]` (and unmask all others)."""
        by_name = {g.name: i for i, g in enumerate(self.groups)}
        for index in range(len(self.groups)):
            self.mask(index).fill_(1.0)
        for name, idxs in removed.items():
            idxs = list(idxs)
            if idxs:
                self.mask(by_name[name])[torch.tensor(idxs)] = 0.0

    def removed(self) -> dict[str, list[int]]:
        """Group name -> masked channel indices."""
        return {
            g.name: torch.nonzero(self.mask(i) == 0).flatten().tolist()
            for i, g in enumerate(self.groups)
        }

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def clone_model(model: nn.Module) -> nn.Module:
    """A fresh copy rebuilt from the model's config and weights (no hooks, no parametrizations)."""
    copy = build_model(model.config)
    copy.load_state_dict(model.state_dict())
    device = next(model.parameters()).device
    return copy.to(device).train(model.training)


def remove_channels(
    model: nn.Module, removed: dict[str, Iterable[int]], groups: list[ChannelGroup] | None = None
) -> nn.Module:
    """A new, physically smaller model without the channels `removed[group name]`.

    The result is built from a new config (`config_of`: the same architecture with the new
    widths) and loaded with the kept weights, then checked against the masked network.
    `groups` (`find_channel_groups(model)`, if the caller has them) saves tracing it again.

    Raises:
        TinyKWSError: an unknown group, an index out of range, or a request that would leave
            a layer with no channels.
    """
    removed = {name: sorted(set(int(i) for i in idxs)) for name, idxs in removed.items()}
    work = clone_model(model)
    graph = dependency_graph(work)
    for name, idxs in removed.items():
        if idxs:
            _prune_group(graph, work, name, idxs)
    rebuilt = build_model(config_of(work))
    rebuilt.load_state_dict(work.state_dict())
    rebuilt.to(next(model.parameters()).device).train(model.training)
    check_equivalent(model, rebuilt, removed, groups)
    return rebuilt


def _prune_group(graph, work: nn.Module, name: str, idxs: list[int]) -> None:
    try:
        root = work.get_submodule(name)
    except AttributeError:
        raise TinyKWSError(f"{name}: no such layer in {work.config.family}") from None
    pruner = graph.get_pruner_of_module(root)
    size = pruner.get_out_channels(root)
    if idxs[0] < 0 or idxs[-1] >= size:
        raise TinyKWSError(f"{name}: channel indices must be in 0..{size - 1}; got {idxs}")
    if len(idxs) >= size:
        raise TinyKWSError(
            f"{name}: removing {len(idxs)} of its {size} channels would leave the layer empty; "
            "prune less (a layer keeps at least one channel)"
        )
    group = graph.get_pruning_group(root, pruner.prune_out_channels, idxs)
    group.prune()


def masked_copy(model: nn.Module, removed: dict[str, Iterable[int]], groups=None) -> nn.Module:
    """A copy of `model` whose `removed` channels are masked (hooks) instead of removed."""
    copy = clone_model(model)
    masks = ChannelMasks(copy, groups or find_channel_groups(copy))
    masks.set_removed(removed)  # the hooks hold the masks, so they live as long as the copy
    return copy


@torch.no_grad()
def check_equivalent(model: nn.Module, rebuilt: nn.Module, removed: dict, groups=None) -> None:
    """Raise if `rebuilt` and the masked `model` disagree on a random batch (eval mode)."""
    reference = masked_copy(model, removed, groups).eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, 1, *model.config.input_shape, generator=gen).to(device)
    expected = reference(inputs)
    was_training = rebuilt.training
    got = rebuilt.eval()(inputs)
    rebuilt.train(was_training)
    scale = float(expected.abs().max()) + 1.0
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale):
        error = float((got - expected).abs().max())
        raise RuntimeError(f"channel surgery changed the outputs by {error:.3g}; this is a bug")
