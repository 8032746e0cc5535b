"""Norm-based channel pruning: rank output channels by the L1, L2 or L-infinity norm of their
filters and remove the weakest physically.

The filter of channel c is every weight that produces c: the convolution's filter and, where
channels are tied (a DS-CNN depthwise kernel, the convolutions of a BC-ResNet stage), the
filters of the tied layers too, concatenated. Per layer (`scope="layer"`) each group loses
floor(amount * channels); globally (`scope="global"`) one ranking over all groups removes
floor(amount * all channels), comparing size-normalised norms (mean |w|, root-mean-square,
max |w|) so layers with larger filters are not favoured. A request that would empty a layer is
an error.

`sweep` prunes at several amounts, each with and without fine-tuning, and plots accuracy against
parameters, MACs and measured batch-1 latency; without fine-tuning accuracy falls off a cliff
well before the network is that much smaller, with fine-tuning most of it comes back.
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


def sweep(model: nn.Module, config, data, out_dir=None) -> dict:
    """Prune `model` at each of `config.amounts`, with and without fine-tuning.

    Args:
        model: the trained model (not changed).
        config: a `SweepConfig`.
        data: a `TrainingData` (validation accuracy and fine-tuning).
        out_dir: where sweep.json and sweep.png go (nothing written when None).

    Returns:
        {"method", "scope", "baseline": figures, "rows": [one figures dict per amount with
        "amount", "val_accuracy", "val_accuracy_fine_tuned", "latency_ms"]}.
    """
    from tinykws.progress import track

    if data is None:
        raise TinyKWSError("a pruning sweep measures accuracy; give it data (--data)")
    baseline = _measure(model, data, config)
    rows = []
    for amount in track(config.amounts, f"{config.method} sweep"):
        rows.append({"amount": amount, **_sweep_point(model, config, data, amount)})
        logger.info(
            f"sweep {amount:.2f}: accuracy {rows[-1]['val_accuracy']:.4f} without, "
            f"{rows[-1]['val_accuracy_fine_tuned']:.4f} with fine-tuning"
        )
    result = {"method": config.method, "scope": config.scope, "baseline": baseline, "rows": rows}
    if out_dir is not None:
        from tinykws.io import write_json

        write_json(out_dir / "sweep.json", result)
        plot_sweep(result, out_dir / "sweep.png")
    return result


def _sweep_point(model, config, data, amount: float) -> dict:
    from tinykws.prune import PRUNERS
    from tinykws.prune.config import PruneConfig
    from tinykws.prune.retrain import retrain
    from tinykws.prune.unstructured import finalize

    cfg = PruneConfig(
        method=config.method, amount=amount, scope=config.scope, retrain_enabled=False
    )
    pruned, _ = PRUNERS[config.method](model, cfg, data)
    point = _measure(pruned, data, config)
    retrain(pruned, data, config.fine_tune)
    finalize(pruned)
    point["val_accuracy_fine_tuned"] = _measure(pruned, data, config, latency=False)["val_accuracy"]
    return point


def _measure(model, data, config, latency: bool = True) -> dict:
    from tinykws.prune.measure import model_figures, torch_latency_ms, validation_accuracy

    figures = model_figures(model) | {"val_accuracy": validation_accuracy(model, data)}
    if latency:
        figures["latency_ms"] = torch_latency_ms(model, runs=config.latency_runs)
    return figures


def plot_sweep(result: dict, out_png) -> None:
    """Accuracy vs non-zero parameters, vs MACs, vs batch-1 latency; without and with fine-tuning
    on each panel, the unpruned model as a star."""
    from tinykws.io import save_figure
    from tinykws.plots import pyplot

    plt = pyplot()
    rows, base = result["rows"], result["baseline"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = (
        ("nonzero_params", "parameters (non-zero)"),
        ("macs", "MACs"),
        ("latency_ms", "batch-1 latency (ms)"),
    )
    for ax, (key, label) in zip(axes, panels):
        xs = [r[key] for r in rows]
        ax.plot(xs, [100 * r["val_accuracy"] for r in rows], "o-", label="pruned")
        ax.plot(
            xs,
            [100 * r["val_accuracy_fine_tuned"] for r in rows],
            "s-",
            label="pruned + fine-tuned",
        )
        ax.plot([base[key]], [100 * base["val_accuracy"]], "k*", ms=12, label="original")
        for r, x in zip(rows, xs):
            ax.annotate(
                f"{r['amount']:.2f}",
                (x, 100 * r["val_accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set(xlabel=label, ylabel="validation accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['method']} pruning ({result['scope']}): accuracy vs size and speed")
    save_figure(fig, out_png)
