"""Real models of every family, lowered to integer graphs, run in C exactly as the interpreter
runs them: int8, 4-bit and 2-bit weights, unpruned, magnitude-pruned (sparse weights) and
channel-pruned. Models are randomly initialised (non-trivial BatchNorm statistics) and
calibrated on random features; C outputs must equal interpret() on every input (atol = 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from c_support import assert_c_equals_interpreter, needs_gcc
from quant_support import randomize_batchnorm

from tinykws.features.frontend import Normalization
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

FAMILIES = {
    "tinyconv": ("tinyconv", (49, 40)),
    "dscnn": ({"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}, (49, 10)),
    "commandnet": ({"preset": "commandnet", "filters": [6, 8, 8, 8, 8]}, (98, 50)),
    "cnn3": ({"preset": "cnn3", "filters": [4, 6, 8], "dense_units": 16}, (128, 64)),
    "bcresnet": ({"preset": "bcresnet1"}, (98, 40)),
}
SPARSE_LAYER_TYPES = ("CONV_2D", "FULLY_CONNECTED")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def family_model(family: str):
    spec, shape = FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(model_config(spec, 12, shape))
    randomize_batchnorm(model)
    return model.eval(), shape


def lowered(model, shape, weight_bits: int):
    features = np.random.default_rng(1).normal(size=(16, *shape)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * shape[1], std=(1.0,) * shape[1])
    return lower(quantize(model, QuantConfig(weight_bits=weight_bits), QuantData(features, norm)))


@needs_gcc
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_family_equals_interpreter(tmp_path, family, bits):
    model, shape = family_model(family)
    graph = lowered(model, shape, bits)
    assert_c_equals_interpreter(graph, tmp_path, n=40, seed=bits)


@needs_gcc
@pytest.mark.parametrize("family", ["tinyconv", "dscnn", "commandnet", "cnn3", "bcresnet"])
@pytest.mark.parametrize("bits", [8, 4])
def test_magnitude_pruned_family_uses_sparse_weights(tmp_path, family, bits):
    """85 % of the weights are zero: every CONV_2D and FULLY_CONNECTED layer (the ones the C
    kernels read sparse; depthwise weights stay dense, and are half of BC-ResNet's) is stored
    sparse and saves over 40 % of its dense bytes (mask: 1 bit per weight)."""
    from tinykws.prune.unstructured import apply_magnitude_masks, finalize

    model, shape = family_model(family)
    apply_magnitude_masks(model, 0.85)
    finalize(model)
    graph = lowered(model, shape, bits)
    assert_c_equals_interpreter(graph, tmp_path, n=40, seed=bits)
    report = json.loads((tmp_path / "export.json").read_text())
    sparse_able = [r for r in report["layers"] if r["type"] in SPARSE_LAYER_TYPES]
    assert sparse_able and all(r["encoding"] == "sparse" for r in sparse_able)
    dense_bytes = sum(r["dense_weight_bytes"] for r in sparse_able)
    assert report["sparse_saved_bytes"] > 0.4 * dense_bytes


@needs_gcc
@pytest.mark.parametrize("family", ["dscnn", "commandnet", "bcresnet"])
def test_channel_pruned_family_equals_interpreter(tmp_path, family):
    from tinykws.prune import PruneConfig, prune

    model, shape = family_model(family)
    pruned, _ = prune(model, PruneConfig(method="l2", amount=0.5, retrain_enabled=False))
    graph = lowered(pruned.eval(), shape, 4)
    assert_c_equals_interpreter(graph, tmp_path, n=40)
