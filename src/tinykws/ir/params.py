"""The fixed-point constants of each op, computed from float32 scales as TFLite's Prepare does.

Every function takes the op's input tensors, output tensor and options and returns its params:
numpy int32 arrays that the integer kernels read ("multiplier"/"shift" Q31 pairs, an
"activation_range" [min, max], ...). Scales are float32 values widened to double, exactly as
TFLite's C++ reads them, so the multipliers match TFLite's bit for bit. They are computed once,
when an op joins a graph (`Graph.add_op`), and only read afterwards.

Example:
    >>> activation_range("RELU6", 0.05, -128).tolist()   # 6 / 0.05 = 120 -> -128 + 120
    [-128, -8]
"""

from __future__ import annotations

import math

import numpy as np

from tinykws.ir import fixedpoint as fp

INT8_MIN, INT8_MAX = -128, 127
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD headroom: inputs are scaled by 2^20 before rescaling


class OpError(ValueError):
    """An op's tensors or options are inconsistent; the graph adds which op it is."""


def require(ok: bool, message: str) -> None:
    """Raise `OpError(message)` unless `ok`."""
    if not ok:
        raise OpError(message)


def _f64(scale: float) -> float:
    """A float32 scale widened to double, as TFLite's Prepare functions read it."""
    return float(np.float32(scale))


def weight_qrange(bits: int) -> tuple[int, int]:
    """(qmin, qmax) of `bits`-wide symmetric weights: ±(2^(bits-1) - 1) (-128 is never used)."""
    limit = 2 ** (bits - 1) - 1
    return -limit, limit


def power_of_two_ceil(scale: float) -> float:
    """The smallest power of two >= `scale` (scales of fixed-point hardware: shifts only)."""
    return 2.0 ** math.ceil(math.log2(scale))


CLIP_CANDIDATES = 100  # clipping ratios the "mse" weight observer tries, 1/100 .. 1


