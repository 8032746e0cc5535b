"""Parameter memory with real packing, and compression ratios."""

import numpy as np
import pytest
from quant_support import randomize_batchnorm

from tinykws.features.frontend import Normalization
from tinykws.models import build_model, count_params, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower
from tinykws.quant.sizes import (
    compression_ratio,
    float_memory,
    graph_memory,
    packed_bytes,
    quantized_memory,
)


def test_packing():
    assert [packed_bytes(10, b) for b in (8, 4, 2)] == [10, 5, 3]  # 2 or 4 weights per byte
    assert packed_bytes(9, 2) == 3 and packed_bytes(10, 3) == 5  # 3 bits use a 4-bit container
    assert packed_bytes(10, 6) == 10  # 5..7 bits use a byte


def calibrated(model, shape, **options):
    data = QuantData(
        np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32),
        Normalization((0.0,) * shape[1], (1.0,) * shape[1]),
    )
    return quantize(model, QuantConfig(**options), data)


@pytest.mark.parametrize("bits, weight_bytes", [(8, 16640), (4, 8320), (2, 4160)])
def test_tinyconv_memory_at_each_width(bits, weight_bytes):
    model = build_model(model_config("tinyconv", 4, (49, 40)))  # 640 + 16000 weights, 12 biases
    memory = quantized_memory(calibrated(model, (49, 40), weight_bits=bits))
    assert (memory.learnables, memory.weight_bytes, memory.bias_bytes) == (16652, weight_bytes, 48)
    assert memory.constant_bytes == 12 * 8  # multiplier + shift per output channel
    assert float_memory(model).total_bytes == 4 * 16652
    ratio = compression_ratio(float_memory(model), memory)
    assert ratio == pytest.approx(4 * 16652 / (weight_bytes + 48))


def test_batchnorm_counts_as_float_learnables_and_folds_away():
    model = randomize_batchnorm(build_model(model_config("dscnn_s", 12, (49, 10))))
    quantized = calibrated(model, (49, 10))
    memory = quantized_memory(quantized)
    channels = 64 * 9  # first conv + 4 x (depthwise + pointwise)
    assert float_memory(model).learnables == count_params(model)
    assert memory.learnables == count_params(model) - 2 * channels + channels  # gamma/beta -> bias
    assert graph_memory(lower(quantized)) == memory


def test_dynamic_range_memory_keeps_float_biases_and_scales():
    model = build_model(model_config("tinyconv", 4, (49, 40)))
    memory = quantized_memory(calibrated(model, (49, 40), method="dynamic"))
    assert (memory.weight_bytes, memory.bias_bytes, memory.constant_bytes) == (16640, 48, 48)
