"""Training: `fit(model, data, config, out_dir)` with checkpoints, resume, early stopping and DDP.

Loss is cross-entropy, class-weighted by inverse frequency and optionally label-smoothed.
Training batches are augmented waveforms run through the torch front end (or cached features
when augmentation is off); validation always reads cached features. Launched with `torchrun`,
each process trains on its shard of every epoch and gradients are averaged (DDP: gloo on CPU,
NCCL on CUDA); every process evaluates the whole validation split so they stop together, and
only rank 0 writes files.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinykws.config import check_choice, check_range, to_dict
from tinykws.data import speech_commands as sc
from tinykws.data.augment import AugmentConfig, augment_waves, spec_augment
from tinykws.errors import TinyKWSError
from tinykws.features.batch import batch_features, cached_features
from tinykws.features.normalization import Normalization
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.progress import make_progress
from tinykws.train.distributed import DistContext
from tinykws.train.evaluate import top1_accuracy
from tinykws.train.state import OPTIMIZERS, SCHEDULES, TrainState


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults suit a DS-CNN on Speech Commands.

    Attributes:
        epochs, batch_size: the usual.
        optimizer: "sgd" (with momentum), "adam" or "adamw".
        lr, momentum, weight_decay: optimizer settings.
        schedule: "constant", "step" (×step_gamma every step_epochs), "cosine" or "onecycle".
        label_smoothing: cross-entropy label smoothing in [0, 1).
        class_weighted: weight the loss by inverse class frequency (normalised to mean 1).
        unknown_weight: multiplies the loss weight of `_unknown_` (hard-negative weighting):
            above 1 the model rejects rarely heard words more readily, at a small cost in
            command recall.
        distill_weight: with a teacher given to `fit`, the loss is (1 - w) x cross-entropy +
            w x T^2 x KL(teacher || student) at temperature T (Hinton et al. 2015); 0 = off.
            The prune stage gives the unpruned network as teacher to the pruned one.
        distill_temperature: T, softening both distributions.
        monitor: "val_accuracy" or "val_loss" picks the best checkpoint.
        patience: stop after this many epochs without improvement (0 = never stop early).
        seed: seeds shuffling, augmentation and initialisation.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        augment: on-the-fly augmentation of training batches.
    """

    epochs: int = 30
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_epochs: int = 5
    step_gamma: float = 0.1
    label_smoothing: float = 0.05
    class_weighted: bool = True
    unknown_weight: float = 1.0
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
    monitor: str = "val_accuracy"
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.monitor", self.monitor, ("val_accuracy", "val_loss"))
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_range("train.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        if self.unknown_weight <= 0 or self.distill_temperature <= 0:
            raise TinyKWSError(
                "train.unknown_weight and train.distill_temperature must be positive"
            )
        check_range("train.distill_weight", self.distill_weight, 0.0, 1.0)
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.lr < math.inf:
            raise TinyKWSError(
                "train.epochs, train.batch_size and train.lr must be positive (and lr finite)"
            )


@dataclass
class TrainingData:
    """What `fit` needs, already loaded.

    Attributes:
        frontend: a `tinykws.features.frontend.FrontEnd` (used on augmented waveforms).
        normalization: per-bin `Normalization` fitted on the training features.
        train_waves: int16 (N, samples) training clips (read when augmenting).
        train_features: float32 (N, frames, bins) un-normalised cached features.
        train_labels / val_labels: int64 class indices.
        val_features: float32 (M, frames, bins).
        noise: float32 (K,) background recordings concatenated (for noise mixing).
        class_weights: float32 (n_classes,), mean 1.
        labels: class names in output order (lets `unknown_weight` find `_unknown_`).
    """

    frontend: object
    normalization: object
    train_waves: np.ndarray
    train_features: np.ndarray
    train_labels: np.ndarray
    val_features: np.ndarray
    val_labels: np.ndarray
    noise: np.ndarray
    class_weights: np.ndarray
    labels: tuple[str, ...] = ()

    def loss_weights(self, class_weighted: bool = True, unknown_weight: float = 1.0) -> np.ndarray:
        """Per-class cross-entropy weights: inverse class frequency (or ones), with the weight
        of `_unknown_` multiplied by `unknown_weight`."""
        weights = np.array(self.class_weights, np.float32)
        if not class_weighted:
            weights[:] = 1.0
        if unknown_weight != 1.0:
            if "_unknown_" not in self.labels:
                raise TinyKWSError("unknown_weight is set but there is no _unknown_ class")
            weights[self.labels.index("_unknown_")] *= unknown_weight
        return weights


def load_training_data(dataset, frontend, normalization=None, cache_dir=None) -> TrainingData:
    """`TrainingData` from a loaded dataset's train and validation splits.

    Args:
        dataset: a `tinykws.data.speech_commands.Dataset`.
        frontend: the `FrontEnd` whose (cached) features the model reads.
        normalization: the model's own `Normalization`; None fits one on the training features.

    Raises:
        TinyKWSError: a split with no clips.
    """
    arrays = {}
    for split in ("train", "validation"):
        clips = dataset.clips(split)
        if not clips:
            raise TinyKWSError(f"{dataset.root}: the '{split}' split has no clips")
        waves = sc.load_waveforms(clips, cache_dir=cache_dir)
        feats = cached_features(cache_dir, frontend, waves, sc.waveforms_key(clips))
        arrays[split] = (waves, feats, dataset.label_indices(split))
    if normalization is None:
        normalization = Normalization.fit(np.asarray(arrays["train"][1]))
    noises = sc.load_noises(dataset)
    return TrainingData(
        frontend=frontend,
        normalization=normalization,
        train_waves=arrays["train"][0],
        train_features=arrays["train"][1],
        train_labels=arrays["train"][2],
        val_features=arrays["validation"][1],
        val_labels=arrays["validation"][2],
        noise=np.concatenate(noises) if noises else np.zeros(0, np.float32),
        class_weights=dataset.class_weights("train"),
        labels=tuple(dataset.labels),
    )


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when asked for or available ("auto"), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TinyKWSError("train.device is 'cuda' but no CUDA device is visible")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class TrainingDiverged(TinyKWSError):
    """The loss became NaN or infinite."""


def fit(
    model,
    data: TrainingData,
    cfg: TrainConfig,
    out_dir: Path | None,
    meta: dict | None = None,
    teacher=None,
    on_epoch_start: Callable[[int], None] | None = None,
):
    """Train `model` in place; write best/last checkpoints and history into `out_dir`.

    `meta` (labels, model and front-end config, normalisation) is stored in the checkpoints so
    best.safetensors is a usable model file. Resumes from `out_dir/last.safetensors` when
    present; `out_dir` None trains in a temporary folder (nothing to resume, nothing kept).
    `teacher` (a trained model with the same inputs and classes) is distilled into `model` when
    `cfg.distill_weight` > 0. `on_epoch_start(epoch)` (0-based) runs before each epoch's
    training, e.g. to freeze parts of the model from some epoch on. Returns the history dict
    (per-epoch train/val loss and accuracy, best epoch).

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="tinykws-fit-") as tmp:
            return fit(model, data, cfg, Path(tmp), meta, teacher, on_epoch_start)
    check_training_data(data)
    out_dir = Path(out_dir)
    dist = DistContext.from_env()
    state = _start_state(model, data, cfg, out_dir, meta, teacher, dist)
    net = dist.wrap(model)
    for epoch in range(state.epoch, cfg.epochs):
        start = time.perf_counter()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws do not depend on resume
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        train_loss, train_acc = _train_epoch(net, state, epoch, dist)
        val_loss, val_acc = evaluate_features(model, data.val_features, data.val_labels, state)
        improved = state.record(epoch, train_loss, train_acc, val_loss, val_acc)
        # training time so far, kept in the checkpoint so that a resumed run adds to it
        state.history["seconds"] = state.history.get("seconds", 0.0) + time.perf_counter() - start
        if dist.is_main:
            state.save(improved)
        _log_epoch(epoch, cfg.epochs, state, improved)
        if cfg.patience and state.epochs_without_improvement >= cfg.patience:
            logger.info(f"early stop: no improvement for {cfg.patience} epochs")
            break
    state.history.setdefault("seconds", 0.0)
    if dist.is_main:
        write_json(out_dir / "history.json", state.history)
    dist.close()
    state.load_best_into(model)
    return state.history


def _start_state(model, data, cfg, out_dir: Path, meta, teacher, dist: DistContext) -> TrainState:
    """The state before the first epoch (or the one a previous run left to resume), with the
    model (and teacher) on this process's device."""
    device = dist.device if dist.active else pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    state = TrainState.create(model, data, cfg, out_dir, device, meta)
    if cfg.distill_weight > 0:
        if teacher is None:
            raise TinyKWSError("train.distill_weight is set but there is no teacher model")
        state.teacher = teacher.to(device).eval()
    state.maybe_resume()
    return state


def check_training_data(data: TrainingData) -> None:
    """Refuse data a model cannot learn from or be judged on: fewer than two classes with
    training clips, or no validation clip (the best epoch would be picked on nothing)."""
    present = sorted({int(i) for i in np.asarray(data.train_labels)})
    names = [data.labels[i] if i < len(data.labels) else str(i) for i in present]
    spoken = [n for n in names if n != "_silence_"]  # background noise alone teaches no word
    if len(spoken) < 2:
        raise TinyKWSError(
            f"the training split has clips of {len(spoken)} spoken class(es) "
            f"({', '.join(names) or 'none'}); a keyword spotter needs at least two: check the "
            "data folder and the label preset"
        )
    absent = [n for i, n in enumerate(data.labels) if i not in present]
    if absent:
        logger.warning(
            f"{len(absent)} of {len(data.labels)} classes have no training clips "
            f"({', '.join(absent[:6])}{', ...' if len(absent) > 6 else ''})"
        )
    if len(data.val_labels) == 0:
        raise TinyKWSError(
            "the validation split has no clips (does validation_list.txt name clips of this "
            "folder?); fix or remove the list, or add speakers so the split rule can hold some out"
        )


def _train_epoch(net, state, epoch: int, dist: DistContext) -> tuple[float, float]:
    data, cfg = state.data, state.cfg
    order = _epoch_order(len(data.train_labels), cfg.seed, epoch)
    order = order[dist.rank :: dist.world_size]
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 101 + dist.rank)
    net.train()
    total_loss = total_correct = total = 0.0
    with make_progress() as progress:
        task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(batches), status="")
        for index in batches:
            inputs = training_inputs(np.sort(index), state, gen)
            labels = torch.from_numpy(data.train_labels[np.sort(index)]).to(state.device)
            loss, logits = _step(net, inputs, labels, state)
            total_loss += loss * len(index)
            total_correct += top1_accuracy(logits.cpu(), labels.cpu()) * len(index)
            total += len(index)
            progress.update(task, advance=1, status=f"loss {total_loss / total:.3f}")
    return total_loss / max(total, 1), total_correct / max(total, 1)


