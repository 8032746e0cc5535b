"""Per-layer summary of a model: output shape, parameters and multiply-accumulates (MACs).

One forward pass of a single zero input (batch 1, the config's input shape, eval mode, no
gradients) with forward hooks on the leaf modules. MACs per sample:

- Conv2d: output elements x (in_channels / groups) x kernel_h x kernel_w
  (dilation and padding do not change the count; padded zeros are counted as multiplies);
- Linear: in_features x out_features per output row;
- everything else (BatchNorm, activations, pools, dropout, reshapes): 0 — they keep a row so
  the shapes can be followed, but they are cheap or, for BatchNorm, folded away on deployment.

Functional operations inside `forward` (residual adds, reshapes) have no row. A module whose
class sets `summary_leaf = True` (SubSpectralNorm) is one row with its children inside it, and so
is a layer whose weight is parametrized (a magnitude-pruning mask): its MACs are the dense
layer's, as the mask leaves the layer's shape (and a dense kernel's work) unchanged.

Example:
    >>> from tinykws.models import build_model
    >>> rows = summary(build_model("tinyconv"))
    >>> [(r.name, r.output_shape, r.macs) for r in rows if r.type == "Conv2d"]
    [('conv.conv', (8, 25, 20), 320000)]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize


@dataclass(frozen=True)
class LayerRow:
    """One layer of a summary. `output_shape` excludes the batch dimension."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates one sample costs in `module`, given its output for a batch of 1."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out, skip = [], ()
    for name, module in model.named_modules():
        if skip and name.startswith(skip):
            continue
        if getattr(module, "summary_leaf", False) or parametrize.is_parametrized(module):
            out.append((name, module))
            skip = name + "."
        elif not any(True for _ in module.children()):
            out.append((name, module))
    return out


def summary(model: nn.Module, input_shape: tuple[int, int] | None = None) -> list[LayerRow]:
    """Rows in execution order for one (1, 1, frames, bins) input.

    Args:
        model: a model whose `config.input_shape` gives (frames, bins) unless `input_shape` does.
        input_shape: (frames, bins) to use instead.
    """
    frames, bins = input_shape or model.config.input_shape
    rows: list[LayerRow] = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
            params = sum(p.numel() for p in module.parameters())
            shape = tuple(output.shape[1:])
            row = LayerRow(name, type(module).__name__, shape, params, layer_macs(module, output))
            rows.append(row)

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in _leaves(model)]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, frames, bins, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BatchNorm scales and shifts; not running stats)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one forward pass of one clip (see `summary`)."""
    return sum(row.macs for row in summary(model, input_shape))


def format_shape(shape: tuple[int, ...]) -> str:
    """(64, 25, 5) -> '64x25x5'."""
    return "x".join(str(v) for v in shape)


def format_summary(rows: list[LayerRow]) -> str:
    """A plain-text table of `rows` with a total line.

    Example:
        >>> print(format_summary([LayerRow("fc", "Linear", (4,), 44, 40)]))
        layer  type    output  params  MACs
        fc     Linear  4           44    40
        total                      44    40
    """
    table = [("layer", "type", "output", "params", "MACs")]
    for r in rows:
        table.append((r.name, r.type, format_shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}"))
    total_params, total_macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    table.append(("total", "", "", f"{total_params:,}", f"{total_macs:,}"))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = []
    for row in table:
        left = [row[i].ljust(widths[i]) for i in range(3)]
        right = [row[i].rjust(widths[i]) for i in (3, 4)]
        lines.append("  ".join(left + right).rstrip())
    return "\n".join(lines)
