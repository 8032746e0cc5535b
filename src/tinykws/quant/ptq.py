"""Post-training quantization: fold BatchNorm, calibrate activation ranges, round.

Activation ranges come from running the calibration clips (e.g. n per class, seeded) through the
float network with the configured observer; weight scales from the folded weights.

Example:
    >>> import numpy as np
    >>> from tinykws.features.frontend import Normalization
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig, QuantData
    >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
    >>> data = QuantData(np.random.default_rng(0).normal(size=(8, 49, 40)).astype(np.float32),
    ...                  Normalization(mean=(0.0,) * 40, std=(1.0,) * 40))
    >>> quantized = quantize_ptq(model, QuantConfig(weight_bits=4), data)
    >>> quantized.module.mode, quantized.history["calibration_clips"]
    ('fakequant', 8)
"""

from __future__ import annotations

from tinykws.quant.data import feature_batches
from tinykws.quant.model import QuantizedModel, QuantModel


def quantize_ptq(model, config, data) -> QuantizedModel:
    """Fold, calibrate on `data.calibration`, freeze: a fake-quant model ready to lower."""
    module = QuantModel.prepare(model, config)
    module.fold()
    history = {"calibration_clips": int(len(data.calibration))}
    if config.equalize:
        history["equalized_pairs"] = module.equalize()
    module.calibrate(feature_batches(data.calibration, data.normalization))
    module.freeze_weights()
    module.freeze_observers()
    module.set_mode("fakequant")
    return QuantizedModel(module, config, history)
