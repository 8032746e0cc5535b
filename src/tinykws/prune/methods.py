"""The pruning methods by name (`PRUNERS`), for `tinykws.prune.prune` and the sweep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinykws.prune.gradual import gradual_prune
from tinykws.prune.norm import norm_prune
from tinykws.prune.taylor import taylor_prune
from tinykws.prune.unstructured import magnitude_prune

# method -> function(model, config, data, work_dir) -> (pruned model, report). "magnitude"
# returns its model with masks still attached, so retraining keeps the pruned weights at zero.
PRUNERS: dict[str, Callable[..., tuple[Any, dict]]] = {
    "taylor": taylor_prune,
    "l1": norm_prune,
    "l2": norm_prune,
    "linf": norm_prune,
    "magnitude": magnitude_prune,
    "gradual": gradual_prune,
}
NEEDS_DATA = ("taylor", "gradual")
