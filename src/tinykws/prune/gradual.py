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
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tinykws.checkpoint import load_checkpoint, save_checkpoint
from tinykws.config import check_choice, from_dict
from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.prune.config import SCOPES, check_amount
from tinykws.prune.retrain import retrain
from tinykws.prune.surgery import clone_model
from tinykws.prune.unstructured import (
    apply_magnitude_masks,
    finalize,
    set_masks,
    sparsity,
    weight_layers,
)
from tinykws.train.loop import fit
from tinykws.train.state import BEST, LAST


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


def _drop_finalized_best(out_dir: Path) -> None:
    """Remove a best.safetensors that an earlier `fit_pruned` in `out_dir` already finalized:
    its plain weights do not load into the masked model that `fit` ends by loading (the last
    epoch's masked weights, in last.safetensors, are what counts)."""
    path = out_dir / BEST
    if path.is_file():
        tensors, _ = load_checkpoint(path)
        if not any(".parametrizations." in f".{k}" for k in tensors):
            path.unlink()


def _resumed_epochs(work: Path | None) -> int:
    """Epochs already trained in `work` by an interrupted run (0 when starting afresh)."""
    if work is None or not (work / LAST).is_file():
        return 0
    _, meta = load_checkpoint(work / LAST)
    return int(meta.get("resume", {}).get("epoch", 0))


@dataclass(frozen=True)
class TrainPruneConfig:
    """Gradual magnitude pruning during the train stage: a recipe's `[train.prune]` table.

    Sparsity follows `PolynomialDecay` from `initial_sparsity` at `begin` to `final_sparsity`
    at `end`, masks being recomputed every `frequency` mini-batches. `begin` and `end` count in
    `unit`: "fraction" of the training steps (0.0 .. 1.0) or "epoch" (whole epochs, 0 = the
    first step). The go/stop study ramps 0.5 -> 0.85 over its 20 epochs:

        [train.prune]
        initial_sparsity = 0.5
        final_sparsity = 0.85
        begin = 0.0
        end = 0.75        # three quarters of training, the rest recovers at 85 %
        frequency = 100

    Example:
        >>> TrainPruneConfig(end=0.5, frequency=10).schedule(steps_per_epoch=10, epochs=4)
        PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.85, begin_step=0, end_step=20, \
power=3.0, frequency=10)
    """

    initial_sparsity: float = 0.5
    final_sparsity: float = 0.85
    begin: float = 0.0
    end: float = 0.75
    unit: str = "fraction"
    frequency: int = 100
    power: float = 3.0
    scope: str = "layer"

    def __post_init__(self):
        check_amount("train.prune.initial_sparsity", self.initial_sparsity)
        check_amount("train.prune.final_sparsity", self.final_sparsity)
        check_choice("train.prune.unit", self.unit, ("fraction", "epoch"))
        check_choice("train.prune.scope", self.scope, SCOPES)
        if self.frequency < 1 or self.power <= 0:
            raise TinyKWSError("train.prune: frequency must be >= 1 and power > 0")
        if not 0 <= self.begin < self.end:
            raise TinyKWSError(
                f"train.prune: begin ({self.begin}) must be >= 0 and before end ({self.end})"
            )
        if self.unit == "fraction" and self.end > 1:
            raise TinyKWSError(
                f"train.prune.end = {self.end} is not a fraction of training (0..1); "
                'write unit = "epoch" to count in epochs'
            )

    def schedule(self, steps_per_epoch: int, epochs: int) -> PolynomialDecay:
        """The schedule in mini-batch steps of a training run of `epochs` epochs."""
        per_unit = steps_per_epoch * (epochs if self.unit == "fraction" else 1)
        begin = int(round(self.begin * per_unit))
        end = max(begin + 1, int(round(self.end * per_unit)))
        if end > steps_per_epoch * epochs:
            logger.warning(
                f"train.prune: the ramp ends at step {end}, past the {steps_per_epoch * epochs} "
                "training steps; the final sparsity will not be reached"
            )
        return PolynomialDecay(
            self.initial_sparsity, self.final_sparsity, begin, end, self.power, self.frequency
        )


def fit_pruned(model: nn.Module, data, cfg, prune: TrainPruneConfig, out_dir: Path, meta: dict):
    """`fit` with a `GradualPruner` on `model`; the model comes out sparse, masks made permanent.

    The weights after the last epoch are kept (the sparsity is highest there, not at the best
    epoch of the ramp) and written over `out_dir/best.safetensors` as plain weights, so the file
    loads like any trained model. Returns (fit's history, report: schedule and sparsity).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # fit trains on 1/world_size of it
    shard = math.ceil(len(data.train_labels) / max(world_size, 1))
    steps_per_epoch = math.ceil(shard / cfg.batch_size)
    schedule = prune.schedule(steps_per_epoch, cfg.epochs)
    pruner = GradualPruner(model, schedule, prune.scope)
    pruner.step = _resumed_epochs(Path(out_dir)) * steps_per_epoch  # fit resumes; so does this
    _drop_finalized_best(Path(out_dir))
    history = fit(model, data, cfg, out_dir, meta)
    pruner.remove()
    tensors, _ = load_checkpoint(Path(out_dir) / LAST)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    finalize(model)
    if int(os.environ.get("RANK", "0")) == 0:
        save_checkpoint(Path(out_dir) / BEST, model.state_dict(), meta or {})
    report = {
        "schedule": {
            "initial_sparsity": schedule.initial_sparsity,
            "final_sparsity": schedule.final_sparsity,
            "begin_step": schedule.begin_step,
            "end_step": schedule.end_step,
            "frequency": schedule.frequency,
            "total_steps": cfg.epochs * steps_per_epoch,
        },
        "sparsity": sparsity(model),
    }
    return history, report


def parse_train_prune(table) -> TrainPruneConfig:
    """The `[train.prune]` table of a recipe, validated."""
    if not isinstance(table, dict):
        raise TinyKWSError(f"[train.prune] must be a table, got {table!r:.60}")
    return from_dict(TrainPruneConfig, table, "train.prune")
