"""Gradual magnitude pruning during training (Zhu & Gupta 2017; TF Model Optimization).

The sparsity target follows TF-MOT's `PolynomialDecay`:

    p(step)        = clip((step - begin_step) / (end_step - begin_step), 0, 1)
    sparsity(step) = final + (initial - final) * (1 - p) ** power          (power 3 by default)

and masks are recomputed only on pruning steps, i.e. when begin_step <= step <= end_step and
(step - begin_step) % frequency == 0. Steps count training mini-batches from 0.

`GradualPruner` plugs into any training loop, `tinykws.train.loop.fit` included, without a callback
API: it attaches magnitude masks (`tinykws.prune.unstructured`) and a forward pre-hook that counts
forward passes in training mode (one per optimizer step) and updates the masks on pruning steps.
Evaluation passes (eval mode) do not count. Masks rank the *masked* weights, so a weight once
pruned stays pruned.

Example:
    >>> schedule = PolynomialDecay(0.5, 0.85, begin_step=0, end_step=1000, frequency=100)
    >>> schedule(0), schedule(500), schedule(1000), schedule(1050)
    ((True, 0.5), (True, 0.80625), (True, 0.85), (False, 0.85))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tinykws.checkpoint import load_checkpoint
from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.prune.retrain import retrain
from tinykws.prune.surgery import clone_model
from tinykws.prune.unstructured import apply_magnitude_masks, set_masks, sparsity, weight_layers
from tinykws.train.state import LAST


@dataclass(frozen=True)
class PolynomialDecay:
    """TF-MOT's PolynomialDecay pruning schedule; `__call__(step) -> (prune now?, sparsity)`."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3.0
    frequency: int = 100

    def sparsity(self, step: int) -> float:
        """The target sparsity at `step`."""
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, progress))
        decay = (1.0 - progress) ** self.power
        return (self.initial_sparsity - self.final_sparsity) * decay + self.final_sparsity

    def should_prune(self, step: int) -> bool:
        """True on the steps where masks are recomputed."""
        in_range = self.begin_step <= step <= self.end_step
        return in_range and (step - self.begin_step) % self.frequency == 0

    def __call__(self, step: int) -> tuple[bool, float]:
        return self.should_prune(step), self.sparsity(step)


def schedule_for(config, total_steps: int) -> PolynomialDecay:
    """The schedule of a `GradualConfig` for a training run of `total_steps` mini-batches.

    `end_step = 0` puts the end of the ramp on the last pruning step within the first three
    quarters of training, so the final sparsity is reached and the rest of training recovers.
    """
    end = config.end_step
    if end <= 0:
        span = max(1, int(0.75 * (total_steps - config.begin_step)) // config.frequency)
        end = config.begin_step + span * config.frequency
    if end >= total_steps:
        logger.warning(
            f"prune.gradual: end_step {end} is past the {total_steps} training steps; the final "
            "sparsity will not be reached (lower end_step or frequency, or train longer)"
        )
    return PolynomialDecay(
        config.initial_sparsity,
        config.final_sparsity,
        config.begin_step,
        end,
        config.power,
        config.frequency,
    )


class GradualPruner:
    """Magnitude masks on `model` that follow `schedule` as the model trains.

    Example:
        >>> from tinykws.models import build_model, model_config
        >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
        >>> pruner = GradualPruner(model, PolynomialDecay(0.5, 0.8, 0, 10, frequency=5))
        >>> _ = model.train()(torch.zeros(2, 1, 49, 40))   # step 0: masks at 50 %
        >>> round(pruner.sparsity, 2)
        0.5
    """

    def __init__(self, model: nn.Module, schedule: PolynomialDecay, scope: str = "layer"):
        self.schedule, self.scope = schedule, scope
        self.step, self.sparsity = 0, 0.0
        set_masks(model, {n: torch.ones_like(m.weight) for n, m in weight_layers(model).items()})
        self._handle = model.register_forward_pre_hook(self._before_forward)

    @torch.no_grad()
    def _before_forward(self, model: nn.Module, _inputs) -> None:
        if not model.training:
            return
        prune_now, target = self.schedule(self.step)
        if prune_now:
            apply_magnitude_masks(model, target, self.scope)
            self.sparsity = target
        self.step += 1

    def remove(self) -> None:
        """Stop updating the masks (they stay attached until `finalize`)."""
        self._handle.remove()


def gradual_prune(model: nn.Module, config, data=None, work_dir=None) -> tuple[nn.Module, dict]:
    """`prune` entry for method "gradual": train a masked copy with `config.retrain` while the
    sparsity rises along `config.gradual`; the weights after the last epoch are kept."""
    if data is None:
        raise TinyKWSError("gradual pruning trains the model; give it training data (--data)")
    cfg = config.retrain
    steps_per_epoch = math.ceil(len(data.train_labels) / cfg.batch_size)
    schedule = schedule_for(config.gradual, cfg.epochs * steps_per_epoch)
    pruned = clone_model(model)
    pruner = GradualPruner(pruned, schedule, config.gradual.scope)
    work = Path(work_dir) / "retrain" if work_dir is not None else None
    pruner.step = _resumed_epochs(work) * steps_per_epoch  # fit resumes; so does the schedule
    history = retrain(pruned, data, cfg, work, keep="last")
    pruner.remove()
    report = {
        "schedule": {
            "begin_step": schedule.begin_step,
            "end_step": schedule.end_step,
            "frequency": schedule.frequency,
            "total_steps": cfg.epochs * steps_per_epoch,
        },
        "sparsity": sparsity(pruned),
        "history": history,
    }
    return pruned, report


def _resumed_epochs(work: Path | None) -> int:
    """Epochs already trained in `work` by an interrupted run (0 when starting afresh)."""
    if work is None or not (work / LAST).is_file():
        return 0
    _, meta = load_checkpoint(work / LAST)
    return int(meta.get("resume", {}).get("epoch", 0))
