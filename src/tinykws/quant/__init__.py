"""Quantization to 2-8 bits: post-training (ptq), dynamic range (dynamic) and quantization-aware
training (qat), each producing a fake-quantized PyTorch model that `tinykws.quant.lower` turns into
the integer graph.

    model (float) --fold BN--> trace into steps --observers--> fake-quant model --lower--> Graph

- `QuantConfig` says how (method, bit widths, schemes, observers, calibration, QAT schedule);
  it is the `[quantize]` table of a recipe.
- `quantize(model, config, data)` dispatches on `config.method` through `METHODS`.
- `QuantData` carries the calibration features (and, for QAT, the training data).

Example:
    >>> cfg = QuantConfig(method="ptq", weight_bits=4)
    >>> cfg.weight_bits, cfg.activation_bits, cfg.weight_scheme
    (4, 8, 'per_channel')
    >>> QuantConfig(weight_bits=9)
    Traceback (most recent call last):
    ...
    tinykws.errors.TinyKWSError: quantize.weight_bits must be in [2, 8]; got 9
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinykws.config import check_choice, check_range
from tinykws.data.augment_config import AugmentConfig
from tinykws.errors import TinyKWSError

METHOD_NAMES = ("ptq", "dynamic", "qat")
WEIGHT_SCHEMES = ("per_channel", "per_tensor", "per_channel_depthwise")
WEIGHT_MODES = ("sym", "asym")
ACTIVATION_SCHEMES = ("asym", "sym")
ACTIVATION_OBSERVER_NAMES = ("minmax", "moving_average", "percentile", "mse", "entropy")
WEIGHT_OBSERVER_NAMES = ("minmax", "mse")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware fine-tuning.

    Attributes:
        epochs: fine-tuning epochs with fake quantization in the forward pass.
        lr, optimizer, momentum, weight_decay, batch_size: as in `tinykws.train.loop.TrainConfig`
            (the learning rate follows a cosine schedule over the epochs).
        freeze_bn_epoch: from this epoch (0-based) on, BatchNorm uses its running statistics,
            which stop updating, so the network trains exactly as it will be folded. By default
            (None) 0 for 8-bit weights: fine-tuning then only nudges the calibrated network,
            and batch statistics would move it away from the statistics it was trained with
            (real10 DS-CNN, per-tensor int8: 92.8 % calibrated, 92.8 % after 2 epochs with
            batch statistics, 93.6 % with them frozen); half the epochs for narrower weights,
            which move far enough that BatchNorm must follow them (2 bits: 50 % frozen from
            the start, 77 % frozen after 3 of 6 epochs).
        freeze_observer_epoch: from this epoch on, activation ranges stop moving.
        observer_momentum: weight of each batch in the moving-average activation ranges.
        seed: shuffling and augmentation.
        device: "auto", "cpu" or "cuda".
        augment: how the fine-tuning batches are augmented (an `AugmentConfig` table); by
            default the augmentation the model was trained with, as its checkpoint records it
            (none when it records none).
        unknown_weight: multiplies the loss weight of `_unknown_`; by default the model's
            training value (`tinykws.train.loop.TrainConfig.unknown_weight`), else 1.
    """

    epochs: int = 6
    lr: float = 5e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    freeze_bn_epoch: int | None = None
    freeze_observer_epoch: int = 4
    observer_momentum: float = 0.01
    seed: int = 0
    device: str = "auto"
    augment: AugmentConfig | None = None
    unknown_weight: float | None = None

    def __post_init__(self) -> None:
        check_choice("quantize.qat.optimizer", self.optimizer, ("sgd", "adam", "adamw"))
        check_choice("quantize.qat.device", self.device, ("auto", "cpu", "cuda"))
        check_range("quantize.qat.epochs", self.epochs, 1, 10_000)
        check_range("quantize.qat.batch_size", self.batch_size, 1, 1_000_000)
        check_range("quantize.qat.observer_momentum", self.observer_momentum, 0.0, 1.0)
        if self.lr <= 0 or (self.unknown_weight is not None and self.unknown_weight <= 0):
            raise TinyKWSError("quantize.qat.lr and quantize.qat.unknown_weight must be positive")
        if (self.freeze_bn_epoch or 0) < 0 or self.freeze_observer_epoch < 0:
            raise TinyKWSError(
                "quantize.qat.freeze_bn_epoch and freeze_observer_epoch must be >= 0"
            )

    def bn_freeze_epoch(self, weight_bits: int) -> int:
        """The epoch from which BatchNorm statistics are frozen (see `freeze_bn_epoch`)."""
        if self.freeze_bn_epoch is not None:
            return self.freeze_bn_epoch
        return 0 if weight_bits == 8 else self.epochs // 2


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize.

    Attributes:
        method: "ptq" (calibrate, then round), "dynamic" (int8 weights, float activations) or
            "qat" (calibrate, then fine-tune with fake quantization).
        weight_bits: 2..8; symmetric weights have the range ±(2^(bits-1) - 1).
        activation_bits: 2..8; the integer graph needs 8.
        weight_scheme: "per_channel" (one scale per output channel), "per_tensor", or
            "per_channel_depthwise": per channel in depthwise convs only, whose channels' ranges
            differ most, per tensor elsewhere (a smaller .tflite: one float32 scale and one
            int64 zero point less per channel of every other layer).
        weight_mode: "sym" (zero point 0, range ±(2^(bits-1) - 1): TFLite's int8 spec, what
            the integer graph, TFLite and C hold) or "asym" (a zero point per scale, the full
            range [-2^(bits-1), 2^(bits-1) - 1] spread over the weights' [min, max]: for
            accuracy studies in fake quantization; such a model is not lowered or exported).
        activation_scheme: "asym" (zero point from the range) or "sym" (zero point 0).
        activation_observer: minmax, moving_average, percentile, mse or entropy. The default,
            mse, clips rare outliers where that lowers the rounding error (on the real10
            DS-CNN, int8 PTQ lost 0.14 points with it and 0.87 with minmax).
        weight_observer: minmax or mse.
        percentile: for the percentile observer, e.g. 99.99.
        power_of_two: round every scale up to a power of two (shift-only hardware).
        equalize: cross-layer equalization before calibration (`tinykws.quant.equalize`):
            channel scales move between consecutive layers so that per-tensor weight scales
            fit every channel (real10 DS-CNN-S, int8 per tensor: see README). Folds
            BatchNorm first, so QAT then fine-tunes the folded weights. ptq and qat only.
        calibration_per_class: calibration clips drawn per class (balanced, seeded).
        calibration_clips: when set, the calibration set holds this many clips in total instead,
            stratified: each class gets its share of the split (largest remainders, seeded),
            the clips drawn within it at random (seeded). E.g. 200 (the cnn3_36 study).
        calibration_split: the split they are drawn from.
        seed: draws the calibration set.
        qat: the fine-tuning schedule of method "qat".
    """

    method: str = "ptq"
    weight_bits: int = 8
    activation_bits: int = 8
    weight_scheme: str = "per_channel"
    weight_mode: str = "sym"
    activation_scheme: str = "asym"
    activation_observer: str = "mse"
    weight_observer: str = "minmax"
    percentile: float = 99.99
    power_of_two: bool = False
    equalize: bool = False
    calibration_per_class: int = 20
    calibration_clips: int | None = None
    calibration_split: str = "train"
    seed: int = 0
    qat: QATConfig = field(default_factory=QATConfig)

    def __post_init__(self) -> None:
        check_choice("quantize.method", self.method, METHOD_NAMES)
        check_range("quantize.weight_bits", self.weight_bits, 2, 8)
        check_range("quantize.activation_bits", self.activation_bits, 2, 8)
        check_choice("quantize.weight_scheme", self.weight_scheme, WEIGHT_SCHEMES)
        check_choice("quantize.weight_mode", self.weight_mode, WEIGHT_MODES)
        check_choice("quantize.activation_scheme", self.activation_scheme, ACTIVATION_SCHEMES)
        check_choice(
            "quantize.activation_observer", self.activation_observer, ACTIVATION_OBSERVER_NAMES
        )
        check_choice("quantize.weight_observer", self.weight_observer, WEIGHT_OBSERVER_NAMES)
        check_range("quantize.percentile", self.percentile, 50.0, 100.0)
        check_range("quantize.calibration_per_class", self.calibration_per_class, 1, 1_000_000)
        if self.calibration_clips is not None:
            check_range("quantize.calibration_clips", self.calibration_clips, 1, 10_000_000)
        check_choice(
            "quantize.calibration_split", self.calibration_split, ("train", "validation", "test")
        )
        if self.equalize and self.method == "dynamic":
            raise TinyKWSError("quantize.equalize works with methods ptq and qat, not dynamic")
        integers = ("weight_bits", "activation_bits", "calibration_per_class", "calibration_clips")
        for name in integers:
            value = getattr(self, name)  # calibration_clips may be None (per class then)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TinyKWSError(f"quantize.{name} must be an integer; got {value!r}")

    def per_channel(self, depthwise: bool) -> bool:
        """Whether a layer (depthwise conv or not) gets one weight scale per output channel."""
        if self.weight_scheme == "per_channel_depthwise":
            return depthwise
        return self.weight_scheme == "per_channel"

    @property
    def symmetric_activations(self) -> bool:
        return self.activation_scheme == "sym"

    @property
    def symmetric_weights(self) -> bool:
        return self.weight_mode == "sym"


@dataclass
class QuantData:
    """What quantization reads.

    Attributes:
        calibration: float32 (N, frames, bins) un-normalised features of the calibration clips.
        normalization: the model's per-bin `tinykws.features.frontend.Normalization`.
        training: `tinykws.train.loop.TrainingData` for QAT (training and validation splits).
    """

    calibration: Any
    normalization: Any
    training: Any = None


def quantize(model, config: QuantConfig, data: QuantData):
    """Quantize a float model by `config.method`; returns a `tinykws.quant.model.QuantizedModel`.

    The float model is not changed. Raises `TinyKWSError` naming the layer when a layer cannot
    be quantized, or when the calibration set is empty.
    """
    # lazy: these pull torch and import this package's configs (a cycle); the package itself
    # stays torch-free so that the CLI can read a QuantConfig without loading torch
    from tinykws.quant.dynamic import quantize_dynamic
    from tinykws.quant.ptq import quantize_ptq
    from tinykws.quant.qat import quantize_qat

    methods = {"ptq": quantize_ptq, "dynamic": quantize_dynamic, "qat": quantize_qat}
    return methods[config.method](model, config, data)
