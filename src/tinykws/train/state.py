"""The mutable state of a training run: optimizer, schedule, history, best metric, resume."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinykws.cache import content_key
from tinykws.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from tinykws.config import from_dict, to_dict
from tinykws.data.augment_config import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.train.distributed import DistContext

# By name: (parameters, config with lr, momentum, weight_decay) -> optimizer.
OPTIMIZERS = {
    "sgd": lambda p, c: torch.optim.SGD(
        p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
}

# By name: (optimizer, config, steps per epoch) -> learning-rate schedule, stepped every batch.
SCHEDULES = {
    "constant": lambda opt, c, steps: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
    "step": lambda opt, c, steps: torch.optim.lr_scheduler.StepLR(
        opt, step_size=c.step_epochs * steps, gamma=c.step_gamma
    ),
    "cosine": lambda opt, c, steps: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=c.epochs * steps
    ),
    "onecycle": lambda opt, c, steps: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=c.lr, total_steps=c.epochs * steps
    ),
}

LAST = "last.safetensors"
BEST = "best.safetensors"


@dataclass
class TrainState:
    """Everything `fit` carries from epoch to epoch; saved to last.safetensors each epoch."""

    model: torch.nn.Module
    data: Any
    cfg: Any
    out_dir: Path
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_weights: torch.Tensor
    noise: torch.Tensor
    meta: dict
    epoch: int = 0
    best: float = -math.inf
    epochs_without_improvement: int = 0
    history: dict = field(default_factory=dict)
    teacher: torch.nn.Module | None = None

    @classmethod
    def create(cls, model, data, cfg, out_dir, device, meta=None) -> TrainState:
        world = DistContext.from_env().world_size
        steps = max(1, math.ceil(len(data.train_labels) / world / cfg.batch_size))
        optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
        weights = data.loss_weights(cfg.class_weighted, cfg.unknown_weight)
        history = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
        return cls(
            model=model,
            data=data,
            cfg=cfg,
            out_dir=Path(out_dir),
            device=device,
            optimizer=optimizer,
            scheduler=SCHEDULES[cfg.schedule](optimizer, cfg, steps),
            loss_weights=torch.as_tensor(weights, dtype=torch.float32).to(device),
            noise=torch.from_numpy(np.asarray(data.noise, dtype=np.float32)),
            meta=dict(meta or {}) | {"train": trained_with(cfg)},
            history=history | {"lr": [], "best_epoch": None},
        )

    def record(self, epoch, train_loss, train_acc, val_loss, val_acc) -> bool:
        """Append one epoch to the history; True when the monitored metric improved."""
        h = self.history
        h["train_loss"].append(train_loss)
        h["train_accuracy"].append(train_acc)
        h["val_loss"].append(val_loss)
        h["val_accuracy"].append(val_acc)
        h["lr"].append(self.optimizer.param_groups[0]["lr"])
        score = val_acc if self.cfg.monitor == "val_accuracy" else -val_loss
        if math.isnan(score):
            score = -train_loss  # no validation split: fall back to the training loss
        self.epoch = epoch + 1
        if score > self.best:
            self.best, self.epochs_without_improvement = score, 0
            h["best_epoch"] = epoch + 1
            return True
        self.epochs_without_improvement += 1
        return False

    def save(self, improved: bool) -> None:
        """Write best.safetensors (if improved), then last.safetensors (weights + optimizer +
        schedule). In this order an interrupt between the two leaves the previous epoch's
        last, which resumes into the same epoch again and rewrites the same best."""
        if improved:
            save_checkpoint(self.out_dir / BEST, self.model.state_dict(), self.meta)
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_info = flatten_optimizer_state(self.optimizer.state_dict())
        resume = {
            "epoch": self.epoch,
            "best": self.best,
            "epochs_without_improvement": self.epochs_without_improvement,
            "history": self.history,
            "optimizer": opt_info,
            "scheduler": self.scheduler.state_dict(),
            "fingerprint": self.fingerprint(),
        }
        save_checkpoint(self.out_dir / LAST, weights | opt_tensors, self.meta | {"resume": resume})

    def fingerprint(self) -> str:
        """A key of everything a resumed run must share with the one it continues: the
        training config, the architecture, the labels and the normalisation."""
        keep = {k: self.meta.get(k) for k in ("model", "labels", "frontend", "normalization")}
        return content_key(to_dict(self.cfg), keep)

    def maybe_resume(self) -> None:
        """Continue from last.safetensors if a previous run of this stage left one with the
        same settings; one left by other settings (or damaged) is set aside, with a note."""
        path = self.out_dir / LAST
        if not path.is_file():
            return
        try:
            tensors, meta = load_checkpoint(path)
        except TinyKWSError as exc:
            logger.warning(f"{exc}; training starts over")
            return
        resume = meta.get("resume")
        if not isinstance(resume, dict) or resume.get("fingerprint") != self.fingerprint():
            logger.info(f"{path}: left by other training settings; training starts over")
            return
        try:
            self._load_resume(tensors, resume)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise TinyKWSError(
                f"{path}: cannot resume from it ({str(exc).splitlines()[0][:160]}); delete it "
                "to train from the start"
            ) from None
        logger.info(f"resuming training from epoch {self.epoch + 1} ({path})")

    def _load_resume(self, tensors: dict, resume: dict) -> None:
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(weights)
        opt = unflatten_optimizer_state(tensors, resume["optimizer"])
        self.optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(resume["scheduler"])
        self.epoch, self.best = resume["epoch"], resume["best"]
        self.epochs_without_improvement = resume["epochs_without_improvement"]
        self.history = resume["history"]

    def load_best_into(self, model: torch.nn.Module) -> None:
        """Load the best weights (if any were saved) into `model`."""
        path = self.out_dir / BEST
        if path.is_file():
            tensors, _ = load_checkpoint(path)
            model.load_state_dict(tensors)


def trained_with(cfg) -> dict:
    """What a checkpoint records of its training run for later fine-tuning (quantization-aware
    training reuses the augmentation and the `_unknown_` weight)."""
    return {
        "augment": to_dict(cfg.augment),
        "unknown_weight": cfg.unknown_weight,
        "class_weighted": cfg.class_weighted,
    }


def recorded_training(meta: dict | None):
    """(AugmentConfig, `_unknown_` weight) a checkpoint was trained with, from the "train"
    record `trained_with` writes into its metadata; without one, no augmentation and weight 1.
    Fine-tuning (pruning, quantization-aware training) defaults to these."""
    trained = (meta or {}).get("train") or {}
    recorded = trained.get("augment")
    augment = (
        from_dict(AugmentConfig, recorded, "train.augment")
        if recorded is not None
        else AugmentConfig(enabled=False)
    )
    return augment, float(trained.get("unknown_weight", 1.0))
