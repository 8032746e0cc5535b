"""The fixed-point constants of each op, computed from float32 scales as TFLite's Prepare does.

Every function takes the op's input tensors, output tensor and options and returns its params:
numpy int32 arrays that the integer kernels read ("multiplier"/"shift" Q31 pairs, an
"activation_range" [min, max], ...). Scales are float32 values widened to double, exactly as
TFLite's C++ reads them, so the multipliers match TFLite's bit for bit. They are computed once,
when an op joins a graph (`IntGraph.add_op`), and only read afterwards.

Example:
    >>> activation_range("RELU6", 0.05, -128).tolist()   # 6 / 0.05 = 120 -> -128 + 120
    [-128, -8]
"""

from __future__ import annotations

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
