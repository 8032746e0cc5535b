"""Fake-quant model vs integer graph on real speech (skipped without the development clips)."""

import numpy as np
import pytest
import torch

from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.scoring import lower_if_possible, score_backends


def real_speech_data(root):
    from tinykws.data.speech_commands import DataConfig, load_dataset, load_waveforms
    from tinykws.features.batch import compute_features
    from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
    from tinykws.train.loop import TrainingData

    dataset = load_dataset(root, DataConfig(preset="real10", unknown_fraction=0.3))
    fe = FrontEnd(frontend_config("mfcc"))
    arrays = {}
    for split in ("train", "validation"):
        clips = dataset.clips(split)
        waves = load_waveforms(clips)
        arrays[split] = (waves, compute_features(waves, fe), dataset.label_indices(split))
    return TrainingData(
        fe,
        Normalization.fit(arrays["train"][1]),
        arrays["train"][0],
        arrays["train"][1],
        arrays["train"][2],
        arrays["validation"][1],
        arrays["validation"][2],
        np.zeros(0, np.float32),
        dataset.class_weights("train"),
    ), len(dataset.labels)


@pytest.mark.devdata
@pytest.mark.slow
def test_fake_quant_and_integer_graph_agree_on_real_speech(dev_data, tmp_path):
    from tinykws.data.augment import AugmentConfig
    from tinykws.models import build_model, model_config
    from tinykws.train.loop import TrainConfig, fit

    data, n_classes = real_speech_data(dev_data)
    torch.manual_seed(0)
    model = build_model(
        model_config(
            {"preset": "dscnn_s", "width_multiplier": 0.5}, n_classes, data.frontend.output_shape
        )
    )
    fit(
        model,
        data,
        TrainConfig(epochs=2, batch_size=64, augment=AugmentConfig(enabled=False)),
        tmp_path,
    )
    calibration = QuantData(data.train_features[::40], data.normalization)
    for bits in (8, 4):
        quantized = quantize(model.eval(), QuantConfig(weight_bits=bits), calibration)
        scores = score_backends(
            quantized,
            lower_if_possible(quantized),
            data.val_features,
            data.val_labels,
            data.normalization,
        )
        assert scores["n"] > 300
        assert scores["agreement"]["fakequant_int"] >= 0.995, bits
        assert scores["int_vs_fakequant_lsb"]["max"] <= 1.0 + 1e-4, bits
