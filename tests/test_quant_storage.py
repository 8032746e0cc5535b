"""What the size table says about weights whose width the C kernels do not pack: 6-bit weights
take 8 bits, 3-bit weights 4, and the ideal packed size stands beside the stored one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinykws.features.frontend import Normalization
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower
from tinykws.quant.sizes import graph_memory, quantized_memory

TINYCONV_WEIGHTS = (640, 16000)  # conv 8x1x10x8, linear 4 x 4000; 12 biases


def _quantized(**options):
    model = build_model(model_config("tinyconv", 4, (49, 40)))
    data = QuantData(
        np.random.default_rng(0).normal(size=(8, 49, 40)).astype(np.float32),
        Normalization((0.0,) * 40, (1.0,) * 40),
    )
    return quantize(model, QuantConfig(**options), data)


@pytest.mark.parametrize("bits, stored", [(8, 8), (7, 8), (6, 8), (5, 8), (4, 4), (3, 4), (2, 2)])
def test_stored_and_ideal_weight_bytes(bits, stored):
    quantized = _quantized(weight_bits=bits)
    memory = quantized_memory(quantized)
    assert memory.storage_bits == stored
    assert memory.weight_bytes == sum(math.ceil(n * stored / 8) for n in TINYCONV_WEIGHTS)
    assert memory.ideal_weight_bytes == sum(math.ceil(n * bits / 8) for n in TINYCONV_WEIGHTS)
    note = memory.storage_note
    if stored == bits:
        assert note is None
    else:
        assert note == (
            f"{bits}-bit weights stored as {stored} bits: the C kernels pack 8, 4 or 2 bits "
            "per value"
        )
    assert graph_memory(lower(quantized)) == memory
    table = memory.to_dict()
    assert (table["storage_bits"], table["storage_note"]) == (stored, note)


def test_size_table_shows_the_stored_width_and_why():
    from tinykws.quant.sizes import float_memory
    from tinykws.report.sections import _size_table

    quantized = _quantized(weight_bits=6)
    sizes = {
        "original": float_memory(quantized.module.net).to_dict(),
        "quantized": quantized_memory(quantized).to_dict(),
    }
    html = _size_table(sizes)
    assert "<td>6 (stored as 8)</td>" in html and "<td>32</td>" in html
    assert f"<td>{480 + 12000 + 48:,}</td>" in html  # 6 bits exactly, plus int32 biases
    assert "6-bit weights stored as 8 bits: the C kernels pack 8, 4 or 2 bits per value." in html


def test_asymmetric_weights_add_a_zero_point_per_scale():
    symmetric = quantized_memory(_quantized(weight_bits=4))
    asymmetric = quantized_memory(_quantized(weight_bits=4, weight_mode="asym"))
    assert asymmetric.weight_bytes == symmetric.weight_bytes
    assert asymmetric.constant_bytes == symmetric.constant_bytes + 4 * (8 + 4)
