"""Quantization-aware training: calibrate, then fine-tune with fake quantization in the loop.

1. Prepare: trace the float model, keep its BatchNorms, attach quantizers; calibrate the
   activation ranges on the calibration set (as PTQ does).
2. Fine-tune `qat.epochs` epochs with `tinykws.train.loop.fit` (the training stage's loop, in a
   temporary folder): weights are fake-quantized (folded with the BatchNorm's
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

from tinykws.errors import TinyKWSError
from tinykws.log import logger
from tinykws.quant.data import feature_batches
from tinykws.quant.model import QuantizedModel, QuantModel
from tinykws.quant.observers import MovingAverageObserver
from tinykws.train.distributed import single_process
from tinykws.train.evaluate import top1_accuracy
from tinykws.train.loop import TrainConfig, TrainingDiverged, fit, pick_device, predict_logits
from tinykws.train.state import recorded_training


def quantize_qat(model, config, data) -> QuantizedModel:
    """Calibrate, fine-tune with fake quantization, convert. `data.training` is required."""
    if data is None or data.training is None:
        raise TinyKWSError("quantize: method 'qat' needs training data (a dataset folder)")
    qcfg = config.qat
    module = QuantModel.prepare(model, config)
    pairs = module.equalize() if config.equalize else None
    module.calibrate(feature_batches(data.calibration, data.normalization))
    for quantizer in module.act.values():
        start = quantizer.observer.final_range()
        quantizer.observer = MovingAverageObserver(qcfg.observer_momentum, start)
    module.set_mode("fakequant").to(pick_device(qcfg.device))
    history = fine_tune(module, data.training, qcfg, config.weight_bits)
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
    augment, unknown_weight = recorded_training(meta)
    if qcfg.augment is not None:
        augment = qcfg.augment
    if qcfg.unknown_weight is not None:
        unknown_weight = qcfg.unknown_weight
    return replace(qcfg, augment=augment, unknown_weight=unknown_weight)


def training_config(qcfg) -> TrainConfig:
    """The `TrainConfig` `fit` fine-tunes with: the QAT optimiser settings and augmentation, a
    cosine schedule, class-weighted cross-entropy without label smoothing, every epoch run, the
    best validation accuracy kept."""
    qcfg = as_trained(qcfg, {})
    return TrainConfig(
        epochs=qcfg.epochs,
        batch_size=qcfg.batch_size,
        optimizer=qcfg.optimizer,
        lr=qcfg.lr,
        momentum=qcfg.momentum,
        weight_decay=qcfg.weight_decay,
        schedule="cosine",
        label_smoothing=0.0,
        unknown_weight=qcfg.unknown_weight,
        monitor="val_accuracy",
        seed=qcfg.seed,
        device=qcfg.device,
        augment=qcfg.augment,
    )


def fine_tune(module: QuantModel, training, qcfg, weight_bits: int = 8) -> dict:
    """Train `module` in place with `tinykws.train.loop.fit`, freezing BatchNorm statistics and
    activation ranges at their epochs; leave it holding the epoch with the best validation
    accuracy, the calibrated start counting as epoch 0.

    Returns:
        {"val_accuracy": [start, epoch 1, ...], "train_loss": [epoch 1, ...], "best_epoch"}.
    """
    start = validation_accuracy(module, training)
    calibrated = copy.deepcopy(module.state_dict())
    logger.info(f"qat: calibrated start, val acc {start:.4f}")

    def freeze(epoch: int) -> None:
        if epoch >= qcfg.bn_freeze_epoch(weight_bits):
            module.freeze_bn()
        if epoch >= qcfg.freeze_observer_epoch:
            module.freeze_observers()

    try:
        with single_process():
            trained = fit(module, training, training_config(qcfg), None, on_epoch_start=freeze)
    except TrainingDiverged:
        raise TinyKWSError("quantization-aware training diverged; lower quantize.qat.lr") from None
    history = {
        "val_accuracy": [start, *trained["val_accuracy"]],
        "train_loss": trained["train_loss"],
        "best_epoch": trained["best_epoch"],
    }
    if not math.isnan(start) and not max(trained["val_accuracy"]) > start:
        module.load_state_dict(calibrated)  # no epoch beat the calibrated network
        history["best_epoch"] = 0
    return history


def validation_accuracy(module, training) -> float:
    """Top-1 accuracy of `module` (eval mode, on its device) on the validation features."""
    device = next(module.parameters()).device
    logits = predict_logits(module, training.val_features, training.normalization, device)
    return top1_accuracy(logits, training.val_labels)
