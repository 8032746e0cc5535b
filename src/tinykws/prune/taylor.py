"""Taylor filter pruning (Molchanov et al., ICLR 2017), as MATLAB's taylorPrunableNetwork does it.

`TaylorPrunable(model)` is a prunable view of a network: it masks output channels (filters)
without changing the architecture and captures, at every layer that produces a prunable channel,
the masked activation a and its gradient g = dLoss/da. Its object functions are MATLAB's:
`forward`, `predict`, `update_score`, `update_prunables(max_to_prune)`, `num_prunables` and
`to_network()` (the physically smaller network, built from a new config).

Importance of channel c of a group, accumulated over mini-batches b:

    score[c] += (1/B) sum_{n in batch b} sum_{p in points(c)} | sum_{h,w} a[n,c,h,w] g[n,c,h,w] |

The inner sum runs over the spatial positions (time x frequency) of the feature map; points(c)
are the layers that carry channel c and are read for scores: norm layers (BatchNorm,
SubSpectralNorm), and convolutions / FCs whose output does not go straight into a norm layer. A
plain CNN has one point per filter (its BatchNorm); a DS-CNN channel is also scored after the
depthwise conv it feeds; a BC-ResNet stage channel at every block of the stage. This is the
first-order Taylor estimate of the loss change when the feature map is zeroed. With
`normalize`, each group's scores are divided by their L2 norm before ranking (Molchanov's
per-layer normalisation); otherwise raw scores are compared network-wide, as MATLAB does.

The loop (`taylor_prune`): for each of `max_iterations` iterations, reset the SGD-momentum
velocity, fine-tune for `minibatches` mini-batches while accumulating scores, mask the (at most)
`max_to_prune` lowest-scored channels network-wide (a layer keeps at least one), and measure
validation accuracy; stop early when fewer than `min_prunables` filters remain. Then the masked
channels are removed physically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinykws.data.augment import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.io import save_figure
from tinykws.log import logger
from tinykws.models import count_macs
from tinykws.plots import pyplot
from tinykws.progress import track
from tinykws.prune.measure import validation_accuracy
from tinykws.prune.surgery import ChannelMasks, clone_model, find_channel_groups, remove_channels
from tinykws.train.loop import TrainConfig, pick_device, training_inputs


class TaylorPrunable(nn.Module):
    """A network whose filters can be masked and scored by first-order Taylor importance.

    Example:
        >>> from tinykws.models import build_model, model_config
        >>> net = TaylorPrunable(build_model(model_config("tinyconv", 4, (49, 40))))
        >>> loss = net(torch.randn(8, 1, 49, 40)).logsumexp(1).mean()
        >>> loss.backward()
        >>> net.update_score()
        >>> net.update_prunables(max_to_prune=3)
        3
        >>> net.num_prunables, net.to_network().config.filters
        (5, 5)
    """

    def __init__(self, model: nn.Module, normalize: bool = False):
        super().__init__()
        self.network = clone_model(model)
        self.groups = find_channel_groups(self.network)
        if not self.groups:
            raise TinyKWSError(
                f"{model.config.family}: nothing prunable (no layer has two or more filters)"
            )
        self.masks = ChannelMasks(self.network, self.groups)
        self.masks.capture = self._capture
        self.normalize = normalize
        self._captured: list = []
        for index, group in enumerate(self.groups):
            self.register_buffer(f"score{index}", torch.zeros(group.size), persistent=False)
        self.channel_of = [
            {p.name: torch.tensor(p.channel_of) for p in g.points} for g in self.groups
        ]

    def _capture(self, index: int, point, activation: torch.Tensor) -> None:
        if activation.requires_grad:
            activation.retain_grad()
            self._captured.append((index, point.name, activation))

    def score(self, index: int) -> torch.Tensor:
        """Accumulated scores of group `index`, shape (size,)."""
        return getattr(self, f"score{index}")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of the masked network; records activations for `update_score`."""
        self._captured = []
        return self.network(inputs)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of the masked network in eval mode (no recording)."""
        was_training = self.network.training
        try:
            return self.network.eval()(inputs)
        finally:
            self.network.train(was_training)

    @torch.no_grad()
    def update_score(self) -> None:
        """Add this mini-batch's Taylor scores (call after `loss.backward()`)."""
        for index, name, activation in self._captured:
            if activation.grad is None:
                continue
            product = activation * activation.grad
            if product.dim() > 2:
                product = product.sum(dim=tuple(range(2, product.dim())))
            channels = self.channel_of[index][name].to(product.device)
            self.score(index).index_add_(0, channels, product.abs().mean(0))
        self._captured = []

    def alive(self, index: int) -> torch.Tensor:
        """Bool (size,) of the channels of group `index` not yet masked."""
        return self.masks.mask(index) > 0

    @property
    def num_prunables(self) -> int:
        """Filters still in the network, over all prunable layers."""
        return sum(int(self.alive(i).sum()) for i in range(len(self.groups)))

    def update_prunables(self, max_to_prune: int = 8) -> int:
        """Mask the lowest-scored filters (at most `max_to_prune`; every layer keeps one) and
        reset the scores. Returns how many were masked."""
        candidates = []
        for index in range(len(self.groups)):
            alive = self.alive(index)
            ranked = self.score(index).clone()
            if self.normalize:
                ranked = ranked / (ranked[alive].norm() + 1e-12)
            for channel in torch.nonzero(alive).flatten().tolist():
                candidates.append((float(ranked[channel]), index, channel))
        left = {i: int(self.alive(i).sum()) - 1 for i in range(len(self.groups))}
        chosen = 0
        for _, index, channel in sorted(candidates):
            if chosen == max_to_prune:
                break
            if left[index] > 0:
                self.masks.mask(index)[channel] = 0.0
                left[index] -= 1
                chosen += 1
        for index in range(len(self.groups)):
            self.score(index).zero_()
        return chosen

    def to_network(self) -> nn.Module:
        """The physically pruned network (new config, kept weights), equal to the masked one."""
        return remove_channels(self.network, self.masks.removed(), self.groups)


