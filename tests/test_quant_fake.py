"""Fake quantization against the integer reference: rounding mode, grids, biases, gradients."""

import numpy as np
import pytest
import torch

from tinykws.ir import fixedpoint as fp
from tinykws.ir import kernels
from tinykws.ir.params import quantize_bias as graph_quantize_bias
from tinykws.ir.params import weight_qrange
from tinykws.quant.fake import (
    activation_qrange,
    affine_qparams,
    fake_quantize,
    quantize_bias,
    quantize_to_int,
    round_half_away,
)


def test_rounding_is_half_away_from_zero_including_the_float32_trap():
    x = torch.tensor([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 2.4999998])
    assert round_half_away(x).tolist() == [1, -1, 2, -2, 3, -3, 0, 0, 2]
    assert torch.round(torch.tensor([0.5, 2.5])).tolist() == [0, 2]  # what we must not use


def test_rounding_equals_the_integer_reference_on_many_values_and_ties():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=20_000) * 300).astype(np.float32)
    x[::5] = np.floor(x[::5]) + 0.5  # exact ties
    for dtype in (torch.float32, torch.float64):
        values = torch.from_numpy(x).to(dtype)
        assert np.array_equal(round_half_away(values).numpy(), fp.round_half_away(values.numpy()))


def test_input_fake_quant_equals_the_graph_quantize_kernel_bit_for_bit():
    rng = np.random.default_rng(1)
    scale, zero_point = np.float32(0.037), -7
    x = (rng.normal(size=50_000) * 3).astype(np.float32)
    x[:1000] = ((np.arange(1000) - 500 + 0.5) * scale).astype(np.float32)  # near ties
    ints = kernels.quantize_f32_s8(x, scale, zero_point).astype(np.int64)
    ours = quantize_to_int(
        torch.from_numpy(x), torch.tensor(scale), torch.tensor(float(zero_point)), -128, 127
    )
    assert np.array_equal(ours.numpy(), ints)
    fq = fake_quantize(
        torch.from_numpy(x), torch.tensor(scale), torch.tensor(float(zero_point)), -128, 127
    )
    assert np.array_equal(fq.numpy(), kernels.dequantize_s8_f32(ints, scale, zero_point))


def test_ranges_per_width():
    assert activation_qrange(8) == (-128, 127) and activation_qrange(2) == (-2, 1)
    assert weight_qrange(8) == (-127, 127) and weight_qrange(4) == (-7, 7)
    assert weight_qrange(2) == (-1, 1)  # ternary


def test_gradient_passes_straight_through_inside_the_range_only():
    x = torch.tensor([-300.0, -1.2, 0.3, 0.7, 300.0], requires_grad=True)
    y = fake_quantize(x, torch.tensor(1.0), torch.tensor(0.0), -128, 127)
    y.sum().backward()
    assert y.tolist() == [-128.0, -1.0, 0.0, 1.0, 127.0]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_asymmetric_qparams_cover_the_range_and_represent_zero(bits):
    qmin, qmax = activation_qrange(bits)
    scale, zero_point = affine_qparams(-0.7, 5.3, bits, symmetric=False)
    assert qmin <= zero_point <= qmax
    assert scale == pytest.approx(6.0 / (qmax - qmin), rel=1e-6)
    assert np.float32(scale) == scale  # float32-representable, as the graph stores it
    assert (qmin - zero_point) * scale == pytest.approx(-0.7, abs=scale)
    assert (qmax - zero_point) * scale == pytest.approx(5.3, abs=scale)


def test_symmetric_and_power_of_two_qparams():
    assert affine_qparams(-1.0, 2.54, 8, symmetric=True) == (pytest.approx(0.02), 0)
    scale, zero_point = affine_qparams(0.0, 3.0, 8, symmetric=False, power_of_two=True)
    assert scale == 2.0**-6 and zero_point == -128  # 3/255 = 0.0118 -> 1/64
    assert affine_qparams(0.0, 0.0, 8, symmetric=False) == (1.0, -128)  # a dead tensor


def test_bias_quantization_equals_the_graph_builder():
    rng = np.random.default_rng(2)
    bias = rng.normal(size=64).astype(np.float32)
    weight_scales = rng.uniform(1e-3, 1e-1, size=64).astype(np.float32)
    input_scale = np.float32(0.0173)
    expected = graph_quantize_bias(bias, input_scale, weight_scales)
    scale = torch.tensor(input_scale) * torch.from_numpy(weight_scales)
    assert np.array_equal(quantize_bias(torch.from_numpy(bias), scale).numpy(), expected)
