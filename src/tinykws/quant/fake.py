"""Fake quantization: round float tensors onto an integer grid and back, with a straight-through
gradient, exactly as the integer graph will compute them.

    quantize:    q = clamp(round_half_away(x / scale) + zero_point, qmin, qmax)
    dequantize:  x_hat = (q - zero_point) * scale

Rounding is half away from zero (TFLite's `TfLiteRound` / `std::round`), never half to even
(`torch.round`) and never truncation. Divisions and products are float32, like TFLite's
`AffineQuantize`, so a fake-quantized input equals the integer graph's QUANTIZE bit for bit.

Weights are symmetric (zero point 0) with the narrow range ±(2^(bits-1) - 1): ±127 at 8 bits,
±7 at 4 bits, ±1 at 2 bits. Activations use the full range [-2^(bits-1), 2^(bits-1) - 1],
asymmetric (any zero point) or symmetric (zero point 0). Biases are int32 at scale
s_in * s_w[c] (float32 product), rounded half away from zero in float64.

Example:
    >>> import torch
    >>> x = torch.tensor([-0.25, 0.25, 0.75, 2.0])
    >>> fake_quantize(x, torch.tensor(0.5), torch.tensor(0.0), -128, 127).tolist()
    [-0.5, 0.5, 1.0, 2.0]
    >>> affine_qparams(0.0, 6.0, bits=8, symmetric=False)  # post-ReLU range
    (0.0235294122248888, -128)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tinykws.ir import fixedpoint as fp
from tinykws.ir.fixedpoint import round_half_away
from tinykws.ir.params import power_of_two_ceil, quantize_int32


def activation_qrange(bits: int) -> tuple[int, int]:
    """(qmin, qmax) of a `bits`-wide activation: the full two's-complement range."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


class _FakeQuantize(torch.autograd.Function):
    """Quantize-dequantize; the gradient passes straight through where the value is in range."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax, steps):
        q = x / scale
        if steps is not None:  # TFLite's first rounding, to 1/steps of a step
            q = round_half_away(q.mul_(steps)).div_(steps)
        q = round_half_away(q).add_(zero_point)
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return q.clamp_(qmin, qmax).sub_(zero_point).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """Quantize and dequantize `x` (straight-through estimator, clipped to the range).

    Args:
        x: float32 tensor, any shape.
        scale: float32 tensor broadcastable to `x` (a scalar, or (C, 1, 1, 1) per channel).
        zero_point: integer-valued float tensor broadcastable to `x`.
        qmin, qmax: the integer range.
        steps: optional powers of two 2^r broadcastable to `x`: round x / scale to 1/2^r first,
            then to an integer, as TFLite's requantization does (see `requantize_steps`).
    """
    return _FakeQuantize.apply(x, scale, zero_point, qmin, qmax, steps)


def requantize_steps(real_multiplier: torch.Tensor) -> torch.Tensor:
    """2^r for each requantization multiplier M = s_in * s_w / s_out, r = its right shift.

    TFLite's `MultiplyByQuantizedMultiplier` rounds twice: x * M is first rounded to 1/2^r of an
    output step (the high half of the Q31 product), then divided by 2^r with rounding. r is the
    right shift of `tinykws.ir.fixedpoint.quantize_multiplier` (its carry and its flush of tiny
    multipliers included; 0 when M >= 1/2). Rounding twice the same way here makes the
    fake-quant output land where the integer kernel's does.
    """
    reals = real_multiplier.detach().double().cpu().numpy()
    _, shifts = fp.quantize_multipliers(reals)
    steps = np.exp2(np.maximum(-shifts.astype(np.float64), 0.0)).reshape(reals.shape)
    return torch.from_numpy(steps).float().to(real_multiplier.device)


def quantize_to_int(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    """The integers `fake_quantize` rounds to (same float32 arithmetic), as int64."""
    with torch.no_grad():
        return fp.quantize(x, scale, zero_point, qmin, qmax).to(torch.int64)


def channel_view(scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A per-output-channel scale (C,) (or (1,)) shaped to broadcast over `weight` (C, ...)."""
    return scale.reshape(-1, *([1] * (weight.dim() - 1)))


def bias_scale(input_scale: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """s_in * s_w[c] as the float32 product the integer graph uses."""
    return input_scale.float() * weight_scale.float()


def quantize_bias(bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int32 bias values at `scale` (`tinykws.ir.params.quantize_int32`), as int64."""
    values, scales = (t.detach().cpu().numpy() for t in (bias, scale))
    integers = quantize_int32(values, scales).astype(np.int64)
    return torch.from_numpy(integers).to(bias.device)


def fake_quantize_bias(bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The bias as the integer graph holds it (int32 at `scale`), straight-through gradient."""
    exact = (quantize_bias(bias, scale).double() * scale.double()).float()
    return bias + (exact - bias).detach()


def affine_qparams(
    low: float, high: float, bits: int, symmetric: bool, power_of_two: bool = False
) -> tuple[float, int]:
    """(scale, zero_point) of a per-tensor activation whose values lie in [low, high].

    The range is widened to include 0 so that zero (ReLU output, padding) is exact. Symmetric:
    zero point 0, scale = max(|low|, |high|) / qmax. Asymmetric: scale = (high - low) /
    (qmax - qmin), zero point = qmin - round(low / scale) (half away from zero), clamped.
    A range of zero width gets scale 1. Scales are float32 values.
    """
    qmin, qmax = activation_qrange(bits)
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if symmetric:
        scale = max(-low, high) / qmax
    else:
        scale = (high - low) / (qmax - qmin)
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    if power_of_two:
        scale = power_of_two_ceil(scale)
    scale = float(np.float32(scale))
    if symmetric:
        return scale, 0
    zero_point = qmin - int(fp.round_half_away(low / scale))
    return scale, int(min(max(zero_point, qmin), qmax))
