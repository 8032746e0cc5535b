"""Round like the integer kernels: how a fake-quant layer's output lands on the very integer the
integer graph computes.

Rounding x / s_out once is not what TFLite does:
- CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and ADD requantize with
  `MultiplyByQuantizedMultiplier`, which rounds twice: the Q31 product is rounded to 1/2^r of an
  output step (r = the multiplier's right shift), then divided by 2^r with rounding. With 4-bit
  weights r is often only 2-4, so one rounding would be off by one step in several percent of
  the outputs. `weighted_steps` / `add_steps` give the 2^r that `fake_quantize` rounds to first.
- MEAN sums the int8 inputs and requantizes the integer sum with 1/n folded into its Q31
  multiplier: `fake_mean` recovers the exact sum (the inputs are on their grid) and applies the
  graph's own constants in integers.
- SiLU is LOGISTIC (a 256-entry table onto scale 1/256) then MUL: `fake_silu` runs the graph's
  own kernels on the integer input.
- AVERAGE_POOL_2D rounds the mean of the raw int8 values (zero point included) half away from
  zero: `fake_avg_pool` does the same.

Each function takes the `QuantModel` and the step, and returns what the fake-quant forward pass
uses; gradients pass straight through (QAT trains through them).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tinykws.ir import fixedpoint as fp
from tinykws.ir import kernels
from tinykws.ir.fixedpoint import round_half_away
from tinykws.ir.graph import Tensor
from tinykws.ir.params import (
    ADD_LEFT_SHIFT,
    LOGISTIC_OUTPUT_SCALE,
    LOGISTIC_OUTPUT_ZERO_POINT,
    logistic_table,
    mean_params,
    mul_params,
)
from tinykws.models.fold import band_select
from tinykws.quant.fake import requantize_steps


def output_steps(qm, step, ndim: int) -> torch.Tensor:
    """2^r per output channel of a conv, depthwise, linear or add step, shaped for (N, C, ...);
    (1, C, 1, W) after a SubSpectralNorm, whose bins take their band's channel constants."""
    steps = add_steps(qm, step) if step.kind == "add" else weighted_steps(qm, step)
    if step.ssn:
        width = step.shape[3]
        steps = steps.reshape(1, -1, 1, 1).expand(1, steps.numel(), 1, width)
        return band_select(steps, qm.net.get_submodule(step.ssn).num_subbands)
    return steps.reshape(1, -1, *([1] * (ndim - 2)))


@torch.no_grad()
def weighted_steps(qm, step) -> torch.Tensor:
    """2^r of s_in * s_w[c] / s_out as the graph computes it: a double product of the float32
    scales (TFLite's Prepare), except a per-tensor FULLY_CONNECTED's float32 s_in * s_w."""
    s_in = qm.act[qm.source[step.inputs[0]]].scale
    s_w, s_out = qm.weight_scale(step), qm.act[step.name].scale
    if step.kind == "linear" and s_w.numel() == 1:
        return requantize_steps((s_in * s_w).double() / s_out.double())
    return requantize_steps(s_in.double() * s_w.double() / s_out.double())


@torch.no_grad()
def add_steps(qm, step) -> torch.Tensor:
    """2^r of ADD's output multiplier 2 * max(s_a, s_b) / (2^20 * s_out)."""
    s_a, s_b = (qm.act[qm.source[name]].scale for name in step.inputs)
    twice_max = 2 * torch.maximum(s_a, s_b).double()
    return requantize_steps(twice_max / (2.0**ADD_LEFT_SHIFT * qm.act[step.name].scale.double()))


def input_shape_of(qm, step) -> tuple[int, ...]:
    """NCHW shape (batch 1) of the step's first input."""
    source = step.inputs[0]
    return tuple(qm.trace.input_shape if source == "input" else qm.trace.step(source).shape)


def fake_mean(qm, step, mean: torch.Tensor, quantizer) -> torch.Tensor:
    """The average (over `step.axes`) exactly as the integer MEAN computes it."""
    shape = input_shape_of(qm, step)
    count = int(np.prod([shape[a] for a in step.axes]))
    s_in = float(qm.act[qm.source[step.inputs[0]]].scale)
    scale, zero_point = quantizer.qparams()
    params = mean_params(  # the constants depend only on the scales and the count averaged
        [Tensor("x", (1, count, 1, 1), "int8", (s_in,), (0,))],
        Tensor("y", (1, 1, 1, 1), "int8", (scale,), (zero_point,)),
        {"axes": [1, 2]},
    )
    with torch.no_grad():
        total = round_half_away(mean.detach().double().cpu() * count / s_in).numpy()
        q = (
            fp.multiply_by_quantized_multiplier(
                total.astype(np.int64), params["multiplier"], params["shift"]
            )
            + zero_point
        )
        q = np.clip(q, quantizer.qmin, quantizer.qmax)
        exact = torch.from_numpy(((q - zero_point) * np.float32(scale)).astype(np.float32))
    return mean + (exact.to(mean) - mean).detach()


def fake_silu(qm, step, x: torch.Tensor, y: torch.Tensor, quantizer) -> torch.Tensor:
    """SiLU exactly as the integer LOGISTIC + MUL compute it, from the input `x` (on its grid);
    `y` is the float SiLU, whose gradient passes."""
    s_in, zp_in = qm.qparams(step.inputs[0])
    scale, zero_point = quantizer.qparams()
    sigmoid = (LOGISTIC_OUTPUT_SCALE, LOGISTIC_OUTPUT_ZERO_POINT)
    params = mul_params(
        [Tensor("x", (1,), "int8", (s_in,), (zp_in,)), Tensor("s", (1,), "int8", *zip(sigmoid))],
        Tensor("y", (1,), "int8", (scale,), (zero_point,)),
        {},
    )
    with torch.no_grad():
        q = round_half_away(x.detach().double().cpu() / s_in).numpy().astype(np.int64) + zp_in
        q = np.clip(q, -128, 127)
        s = kernels.logistic_s8(q, logistic_table(s_in, zp_in))
        out = kernels.mul_s8(q, s, (zp_in, sigmoid[1], zero_point), params)
        exact = (out.astype(np.int64) - zero_point) * np.float32(scale)
        exact = torch.from_numpy(exact.astype(np.float32))
    return y + (exact.to(y) - y).detach()


def fake_avg_pool(qm, step, mean: torch.Tensor) -> torch.Tensor:
    """The average exactly as the integer AVERAGE_POOL_2D computes it, on the input's grid."""
    quantizer = qm.act[qm.source[step.name]]
    pool = qm.net.get_submodule(step.module)
    kernel = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
    with torch.no_grad():
        ones = torch.ones(1, 1, *input_shape_of(qm, step)[2:], device=mean.device)
        count = F.avg_pool2d(ones, kernel, pool.stride, pool.padding, count_include_pad=True)
        count = torch.round(count * kernel[0] * kernel[1]).double()  # in-bounds pixels
        scale, zero_point = quantizer.scale.double(), quantizer.zero_point.double()
        total = round_half_away(mean.double() / scale * count)  # exact: inputs on the grid
        raw = round_half_away((total + zero_point * count) / count)
        exact = ((raw.clamp(quantizer.qmin, quantizer.qmax) - zero_point) * scale).float()
    return mean + (exact - mean).detach()
