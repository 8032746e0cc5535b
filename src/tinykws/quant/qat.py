"""Quantization-aware training: calibrate, then fine-tune with fake quantization in the loop.

1. Prepare: trace the float model, keep its BatchNorms, attach quantizers; calibrate the
   activation ranges on the calibration set (as PTQ does).
2. Fine-tune `qat.epochs` epochs: weights are fake-quantized (folded with the BatchNorm's
   running statistics), activations too, gradients pass straight through the rounding.
   Activation ranges follow a moving average of each batch's min and max until epoch
   `qat.freeze_observer_epoch`; BatchNorm statistics update until `qat.freeze_bn_epoch` (by
   default not at all at 8 bits, half the epochs below), after which the network trains
   exactly as it will be folded.
   The fine-tuning batches are augmented as the model was trained, with its `_unknown_` weight
   (`as_trained`), unless the config says otherwise.
3. Convert: keep the epoch with the best validation accuracy (the calibrated start counts as
   epoch 0), fold the BatchNorms for good, freeze the weight scales.

Validation runs the network as deployed (running statistics, fixed ranges), so the accuracy
recorded for the kept epoch is the fake-quant model's accuracy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.quant.data import feature_batches
from tinykws.quant.model import QuantizedModel, QuantModel
from tinykws.quant.observers import MovingAverageObserver


def quantize_qat(model, config, data) -> QuantizedModel:
    """Calibrate, fine-tune with fake quantization, convert. `data.training` is required."""
    from tinykws.train.loop import pick_device

    if data is None or data.training is None:
        raise TinyKWSError("quantize: method 'qat' needs training data (a dataset folder)")
    qcfg = config.qat
    torch.manual_seed(qcfg.seed)
    device = pick_device(qcfg.device)
    module = QuantModel.prepare(model, config)
    pairs = module.equalize() if config.equalize else None
    module.calibrate(feature_batches(data.calibration, data.normalization))
    for quantizer in module.act.values():
        start = quantizer.observer.final_range()
        quantizer.observer = MovingAverageObserver(qcfg.observer_momentum, start)
    module.set_mode("fakequant").to(device)
    history = fine_tune(module, data.training, qcfg, device, config.weight_bits)
    module.freeze_bn()
    module.freeze_observers()
    module.fold()
    module.freeze_weights()
    module.cpu().eval()
    history["calibration_clips"] = int(len(data.calibration))
    if pairs is not None:
        history["equalized_pairs"] = pairs
    return QuantizedModel(module, config, history)


def as_trained(qcfg, meta: dict):
    """`qcfg` with an unset `augment` and `unknown_weight` filled from the "train" record of a
    checkpoint's metadata (how `tinykws.train.loop.fit` trained it); without one, no augmentation
    and weight 1."""
    from tinykws.train.state import recorded_training

    augment, unknown_weight = recorded_training(meta)
    if qcfg.augment is not None:
        augment = qcfg.augment
    if qcfg.unknown_weight is not None:
        unknown_weight = qcfg.unknown_weight
    return replace(qcfg, augment=augment, unknown_weight=unknown_weight)


def fine_tune(module: QuantModel, training, qcfg, device, weight_bits: int = 8) -> dict:
    """Train `module` in place; leave it holding the epoch with the best validation accuracy."""
    from tinykws.train.loop import OPTIMIZERS, SCHEDULES

    optimizer = OPTIMIZERS[qcfg.optimizer](module.parameters(), qcfg)
    steps = math.ceil(len(training.train_labels) / qcfg.batch_size)
    scheduler = SCHEDULES["cosine"](optimizer, qcfg, steps)
    source = _BatchSource(training, qcfg, device)
    best_accuracy = validation_accuracy(module, training, device)
    best_state = copy.deepcopy(module.state_dict())
    history = {"val_accuracy": [best_accuracy], "train_loss": [], "best_epoch": 0}
    logger.info(f"qat: calibrated start, val acc {best_accuracy:.4f}")
    for epoch in range(qcfg.epochs):
        if epoch >= qcfg.bn_freeze_epoch(weight_bits):
            module.freeze_bn()
        if epoch >= qcfg.freeze_observer_epoch:
            module.freeze_observers()
        loss = _train_epoch(module, source, optimizer, scheduler, epoch)
        accuracy = validation_accuracy(module, training, device)
        history["train_loss"].append(loss)
        history["val_accuracy"].append(accuracy)
        improved = accuracy > best_accuracy or math.isnan(best_accuracy)  # no validation: last
        if improved:
            best_accuracy, best_state = accuracy, copy.deepcopy(module.state_dict())
            history["best_epoch"] = epoch + 1
        logger.info(
            f"qat epoch {epoch + 1}/{qcfg.epochs}: loss {loss:.4f} | val acc "
            f"{accuracy:.4f}{' *' if improved else ''}"
        )
    module.load_state_dict(best_state)
    return history


class _BatchSource:
    """Training batches as `tinykws.train.loop` makes them (augmented when enabled)."""

    def __init__(self, training, qcfg, device) -> None:
        qcfg = as_trained(qcfg, {})
        self.training, self.qcfg, self.device = training, qcfg, device
        noise = torch.from_numpy(np.asarray(training.noise, dtype=np.float32))
        self.state = SimpleNamespace(
            data=training, cfg=SimpleNamespace(augment=qcfg.augment), noise=noise, device=device
        )
        weights = training.loss_weights(unknown_weight=qcfg.unknown_weight)
        self.weights = torch.from_numpy(weights).to(device)

    def batches(self, epoch: int):
        from tinykws.train.loop import training_inputs

        order = np.random.default_rng([self.qcfg.seed, epoch]).permutation(
            len(self.training.train_labels)
        )
        gen = torch.Generator().manual_seed(self.qcfg.seed * 100_003 + epoch)
        for start in range(0, len(order), self.qcfg.batch_size):
            index = np.sort(order[start : start + self.qcfg.batch_size])
            labels = torch.from_numpy(np.asarray(self.training.train_labels[index])).to(self.device)
            yield training_inputs(index, self.state, gen), labels


def _train_epoch(module: QuantModel, source: _BatchSource, optimizer, scheduler, epoch) -> float:
    from tinykws.progress import track

    module.train()
    total, count = 0.0, 0
    n_batches = math.ceil(len(source.training.train_labels) / source.qcfg.batch_size)
    for inputs, labels in track(source.batches(epoch), f"qat epoch {epoch + 1}", n_batches):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(module(inputs), labels, weight=source.weights)
        if not torch.isfinite(loss):
            raise TinyKWSError("quantization-aware training diverged; lower quantize.qat.lr")
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / max(count, 1)


def validation_accuracy(module, training, device) -> float:
    """Top-1 accuracy of `module` (eval mode) on the validation features."""
    from tinykws.train.loop import predict_logits

    if len(training.val_labels) == 0:
        return float("nan")
    logits = predict_logits(module, training.val_features, training.normalization, device)
    return float((logits.argmax(1).numpy() == np.asarray(training.val_labels)).mean())