def _step(net, inputs, labels, state) -> tuple[float, torch.Tensor]:
    state.optimizer.zero_grad(set_to_none=True)
    logits = net(inputs)
    loss = F.cross_entropy(
        logits, labels, weight=state.loss_weights, label_smoothing=state.cfg.label_smoothing
    )
    if state.teacher is not None:
        loss = _distilled(loss, logits, inputs, state)
    if not torch.isfinite(loss):
        raise TrainingDiverged("training diverged (loss is NaN or infinite); lower train.lr")
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    return loss.item(), logits.detach()


def _distilled(loss, logits, inputs, state) -> torch.Tensor:
    """(1 - w) x `loss` + w x T^2 x KL(teacher || student), both softened by T."""
    w, t = state.cfg.distill_weight, state.cfg.distill_temperature
    with torch.no_grad():
        target = F.log_softmax(state.teacher(inputs) / t, dim=1)
    kl = F.kl_div(F.log_softmax(logits / t, dim=1), target, log_target=True, reduction="batchmean")
    return (1.0 - w) * loss + w * t * t * kl


def training_inputs(index: np.ndarray, state, gen: torch.Generator) -> torch.Tensor:
    """Model inputs (B, 1, frames, bins) for the training clips `index`, augmented if enabled."""
    data, aug = state.data, state.cfg.augment
    if aug.enabled:
        waves = torch.from_numpy(np.asarray(data.train_waves[index])).float() / 32768.0
        waves = augment_waves(waves, state.noise, aug, gen).to(state.device)
        feats = batch_features(data.frontend, waves)
    else:
        feats = torch.from_numpy(np.asarray(data.train_features[index])).to(state.device)
    feats = data.normalization.apply_torch(feats)
    if aug.enabled:
        feats = spec_augment(feats, aug, gen)
    return feats.unsqueeze(1)


