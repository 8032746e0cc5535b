"""Integer kernels of TFLite (Micro)'s reference implementation, in numpy, bit-exact.

Each `*_s8` function reproduces one `reference_integer_ops` / `reference_ops` kernel of TFLite
Micro for int8 tensors (LiteRT's reference kernels agree, except that its FULLY_CONNECTED
requantizes in double: `fully_connected_double_s8`). Layout is NHWC; the batch dimension N may
be any size. Float32 ops live in `tinykws.ir.interpret`.

Accumulators: products of int8 values are summed exactly (int64, or float64 matrix products
whose every partial sum is an integer below 2^53, hence exact) and then wrapped to int32, which
is what TFLite's int32 accumulator gives, overflow included (modular sums commute).

Example:
    >>> import numpy as np
    >>> x = np.array([[[[1], [2]], [[3], [4]]]], np.int8)         # (1, 2, 2, 1)
    >>> window = Window((2, 2), (2, 2), (1, 1), (0, 0, 0, 0))
    >>> avg_pool2d_s8(x, window, (-128, 127)).ravel().tolist()    # (10 + 2) // 4
    [3]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tinykws.ir import fixedpoint as fp


@dataclass(frozen=True)
class Window:
    """A sliding window: filter (KH, KW), stride (SH, SW), dilation (DH, DW), pads (T, B, L, R)."""

    filter_hw: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.filter_hw, self.stride, self.dilation
        top, bottom, left, right = self.pads
        return (
            (h + top + bottom - (kh - 1) * dh - 1) // sh + 1,
            (w + left + right - (kw - 1) * dw - 1) // sw + 1,
        )


@dataclass(frozen=True)
class Requantize:
    """int32 accumulator -> int8 output: per-channel Q31 multiplier and shift, zero point, clamp.

    multiplier, shift: int32 arrays of shape (C,) or (1,) (broadcast along the last axis).
    output_zero_point: int8 range. activation_range: (min, max) within [-128, 127].
    """

    multiplier: np.ndarray
    shift: np.ndarray
    output_zero_point: int
    activation_range: tuple[int, int]

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """acc int64 (..., C) already wrapped to int32 -> int8 (..., C), TFLite's order of steps."""
        scaled = fp.multiply_by_quantized_multiplier(acc, self.multiplier, self.shift)
        low, high = self.activation_range
        return np.clip(scaled + self.output_zero_point, low, high).astype(np.int8)


