"""tinykws.ir.fixedpoint against exact rational references written from TFLite's definitions."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tinykws.ir import fixedpoint as fp

INT32_MIN, INT32_MAX = fp.INT32_MIN, fp.INT32_MAX


def _round_half_away(value: Fraction) -> int:
    whole = math.trunc(value)
    if abs(value - whole) >= Fraction(1, 2):
        whole += 1 if value > 0 else -1
    return whole


def _ref_srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul (VQRDMULH): a * b / 2^31 rounded half up, saturating."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return math.floor(Fraction(a * b, 2**31) + Fraction(1, 2))


def _ref_rdbp(x: int, exponent: int) -> int:
    return _round_half_away(Fraction(x, 2**exponent))


def _ref_mbqm(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier: left shift, high mul, then rounding right shift."""
    left, right = max(shift, 0), max(-shift, 0)
    return _ref_rdbp(_ref_srdhm(x * 2**left, multiplier), right)


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.0, (0, 0)),
        (0.5, (2**30, 0)),
        (1.0, (2**30, 1)),
        (0.25, (2**30, -1)),
        (0.75, (3 * 2**29, 0)),
        (1 - 2.0**-33, (2**30, 1)),  # significand rounds up to 2^31: halved, shift + 1
        ((2**30 + 0.5) / 2**31, (2**30 + 1, 0)),  # tie rounds away from zero
        (2.0**-40, (0, 0)),  # shift below -31 flushes to zero
        (3.0, (3 * 2**29, 2)),
    ],
)
def test_quantize_multiplier_known_values(real, expected):
    assert fp.quantize_multiplier(real) == expected


def test_quantize_multiplier_reconstructs_within_half_ulp():
    rng = np.random.default_rng(0)
    for real in np.exp(rng.uniform(-20, 5, 500)):
        m, shift = fp.quantize_multiplier(float(real))
        assert 2**30 <= m < 2**31
        # |m / 2^31 * 2^shift - real| <= half a unit of the Q31 significand
        error = abs(Fraction(m, 2**31) * Fraction(2) ** shift - Fraction(float(real)))
        assert error <= Fraction(2) ** (shift - 32)


def test_quantize_multipliers_vectorised_matches_scalar():
    reals = [0.5, 0.001, 0.3, 2.0**-35]
    mult, shift = fp.quantize_multipliers(reals)
    assert mult.dtype == np.int32 and shift.dtype == np.int32
    assert list(zip(mult.tolist(), shift.tolist())) == [fp.quantize_multiplier(r) for r in reals]


def _random_int32(rng, n):
    edges = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 2**30, -(2**30)]
    return np.concatenate([edges, rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)])


def test_srdhm_matches_definition_including_saturation():
    rng = np.random.default_rng(1)
    a = _random_int32(rng, 3000)
    b = np.concatenate([a[:8][::-1], rng.integers(INT32_MIN, INT32_MAX, 3000, endpoint=True)])
    got = fp.saturating_rounding_doubling_high_mul(a, b)
    want = [_ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    np.testing.assert_array_equal(got, want)
    assert int(fp.saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN)) == INT32_MAX
    # ties round up (toward +inf): 3 * 2^30 / 2^31 = 1.5 -> 2 and -1.5 -> -1
    assert int(fp.saturating_rounding_doubling_high_mul(3, 2**30)) == 2
    assert int(fp.saturating_rounding_doubling_high_mul(-3, 2**30)) == -1


@pytest.mark.parametrize(
    ("x", "exponent", "expected"),
    [
        (5, 1, 3),
        (-5, 1, -3),
        (4, 1, 2),
        (-4, 1, -2),
        (3, 2, 1),
        (-3, 2, -1),
        (-6, 2, -2),
        (6, 2, 2),
        (1, 1, 1),
        (-1, 1, -1),
        (7, 0, 7),
        (INT32_MIN, 31, -1),
        (INT32_MAX, 31, 1),
    ],
)
def test_rounding_divide_by_pot_ties_away_from_zero(x, exponent, expected):
    assert int(fp.rounding_divide_by_pot(x, exponent)) == expected