def weight_scales(
    weight, bits: int, per_channel: bool, observer: str = "minmax", power_of_two: bool = False
) -> np.ndarray:
    """Symmetric weight scales, float32 (C,) per output channel (axis 0) or (1,), all > 0.

    "minmax": max |w| / qmax. "mse": the clipping ratio of max |w| (of `CLIP_CANDIDATES`) whose
    rounded weights have the smallest squared error. A channel whose weights are all zero gets
    the median scale of the others (the lower middle one; 1 if there are none), so its bias,
    quantized at s_in * s_w, keeps a fine grid. Arithmetic is float32.

    Example:
        >>> weight_scales(np.array([[0.5, -1.27], [0.0, 0.0]], np.float32), 8, True).tolist()
        [0.009999999776482582, 0.009999999776482582]
    """
    w = np.asarray(weight, np.float32)
    w = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    qmax = weight_qrange(bits)[1]
    top = np.abs(w).max(axis=1)
    if observer == "minmax":
        scales = top / np.float32(qmax)
    elif observer == "mse":
        scales = _mse_weight_scales(w, top, qmax)
    else:
        raise ValueError(f"weight observer must be minmax or mse; got {observer!r}")
    alive = scales > 0
    if not alive.all():
        fill = np.sort(scales[alive])[(alive.sum() - 1) // 2] if alive.any() else 1.0
        scales = np.where(alive, scales, np.float32(fill))
    if power_of_two:
        scales = np.array([power_of_two_ceil(float(s)) for s in scales])
    return scales.astype(np.float32)


def _mse_weight_scales(w: np.ndarray, top: np.ndarray, qmax: int) -> np.ndarray:
    ratios = np.linspace(1.0 / CLIP_CANDIDATES, 1.0, CLIP_CANDIDATES, dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    scales = np.maximum(top[:, None] * ratios, tiny) / np.float32(qmax)  # (C, R)
    q = fp.quantize(w[:, None, :], scales[:, :, None], 0, -qmax, qmax)
    error = ((q * scales[:, :, None] - w[:, None, :]) ** 2).sum(axis=2)
    return np.take_along_axis(scales, error.argmin(axis=1)[:, None], axis=1)[:, 0]


def quantize_weights(weight, scales, bits: int) -> np.ndarray:
    """Symmetric int8 storage of float weights: clip(round_half_away(w / s[c]), ±qmax).

    weight: float32 (C, ...) with the output channel first; scales: float32 (C,) or (1,).
    The division is float32, as fake quantization rounds the same weights.
    """
    w = np.asarray(weight, np.float32)
    scale = np.asarray(scales, np.float32).reshape(-1, *([1] * (w.ndim - 1)))
    qmin, qmax = weight_qrange(bits)
    return fp.quantize(w, scale, 0, qmin, qmax).astype(np.int8)


def quantize_bias(bias, input_scale: float, weight_scales) -> np.ndarray:
    """Quantize a float bias to int32 at scale s_in * s_w[c] (float32 product), ties away from 0.

    Example:
        >>> quantize_bias(np.array([0.1, -0.1]), 0.05, (0.01, 0.02)).tolist()
        [200, -100]
    """
    bias_scale = np.float32(input_scale) * np.asarray(weight_scales, np.float32)
    return quantize_int32(bias, bias_scale)


def quantize_int32(values, scale) -> np.ndarray:
    """int32 values at `scale`: float64 division, rounded half away from zero, clamped."""
    q = fp.round_half_away(np.asarray(values, np.float64) / np.asarray(scale, np.float64))
    return np.clip(q, fp.INT32_MIN, fp.INT32_MAX).astype(np.int32)


def activation_range(activation: str, scale: float, zero_point: int) -> np.ndarray:
    """int8 clamping range of a fused activation, as TFLite's CalculateActivationRangeQuantized.

    0 and 6 are quantized with float32 division and rounded half away from zero.
    """

    def quantize(value: float) -> int:
        return zero_point + int(fp.round_half_away(np.float32(value) / np.float32(scale)))

    low, high = INT8_MIN, INT8_MAX
    if activation in ("RELU", "RELU6"):
        low = max(low, quantize(0.0))
    if activation == "RELU6":
        high = min(high, quantize(6.0))
    return np.array([low, high], dtype=np.int32)


def activation_params(output, options) -> dict[str, np.ndarray]:
    """{"activation_range": [min, max]} of an int8 output's fused activation ({} for float)."""
    if output.dtype != "int8":
        return {}
    return {
        "activation_range": activation_range(
            options.get("activation", "NONE"), output.scale[0], output.zero_point[0]
        )
    }


def conv_params(inputs, output, options, float_product: bool = False) -> dict:
    """Per-output-channel requantization: s_in * s_w[c] / s_out -> (multiplier, shift).

    TFLite widens each float32 scale to double and multiplies in double, except for a
    per-tensor FULLY_CONNECTED (`float_product`), whose s_in * s_w is multiplied in float32 first.
    """
    x, w, b = inputs
    if x.dtype != "int8":
        return {}
    s_in, s_out = _f64(x.scale[0]), _f64(output.scale[0])
    if float_product and len(w.scale) == 1:
        real = [float(np.float32(x.scale[0]) * np.float32(w.scale[0])) / s_out]
    else:
        scales = np.broadcast_to(np.asarray(w.scale, np.float32), (b.shape[0],))
        real = [s_in * float(s) / s_out for s in scales]
    multiplier, shift = fp.quantize_multipliers(real)
    return {"multiplier": multiplier, "shift": shift, **activation_params(output, options)}


def fully_connected_params(inputs, output, options) -> dict:
    """`conv_params` with TFLite's float32 product for per-tensor weights."""
    return conv_params(inputs, output, options, float_product=True)


def mean_params(inputs, output, options):
    """TFLite's MEAN requantization, with 1/n folded into the multiplier.

    Prepare: (m, s) = QuantizeMultiplier(s_in / s_out). Eval (reference_ops::QuantizedMeanOrSum)
    then folds in 1/n, n = the number of values averaged (H*W, or W over the bins only):
    k = min(floor(log2 n), 32, 31 + s); m' = (m << k) / n (truncating); s' = s - k. Both steps
    are done here, once.
    """
    if output.dtype != "int8":
        return {}
    m, s = fp.quantize_multiplier(_f64(inputs[0].scale[0]) / _f64(output.scale[0]))
    n = int(np.prod([inputs[0].shape[a] for a in options.get("axes", (1, 2))]))
    k = min(n.bit_length() - 1, 32, 31 + s)
    return {"multiplier": np.array((m << k) // n, np.int32), "shift": np.array(s - k, np.int32)}


def add_params(inputs, output, options):
    """TFLite int8 ADD: both inputs rescaled to 2 * max(s1, s2) with 20 bits of headroom."""
    if output.dtype != "int8":
        return {}
    s1, s2, so = (_f64(t.scale[0]) for t in (*inputs, output))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = fp.quantize_multiplier(s1 / twice_max)
    m2, sh2 = fp.quantize_multiplier(s2 / twice_max)
    mo, sho = fp.quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    require(sho <= 0, "ADD output scale is below 2 * max(input scales) / 2^20; raise it")
    return {
        "input_multiplier": np.array([m1, m2], np.int32),
        "input_shift": np.array([sh1, sh2], np.int32),
        "output_multiplier": np.array(mo, np.int32),
        "output_shift": np.array(sho, np.int32),
        "left_shift": np.array(ADD_LEFT_SHIFT, np.int32),
        **activation_params(output, options),
    }


def softmax_params(inputs, output, options):
    """TFLite's PreprocessSoftmaxScaling for beta=1, 5 integer bits, and the input radius."""
    if output.dtype != "int8":
        return {}
    integer_bits = 5
    beta = float(options.get("beta", 1.0))
    real = min(beta * _f64(inputs[0].scale[0]) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = fp.quantize_multiplier(real)
    require(left_shift >= 0, "SOFTMAX input scale too small (multiplier below one)")
    radius = ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
    return {
        "input_multiplier": np.array(multiplier, np.int32),
        "input_left_shift": np.array(left_shift, np.int32),
        "diff_min": np.array(-int(np.floor(radius)), np.int32),
    }


def quantize_params(inputs, output, options):
    """int8 -> int8 QUANTIZE: (multiplier, shift) of s_in / s_out; float input needs none."""
    if inputs[0].dtype != "int8":
        return {}  # float -> int8 divides by the float32 scale at run time, as TFLite does
    m, s = fp.quantize_multiplier(_f64(inputs[0].scale[0]) / _f64(output.scale[0]))
    return {"multiplier": np.array(m, np.int32), "shift": np.array(s, np.int32)}


LOGISTIC_OUTPUT_SCALE = 1.0 / 256.0
LOGISTIC_OUTPUT_ZERO_POINT = -128


def logistic_table(scale: float, zero_point: int) -> np.ndarray:
    """The int8 LOGISTIC of every int8 input, as TFLite's `PopulateLookupTable` computes it.

    In float32: x = s_in * (q - zp); y = 1 / (1 + exp(-x)); out = round(y * 256) - 128 (half
    away from zero), clamped. Entry i is the output for input q = i - 128.
    """
    q = np.arange(INT8_MIN, INT8_MAX + 1)
    x = np.float32(scale) * (q - zero_point).astype(np.float32)
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative x: y = 0
        y = np.float32(1.0) / (np.float32(1.0) + np.exp(-x, dtype=np.float32))
    rescaled = fp.round_half_away(y * np.float32(1.0 / LOGISTIC_OUTPUT_SCALE))
    return np.clip(rescaled + LOGISTIC_OUTPUT_ZERO_POINT, INT8_MIN, INT8_MAX).astype(np.int8)


def logistic_params(inputs, output, options) -> dict[str, np.ndarray]:
    """{"table": 256 int8 outputs, indexed by input + 128} of an int8 LOGISTIC."""
    if output.dtype != "int8":
        return {}
    return {"table": logistic_table(inputs[0].scale[0], inputs[0].zero_point[0])}


def mul_params(inputs, output, options) -> dict[str, np.ndarray]:
    """TFLite int8 MUL: (multiplier, shift) of s1 * s2 / s_out, computed in float32 as its
    Prepare does, then widened to double."""
    if output.dtype != "int8":
        return {}
    s1, s2, so = (np.float32(t.scale[0]) for t in (*inputs, output))
    multiplier, shift = fp.quantize_multiplier(float(s1 * s2 / so))
    return {
        "multiplier": np.array(multiplier, np.int32),
        "shift": np.array(shift, np.int32),
        **activation_params(output, options),
    }