def pad_hw(x: np.ndarray, pads, value) -> np.ndarray:
    """Pad the H and W axes of an NHWC array by (top, bottom, left, right) with `value`."""
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def taps(x_padded: np.ndarray, window: Window, out_hw) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (i, j, view (N, OH, OW, C)): the input pixel under tap (i, j) for each output."""
    (kh, kw), (sh, sw), (dh, dw) = window.filter_hw, window.stride, window.dilation
    oh, ow = out_hw
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            yield (
                i,
                j,
                x_padded[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw],
            )


def conv2d_s8(x, x_zero_point: int, weights, bias, window: Window, requant: Requantize):
    """TFLite `reference_integer_ops::ConvPerChannel`.

    Args:
        x: int8 (N, H, W, C_in), asymmetric with `x_zero_point`.
        weights: int8 (C_out, KH, KW, C_in), symmetric (zero point 0), any range within int8.
        bias: int32 (C_out,) at scale s_in * s_w[c].
        window: geometry; padded pixels contribute nothing (as if equal to the zero point).
        requant: per-output-channel requantization.

    Returns:
        int8 (N, OH, OW, C_out).
    """
    out_hw = window.out_hw(x.shape[1], x.shape[2])
    w = weights.astype(np.float64).reshape(weights.shape[0], -1).T  # (KH * KW * C_in, C_out)
    acc = np.empty((x.shape[0], *out_hw, weights.shape[0]), np.int64)
    for start in range(0, x.shape[0], _chunk(out_hw, w.shape[0])):
        xp = pad_hw(
            x[start : start + _chunk(out_hw, w.shape[0])].astype(np.float64) - x_zero_point,
            window.pads,
            0.0,
        )
        patches = np.concatenate([tap for _, _, tap in taps(xp, window, out_hw)], axis=-1)
        acc[start : start + len(xp)] = patches @ w  # integer-valued float64: exact below 2^53
    return requant.apply(fp.wrap_int32(acc + bias.astype(np.int64)))


def _chunk(out_hw, patch_size: int) -> int:
    """Samples per im2col block, keeping the float64 patch matrix near 64 MB."""
    return max(1, (1 << 23) // (out_hw[0] * out_hw[1] * patch_size))


def depthwise_conv2d_s8(x, x_zero_point, weights, bias, depth_multiplier, window, requant):
    """TFLite `reference_integer_ops::DepthwiseConvPerChannel`.

    Args:
        x: int8 (N, H, W, C_in) with `x_zero_point`.
        weights: int8 (1, KH, KW, C_in * depth_multiplier); output channel c reads input channel
            c // depth_multiplier.
        bias: int32 (C_in * depth_multiplier,).
        depth_multiplier: int >= 1.
        window, requant: as in `conv2d_s8`.

    Returns:
        int8 (N, OH, OW, C_in * depth_multiplier).
    """
    out_hw = window.out_hw(x.shape[1], x.shape[2])
    xs = x.astype(np.float64) - x_zero_point
    if depth_multiplier > 1:
        xs = np.repeat(xs, depth_multiplier, axis=3)
    xp = pad_hw(xs, window.pads, 0.0)
    w = weights.astype(np.float64)
    acc = np.zeros((x.shape[0], *out_hw, weights.shape[3]), np.float64)
    for i, j, tap in taps(xp, window, out_hw):
        acc += tap * w[0, i, j]  # integer-valued float64: exact below 2^53
    return requant.apply(fp.wrap_int32(acc.astype(np.int64) + bias.astype(np.int64)))


def fully_connected_s8(x, x_zero_point, weights, bias, requant):
    """TFLite (Micro) `reference_integer_ops::FullyConnected` / `FullyConnectedPerChannel`.

    Args:
        x: int8, any shape whose size is a multiple of C_in; read as rows of C_in values.
        weights: int8 (C_out, C_in), symmetric.
        bias: int32 (C_out,).
        requant: one multiplier (per tensor) or C_out (per channel).

    Returns:
        int8 (rows, C_out).
    """
    return requant.apply(_fc_accumulate(x, x_zero_point, weights, bias))


def fully_connected_double_s8(
    x, x_zero_point, weights, bias, real_scales, output_zero_point, activation_range
):
    """LiteRT's reference FULLY_CONNECTED, which requantizes in double precision.

    out = round(double(acc) * real_scales[c]) + output_zero_point, rounded half away from zero,
    with real_scales[c] = double(s_in) * double(s_w[c]) / double(s_out). TFLite Micro uses the
    fixed-point `fully_connected_s8`; the two differ only where acc * real lies within about
    2^-20 of a rounding tie.
    """
    acc = _fc_accumulate(x, x_zero_point, weights, bias).astype(np.float64)
    scaled = fp.round_half_away(acc * np.asarray(real_scales, np.float64))
    scaled = np.clip(scaled, fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)
    return np.clip(scaled + output_zero_point, *activation_range).astype(np.int8)


def _fc_accumulate(x, x_zero_point, weights, bias) -> np.ndarray:
    rows = x.reshape(-1, weights.shape[1]).astype(np.float64) - x_zero_point
    acc = (rows @ weights.astype(np.float64).T).astype(np.int64)  # exact, see module docstring
    return fp.wrap_int32(acc + bias.astype(np.int64))


def max_pool2d_s8(x, window: Window, activation_range):
    """TFLite `reference_integer_ops::MaxPool`: max over the in-bounds pixels, then clamp.

    x: int8 (N, H, W, C); output int8 (N, OH, OW, C) with the input's scale and zero point.
    Padding holds -128, the reference's starting value, so it never changes a result.
    """
    out_hw = window.out_hw(x.shape[1], x.shape[2])
    xp = pad_hw(x, window.pads, -128)
    result = np.full((x.shape[0], *out_hw, x.shape[3]), -128, np.int8)
    for _, _, tap in taps(xp, window, out_hw):
        np.maximum(result, tap, out=result)
    return np.clip(result, *activation_range).astype(np.int8)


def avg_pool2d_s8(x, window: Window, activation_range):
    """TFLite `reference_integer_ops::AveragePool`: mean of the in-bounds pixels only.

    The sum s over the n in-bounds pixels is divided rounding half away from zero, as
    (s + n/2) / n for s > 0 and (s - n/2) / n otherwise, with C's truncating division.
    x: int8 (N, H, W, C); output int8 (N, OH, OW, C), same scale and zero point.
    """
    out_hw = window.out_hw(x.shape[1], x.shape[2])
    xp = pad_hw(x.astype(np.int64), window.pads, 0)
    ones = pad_hw(np.ones((1, *x.shape[1:3], 1), np.int64), window.pads, 0)
    total = np.zeros((x.shape[0], *out_hw, x.shape[3]), np.int64)
    count = np.zeros((1, *out_hw, 1), np.int64)
    for (_, _, tap), (_, _, one) in zip(taps(xp, window, out_hw), taps(ones, window, out_hw)):
        total += tap
        count += one
    half = count // 2
    result = _divide_truncating(np.where(total > 0, total + half, total - half), count)
    return np.clip(result, *activation_range).astype(np.int8)


def _divide_truncating(num: np.ndarray, den) -> np.ndarray:
    """C integer division (rounds toward zero)."""
    return np.sign(num) * (np.abs(num) // den)


def mean_s8(x, axes, x_zero_point, multiplier, shift, output_zero_point):
    """TFLite `reference_ops::QuantizedMeanOrSum` over `axes` (keep_dims), int8.

    acc = sum(x) - x_zp * n over the n values averaged (int32); out =
    MultiplyByQuantizedMultiplier(acc, multiplier, shift) + output zero point, clamped.
    `multiplier`/`shift` already include the 1/n factor (see `tinykws.ir.params.mean_params`).
    x: int8 (N, H, W, C) -> int8 with 1 along each axis of `axes` ((1, 2) or (2,)).
    """
    axes = tuple(int(a) for a in axes)
    count = int(np.prod([x.shape[a] for a in axes]))
    acc = fp.wrap_int32(x.astype(np.int64).sum(axis=axes, keepdims=True) - x_zero_point * count)
    acc = fp.multiply_by_quantized_multiplier(acc, multiplier, shift)
    return np.clip(acc + output_zero_point, -128, 127).astype(np.int8)


def add_s8(a, b, zero_points, params):
    """TFLite `reference_integer_ops::Add` (broadcasting as numpy).

    Both inputs, minus their zero points, are shifted left by `left_shift` (20), scaled by
    their multipliers onto a common scale 2 * max(s_a, s_b), summed, and rescaled to the
    output (each step `MultiplyByQuantizedMultiplierSmallerThanOneExp`).

    Args:
        a, b: int8 arrays. zero_points: (a_zp, b_zp, output_zp).
        params: the op's params ("input_multiplier", "input_shift" of shape (2,),
            "output_multiplier", "output_shift", "left_shift", "activation_range").
    """
    mul = fp.multiply_by_quantized_multiplier_smaller_than_one_exp
    left = int(params["left_shift"])
    scaled = [
        mul(
            (v.astype(np.int64) - zp) << left,
            params["input_multiplier"][k],
            params["input_shift"][k],
        )
        for k, (v, zp) in enumerate(((a, zero_points[0]), (b, zero_points[1])))
    ]
    raw = mul(
        fp.wrap_int32(scaled[0] + scaled[1]), params["output_multiplier"], params["output_shift"]
    )
    return np.clip(raw + zero_points[2], *params["activation_range"]).astype(np.int8)


def mul_s8(a, b, zero_points, params):
    """TFLite `reference_integer_ops::Mul` (broadcasting as numpy).

    out = zp_out + MultiplyByQuantizedMultiplier((a - zp_a) * (b - zp_b), multiplier, shift),
    clamped to the activation range.
    """
    product = (a.astype(np.int64) - zero_points[0]) * (b.astype(np.int64) - zero_points[1])
    raw = fp.multiply_by_quantized_multiplier(product, params["multiplier"], params["shift"])
    return np.clip(raw + zero_points[2], *params["activation_range"]).astype(np.int8)


def logistic_s8(x, table):
    """int8 LOGISTIC by table lookup: out = table[x + 128] (see `params.logistic_table`)."""
    return np.asarray(table, np.int8)[x.astype(np.int64) + 128]


def softmax_s8(x, input_multiplier, input_left_shift, diff_min):
    """TFLite `reference_ops::Softmax` for int8 in and out, over the last axis (gemmlowp exp).

    Output scale is 1/256 with zero point -128. Differences to the row maximum below `diff_min`
    give -128; others go through exp in Q5.26 -> Q0, a sum in Q12, and a fixed-point reciprocal.
    """
    x64 = x.astype(np.int64)
    diff = x64 - x64.max(axis=-1, keepdims=True)
    live = diff >= diff_min
    scaled = fp.multiply_by_quantized_multiplier_greater_than_one(
        np.where(live, diff, 0), input_multiplier, input_left_shift
    )
    exps = fp.exp_on_negative_values(scaled, 5)
    terms = np.where(live, fp.rescale(exps, 0, 12), 0)
    sum_of_exps = fp.wrap_int32(terms.sum(axis=-1, keepdims=True))
    reciprocal, bits_over_unit = fp.get_reciprocal(sum_of_exps, 12)
    product = fp.saturating_rounding_doubling_high_mul(reciprocal, exps)
    unsaturated = fp.rounding_divide_by_pot(product, bits_over_unit + 31 - 8)
    out = np.clip(unsaturated - 128, -128, 127)
    return np.where(live, out, -128).astype(np.int8)


def quantize_f32_s8(x, scale: float, zero_point: int):
    """TFLite `reference_ops::AffineQuantize`: round(x / scale) + zero_point, clamped to int8.

    The division is float32 (x / float(scale)); rounding is half away from zero (TfLiteRound).
    """
    q = fp.round_half_away(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(q.astype(np.float64) + zero_point, -128, 127).astype(np.int8)


def requantize_s8(x, x_zero_point, multiplier, shift, output_zero_point):
    """TFLite `reference_ops::Requantize` (QUANTIZE int8 -> int8)."""
    scaled = fp.multiply_by_quantized_multiplier(
        x.astype(np.int64) - x_zero_point, multiplier, shift
    )
    return np.clip(scaled + output_zero_point, -128, 127).astype(np.int8)


def dequantize_s8_f32(x, scale: float, zero_point: int):
    """TFLite `reference_ops::Dequantize`: float32(double(scale) * (x - zero_point))."""
    return (float(np.float32(scale)) * (x.astype(np.float64) - zero_point)).astype(np.float32)
