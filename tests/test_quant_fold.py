"""BatchNorm folding is exact in float for every model family (atol 1e-5)."""

import copy

import pytest
import torch
from quant_support import randomize_batchnorm
from torch import nn

from tinykws.models import build_model, model_config
from tinykws.models.fold import conv_bn_pairs, fold_batchnorm, folded_weight_bias

FAMILIES = [
    ("tinyconv", (49, 40)),
    ("dscnn_s", (49, 10)),
    ("commandnet", (98, 50)),
    ("cnn3", (128, 64)),
    ("bcresnet1", (98, 40)),
]


@pytest.mark.parametrize("preset, shape", FAMILIES)
def test_folding_is_exact_for_every_family(preset, shape):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(model_config(preset, 12, shape)))
    x = torch.randn(4, 1, *shape)
    folded = fold_batchnorm(model)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    remaining = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    if preset == "bcresnet1":  # SubSpectralNorm follows a reshape, not a conv: left alone
        assert remaining and all(
            ".ssn." in n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)
        )
    else:
        assert not remaining


def test_folding_a_linear_layer_and_keeping_an_existing_bias():
    torch.manual_seed(1)
    model = randomize_batchnorm(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()))
    x = torch.randn(7, 6)
    folded = fold_batchnorm(model)
    assert conv_bn_pairs(model) == [("0", "1")]
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_the_original_model_is_untouched_and_folding_is_differentiable():
    model = randomize_batchnorm(nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3)))
    before = copy.deepcopy(model.state_dict())
    fold_batchnorm(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    weight, bias = folded_weight_bias(model[0].weight, None, model[1])
    (weight.sum() + bias.sum()).backward()
    assert model[1].weight.grad is not None and model[0].weight.grad is not None