def test_rounding_divide_by_pot_random_and_per_element_exponents():
    rng = np.random.default_rng(2)
    x = _random_int32(rng, 2000)
    exponent = rng.integers(0, 32, x.size)
    want = [_ref_rdbp(int(v), int(e)) for v, e in zip(x, exponent)]
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, exponent), want)


def test_multiply_by_quantized_multiplier_matches_definition():
    rng = np.random.default_rng(3)
    x = rng.integers(-(2**24), 2**24, 3000)
    mult = rng.integers(2**30, 2**31, 3000)
    shift = rng.integers(-31, 7, 3000)
    got = fp.multiply_by_quantized_multiplier(x, mult, shift)
    want = [_ref_mbqm(int(a), int(m), int(s)) for a, m, s in zip(x, mult, shift)]
    np.testing.assert_array_equal(got, want)


def test_multiply_by_quantized_multiplier_rounds_twice():
    # real multiplier 1/4 = 2^30/2^31 * 2^-1: 5/2 rounds up to 3, then 3/2 rounds away to 2,
    # where a single rounding of 5/4 would give 1; -5/2 rounds up to -2, then -2/2 = -1.
    m, s = fp.quantize_multiplier(0.25)
    assert int(fp.multiply_by_quantized_multiplier(5, m, s)) == 2
    assert int(fp.multiply_by_quantized_multiplier(-5, m, s)) == -1


def test_wrap_int32_and_round_half_away():
    np.testing.assert_array_equal(
        fp.wrap_int32([2**31, -(2**31) - 1, 5]), [INT32_MIN, INT32_MAX, 5]
    )
    values = np.array([0.5, -0.5, 1.5, -2.5, 0.49999999999999994, 2.4999999])
    np.testing.assert_array_equal(fp.round_half_away(values), [1, -1, 2, -3, 0, 2])


def test_saturating_rounding_multiply_by_pot():
    assert int(fp.saturating_rounding_multiply_by_pot(2**27, 5)) == INT32_MAX
    assert int(fp.saturating_rounding_multiply_by_pot(-(2**27), 5)) == INT32_MIN
    assert int(fp.saturating_rounding_multiply_by_pot(3, 2)) == 12
    assert int(fp.saturating_rounding_multiply_by_pot(-5, -1)) == -3


def test_rounding_half_sum():
    assert [
        int(fp.rounding_half_sum(a, b))
        for a, b in [(1, 2), (-1, -2), (2, 2), (INT32_MAX, INT32_MAX)]
    ] == [2, -2, 2, INT32_MAX]


def test_gemmlowp_exp_close_to_exp():
    # Q5.26 inputs in [-31, 0]; gemmlowp's polynomial + barrel shifter is within ~3e-7.
    rng = np.random.default_rng(4)
    raw = np.concatenate([[0, -1, -(2**26), -(2**28)], -rng.integers(0, 31 * 2**26, 2000)])
    got = fp.exp_on_negative_values(raw, 5) / 2.0**31
    want = np.exp(raw / 2.0**26)
    assert np.max(np.abs(got - want)) < 3e-7
    assert int(fp.exp_on_negative_values(0, 5)) == INT32_MAX


def test_gemmlowp_reciprocal_close_to_reciprocal():
    rng = np.random.default_rng(5)
    x = rng.integers(0, INT32_MAX, 2000)
    got = fp.one_over_one_plus_x_for_x_in_0_1(x) / 2.0**31
    want = 1.0 / (1.0 + x / 2.0**31)
    assert np.max(np.abs(got - want)) < 1e-8
    # GetReciprocal of a Q12 sum: 1/sum = recip * 2^-bits_over_unit
    sums = rng.integers(2**19, 2**30, 200)
    recip, bits = fp.get_reciprocal(sums, 12)
    np.testing.assert_allclose(recip / 2.0**31 * 2.0**-bits, 2.0**19 / sums, rtol=1e-8)


def test_count_leading_zeros():
    assert fp.count_leading_zeros_u32([1, 2**19, INT32_MAX, 0]).tolist() == [31, 12, 1, 32]