@torch.no_grad()
def predict_logits(model, features: np.ndarray, normalization, device, batch_size=512):
    """Logits (N, classes) float32 for un-normalised features (N, frames, bins)."""
    model.eval()
    out = []
    for start in range(0, len(features), batch_size):
        chunk = torch.from_numpy(np.array(features[start : start + batch_size])).to(device)
        out.append(model(normalization.apply_torch(chunk).unsqueeze(1)).float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def evaluate_features(model, features, labels, state) -> tuple[float, float]:
    """(loss, accuracy) on un-normalised features, using the training loss weights."""
    logits = predict_logits(model, features, state.data.normalization, state.device)
    if len(labels) == 0:
        return math.nan, math.nan
    target = torch.from_numpy(np.asarray(labels))
    loss = F.cross_entropy(logits, target, weight=state.loss_weights.cpu()).item()
    return loss, top1_accuracy(logits, target)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _log_epoch(epoch: int, epochs: int, state, improved: bool) -> None:
    h = state.history
    mark = " *" if improved else ""
    logger.info(
        f"epoch {epoch + 1}/{epochs}: loss {h['train_loss'][-1]:.4f} "
        f"acc {h['train_accuracy'][-1]:.4f} | val loss {h['val_loss'][-1]:.4f} "
        f"acc {h['val_accuracy'][-1]:.4f}{mark}"
    )


def config_dict(cfg: TrainConfig) -> dict:
    """The config as plain data (for recipes and checkpoints)."""
    return to_dict(cfg)