@dataclass
class _BatchSource:
    """Endless shuffled training mini-batches, read the way `tinykws.train.loop` reads them."""

    data: object
    cfg: object  # a TrainConfig (for its augment settings)
    device: torch.device
    noise: torch.Tensor
    batch_size: int
    seed: int

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        n, epoch = len(self.data.train_labels), 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            # Whole batches only (one short batch when the split is smaller than a batch).
            for start in range(0, max(n - self.batch_size + 1, 1), self.batch_size):
                index = np.sort(order[start : start + self.batch_size])
                labels = torch.from_numpy(np.asarray(self.data.train_labels)[index])
                yield training_inputs(index, self, gen), labels.to(self.device)
            epoch += 1


def _batch_source(data, cfg, device) -> _BatchSource:
    train_cfg = TrainConfig(augment=AugmentConfig(enabled=cfg.augment))
    noise = torch.from_numpy(np.asarray(data.noise, dtype=np.float32))
    return _BatchSource(data, train_cfg, device, noise, cfg.batch_size, cfg.seed)


def taylor_prune(model: nn.Module, config, data=None, work_dir=None) -> tuple[nn.Module, dict]:
    """`prune` entry for method "taylor": the loop described in the module docstring.

    Returns the physically pruned network and a report with the progress history: "loss" (one
    value per mini-batch), "val_accuracy" and "prunables" (index 0 = before pruning, then one
    per iteration), "macs_removed" (fraction of the MACs gone after each iteration) and
    "removed" (filters removed per layer).
    """
    if data is None:
        raise TinyKWSError("Taylor pruning fine-tunes while it scores; give it training data")
    cfg = config.taylor
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    prunable = TaylorPrunable(model, cfg.normalize).to(device)
    weights = torch.as_tensor(
        data.loss_weights(unknown_weight=cfg.unknown_weight), dtype=torch.float32, device=device
    )
    batches = iter(_batch_source(data, cfg, device))
    history = {
        "loss": [],
        "val_accuracy": [validation_accuracy(prunable.network, data)],
        "prunables": [prunable.num_prunables],
        "macs_removed": [0.0],
    }
    macs_before = count_macs(model)
    for _ in track(range(cfg.max_iterations), "Taylor pruning"):
        if prunable.num_prunables < cfg.min_prunables:
            break
        _retrain_and_score(prunable, batches, weights, cfg, history)
        prunable.update_prunables(cfg.max_to_prune)
        history["val_accuracy"].append(validation_accuracy(prunable.network, data))
        history["prunables"].append(prunable.num_prunables)
        history["macs_removed"].append(1.0 - count_macs(prunable.to_network()) / macs_before)
        logger.info(
            f"taylor: {history['prunables'][-1]} filters left, "
            f"{100 * history['macs_removed'][-1]:.1f}% of the MACs removed, validation accuracy "
            f"{history['val_accuracy'][-1]:.4f}"
        )
        if cfg.target_macs and history["macs_removed"][-1] >= cfg.target_macs:
            break
    removed = {name: len(idxs) for name, idxs in prunable.masks.removed().items()}
    network = prunable.to_network()
    return network, {
        "history": history,
        "removed": removed,
        "iterations": len(history["prunables"]) - 1,
    }


def _retrain_and_score(prunable: TaylorPrunable, batches, weights, cfg, history) -> None:
    # A fresh optimizer per iteration: the momentum velocity starts at zero, as in MATLAB.
    optimizer = torch.optim.SGD(prunable.network.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    prunable.network.train()
    for _ in range(cfg.minibatches):
        inputs, labels = next(batches)
        loss = F.cross_entropy(prunable(inputs), labels, weight=weights)
        if not torch.isfinite(loss):
            raise TinyKWSError("Taylor fine-tuning diverged (loss is NaN); lower prune.taylor.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        prunable.update_score()
        optimizer.step()
        history["loss"].append(loss.item())


def plot_taylor_progress(history: dict, out_png, minibatches: int) -> None:
    """MATLAB's three panels: mini-batch loss while fine-tuning, validation accuracy after each
    pruning iteration, and prunable filters left."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(np.arange(1, len(history["loss"]) + 1), history["loss"], lw=0.8)
    for boundary in range(minibatches, len(history["loss"]), minibatches):
        axes[0].axvline(boundary + 0.5, color="grey", lw=0.4, ls=":")
    axes[0].set(xlabel="mini-batch", ylabel="loss", title="fine-tuning loss")
    iterations = np.arange(len(history["val_accuracy"]))
    axes[1].plot(iterations, 100 * np.asarray(history["val_accuracy"]), marker="o")
    axes[1].set(xlabel="pruning iteration", ylabel="accuracy (%)", title="validation accuracy")
    axes[2].plot(iterations, history["prunables"], marker="o", color="#c44e52")
    axes[2].set(xlabel="pruning iteration", ylabel="filters", title="prunable filters left")
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, out_png)
