"""TFLite (Micro) fixed-point arithmetic, bit-exact, vectorised over numpy arrays.

Every function here reproduces one C++ routine of TFLite's `quantization_util.cc`,
`kernels/internal/common.h` or gemmlowp's `fixedpoint.h` (which TFLite's int8 softmax uses).
Integers are carried as numpy `int64` arrays holding int32 values; where the C code adds or shifts
int32 values without a range check, the result is wrapped to 32 bits (`wrap_int32`), which is what
every two's-complement target does. Scalars work too: each function accepts Python ints.

Rounding modes, where a value is rounded:
- `quantize_multiplier`: real -> Q31 significand, round half away from zero (`std::round`).
- `saturating_rounding_doubling_high_mul`: a*b / 2^31 rounded half up (toward +infinity).
- `rounding_divide_by_pot`: divide by 2^exponent, round half away from zero.
- `multiply_by_quantized_multiplier`: both of the above in turn ("double rounding", TFLite's
  default build; builds with TFLITE_SINGLE_ROUNDING round once and differ at some ties).
- `round_half_away`: float -> integer, half away from zero (`std::round`, TfLiteRound).

Example:
    >>> m, s = quantize_multiplier(0.25)
    >>> (m, s)
    (1073741824, -1)
    >>> int(multiply_by_quantized_multiplier(1000, m, s))
    250
    >>> int(rounding_divide_by_pot(-5, 1))  # -2.5 rounds away from zero
    -3
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Wrap int64 values to int32 two's complement (C's behaviour on int32 overflow)."""
    return ((_i64(x) + 2**31) & 0xFFFFFFFF) - 2**31


def round_half_away(x):
    """Round float values to the nearest integer, ties away from zero (C's `std::round`).

    Exact for every finite float: the fractional part of |x| is split off (exactly) before it is
    compared with one half, so 0.49999999999999994 rounds to 0 (adding 0.5 and flooring would
    give 1). Written with operators only, so numpy arrays, numpy or Python scalars and torch
    tensors all round by this one rule (fake quantization included); the result keeps the
    input's float type.

    Example:
        >>> round_half_away(np.array([0.5, -0.5, 1.5, -2.5, 0.49999997], np.float32)).tolist()
        [1.0, -1.0, 2.0, -3.0, 0.0]
    """
    magnitude = abs(x)
    whole = magnitude // 1
    rounded = whole + (magnitude - whole >= 0.5)
    return rounded - 2 * rounded * (x < 0)


def quantize(x, scale, zero_point, qmin: int, qmax: int):
    """clip(round_half_away(x / scale) + zero_point, qmin, qmax): a float onto its integer grid.

    TFLite's `AffineQuantize` when x and scale are float32 (the division is float32). Like
    `round_half_away` it takes numpy arrays and torch tensors alike; the result is still float
    (integer-valued), for the caller to cast.
    """
    return (round_half_away(x / scale) + zero_point).clip(qmin, qmax)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split a positive real multiplier into a Q31 significand and a power-of-two shift.

    TFLite's `QuantizeMultiplier`: real = significand / 2^31 * 2^shift with significand in
    [2^30, 2^31) (frexp, then round half away from zero; a significand rounded up to 2^31 is
    halved and the shift incremented). A shift below -31 would shift every bit out, so such a
    multiplier is flushed to (0, 0). Zero maps to (0, 0).

    Args:
        real: the multiplier, >= 0 (a double; scales are float32 values widened to double).

    Returns:
        (significand, shift): int32 significand, shift in [-31, ...] (positive = left shift).
    """
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(float(real))
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` over an array: returns (int32 significands, int32 shifts)."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(np.asarray(reals, np.float64))]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp `SaturatingRoundingDoublingHighMul` (ARM VQRDMULH): a * b / 2^31, rounded.

    a, b: int32 values. The product is nudged by 2^30 (or 1 - 2^30 when negative) and divided
    by 2^31 truncating toward zero, which rounds ties toward +infinity (-2.5 -> -2, 2.5 -> 3).
    The single overflow case, INT32_MIN * INT32_MIN, saturates to INT32_MAX.
    """
    a, b = _i64(a), _i64(b)
    # C computes (ab + nudge) / 2^31 with truncating division and nudge = 2^30 for ab >= 0,
    # 1 - 2^30 otherwise; both cases equal floor((ab + 2^30) / 2^31), an arithmetic shift.
    # Only INT32_MIN * INT32_MIN = 2^62 lands above INT32_MAX; it saturates.
    return np.minimum((a * b + (1 << 30)) >> 31, INT32_MAX)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp `RoundingDivideByPOT`: x / 2^exponent, rounded half away from zero.

    x: int32 values; exponent: int in [0, 31] (scalar or broadcastable array).
    """
    x, exponent = _i64(x), _i64(exponent)
    # gemmlowp adds 1 when the remainder exceeds half the divisor (minus one for negative x);
    # that is floor((x + half - [x < 0]) / 2^exponent), one shift instead of masks.
    half = (np.int64(1) << exponent) >> 1
    return (x + half - ((x < 0) & (exponent > 0))) >> exponent


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplier` (double rounding): x * multiplier / 2^31 * 2^shift.

    x: int32 accumulators; multiplier: int32 Q31 significands; shift: ints (positive = left
    shift applied to x before the multiply, negative = rounding right shift after it). Arrays
    broadcast, so per-channel multipliers apply along the last axis of x. The high multiply
    rounds ties up and the right shift rounds ties away from zero, so 5 * 0.25 gives 2.
    """
    shift = _i64(shift)
    x = _i64(x)
    if np.any(shift > 0):  # the left shift is C int32 arithmetic: wrap like the target does
        x = wrap_int32(x << np.maximum(shift, 0))
    high = saturating_rounding_doubling_high_mul(x, multiplier)
    return rounding_divide_by_pot(high, np.maximum(-shift, 0))


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift):
    """TFLite `MultiplyByQuantizedMultiplierSmallerThanOneExp` (int8 ADD); left_shift <= 0."""
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, multiplier), -_i64(left_shift)
    )


