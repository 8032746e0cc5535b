"""Tiny models of every family and tone-corpus training data, shared by the pruning tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinykws.models import build_model, model_config

# One small configuration per family (depthwise: dscnn, bcresnet; residual: bcresnet; flatten
# into an FC: tinyconv, commandnet, cnn3; global average: dscnn, cnn3_gap, bcresnet).
TINY_MODELS = {
    "tinyconv": ({"family": "tinyconv", "filters": 6}, (49, 40)),
    "dscnn": ({"family": "dscnn", "first_filters": 8, "block_filters": (8, 6)}, (49, 10)),
    "commandnet": ({"family": "commandnet", "filters": (4, 6, 8, 8, 6)}, (40, 20)),
    "cnn3": ({"family": "cnn3", "filters": (4, 6, 8), "dense_units": 8}, (128, 64)),
    "cnn3_gap": ({"preset": "cnn3_gap", "filters": (4, 6, 8), "dense_units": 8}, (64, 32)),
    "bcresnet": (
        {
            "family": "bcresnet",
            "head_channels": 6,
            "stage_channels": (4, 4, 6, 6),
            "classifier_channels": 8,
            "stage_blocks": (1, 2, 1, 2),
        },
        (20, 40),
    ),
}


def tiny_model(name: str, n_classes: int = 5, seed: int = 0) -> nn.Module:
    """A tiny model of `name` with random, non-trivial BatchNorm statistics (eval mode)."""
    spec, shape = TINY_MODELS[name]
    torch.manual_seed(seed)
    model = build_model(model_config(spec, n_classes, shape))
    randomize_norms(model, seed)
    return model.eval()


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm random running statistics and affine parameters, so a channel whose
    input is zero is not zero after the norm (what makes masking vs removal a real test)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)


def random_inputs(model: nn.Module, batch: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, *model.config.input_shape, generator=gen)


def tone_data(tone_corpus, frontend: str = "mfcc"):
    """`TrainingData` (train and validation splits) of the tone corpus."""
    from support import tone_training_data

    return tone_training_data(tone_corpus, frontend)


def quick_train_config(epochs: int = 1, lr: float = 3e-3):
    from tinykws.data.augment import AugmentConfig
    from tinykws.train.loop import TrainConfig

    return TrainConfig(
        epochs=epochs, batch_size=32, lr=lr, augment=AugmentConfig(enabled=False), device="cpu"
    )


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine oversubscribed threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
