"""Shared pieces of the quantization tests: tone-corpus data and small trained models."""

from __future__ import annotations

import torch

SMALL_DSCNN = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}
SMALL_COMMANDNET = {"preset": "commandnet", "filters": [6, 8, 8, 8, 8]}


def tone_data(root, frontend: str = "mfcc"):
    """TrainingData of the tone corpus (train and validation splits, no augmentation needed)."""
    from support import tone_training_data

    return tone_training_data(root, frontend)


def train_small(data, spec, out_dir, epochs: int = 8, with_meta: bool = False):
    """A small model of `spec` trained on `data` (clean features), in eval mode; with
    `with_meta`, out_dir/best.safetensors is a usable model file."""
    from tinykws.data.augment import AugmentConfig
    from tinykws.models import build_model, model_config
    from tinykws.train.loop import TrainConfig, fit

    torch.manual_seed(0)
    model = build_model(model_config(spec, 12, data.frontend.output_shape))
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, augment=AugmentConfig(enabled=False))
    fit(model, data, cfg, out_dir, model_meta(data, model) if with_meta else None)
    return model.eval()


def randomize_batchnorm(model, seed: int = 0):
    """Give every BatchNorm non-trivial statistics and affine parameters (in place)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model.eval()


def model_meta(data, model) -> dict:
    """Checkpoint metadata for a model trained on the tone corpus."""
    from tinykws.config import to_dict
    from tinykws.models import config_to_dict

    labels = [
        "yes",
        "no",
        "up",
        "down",
        "left",
        "right",
        "on",
        "off",
        "stop",
        "go",
        "_unknown_",
        "_silence_",
    ]
    return {
        "model": config_to_dict(model.config),
        "labels": labels,
        "frontend": to_dict(data.frontend.config),
        "normalization": data.normalization.to_dict(),
        "data": {"preset": "12", "unknown_fraction": 1.0},
    }