def multiply_by_quantized_multiplier_greater_than_one(x, multiplier, left_shift):
    """TFLite `MultiplyByQuantizedMultiplierGreaterThanOne` (used by softmax); left_shift >= 0."""
    return saturating_rounding_doubling_high_mul(
        wrap_int32(_i64(x) << _i64(left_shift)), multiplier
    )


# ---------------------------------------------------------------------------------------------
# gemmlowp fixed-point functions used by TFLite's int8 softmax. A value in format Qm (m integer
# bits) is an int32 raw value r meaning r / 2^(31 - m).


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>`: x * 2^exponent.

    A left shift saturates to the int32 range; a right shift rounds half away from zero.
    """
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    result = wrap_int32(x << exponent)
    result = np.where(x > threshold, INT32_MAX, result)
    return np.where(x < -threshold, INT32_MIN, result)


def rescale(x, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    """gemmlowp `Rescale<dst>`: change the number of integer bits of a fixed-point value."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def rounding_half_sum(a, b) -> np.ndarray:
    """gemmlowp `RoundingHalfSum`: (a + b) / 2 rounded half away from zero."""
    total = _i64(a) + _i64(b)
    num = total + np.where(total >= 0, 1, -1)
    return np.where(num >= 0, num // 2, -((-num) // 2))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0 in and out: Taylor expansion around -1/8."""
    mul = saturating_rounding_doubling_high_mul
    constant_term = 1895147668  # exp(-1/8) in Q0
    constant_1_over_3 = 715827883
    x = wrap_int32(_i64(a) + (1 << 28))  # a + 1/8
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(
        wrap_int32(mul(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), 1
    )
    return wrap_int32(constant_term + mul(constant_term, wrap_int32(x + poly)))


_EXP_BARREL = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)  # exp(-2^k) in Q0


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """gemmlowp `exp_on_negative_values`: exp(a) for a <= 0 given in Q`integer_bits`; result Q0."""
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0)
    )
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            scaled = saturating_rounding_doubling_high_mul(result, multiplier)
            result = np.where((remainder & bit) != 0, scaled, result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp `one_over_one_plus_x_for_x_in_0_1`: 1 / (1 + a), Q0 in and out (Newton-Raphson)."""
    mul = saturating_rounding_doubling_high_mul
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = wrap_int32(1515870810 + mul(half_denominator, -1010580540))  # 48/17 - 32/17 * d, Q2
    one_q2 = 1 << 29
    for _ in range(3):
        one_minus_half_denominator_times_x = wrap_int32(one_q2 - mul(half_denominator, x))
        x = wrap_int32(x + rescale(mul(x, one_minus_half_denominator_times_x), 4, 2))
    return rescale(x, 1, 0)  # ExactMulByPot<-1> turns Q2 into Q1 without touching the raw value


def count_leading_zeros_u32(x) -> np.ndarray:
    """Leading zero bits of positive int32 values viewed as uint32 (C's `CountLeadingZeros`)."""
    x = _i64(x)
    _, exponent = np.frexp(x.astype(np.float64))  # exact: x < 2^53, exponent = bit length
    return np.where(x == 0, 32, 32 - exponent).astype(np.int64)


def get_reciprocal(x, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite `GetReciprocal`: 1/x for x > 0 in Q`x_integer_digits`.

    Returns (reciprocal of the normalised x in Q0, num_bits_over_unit).
    """
    x = _i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
