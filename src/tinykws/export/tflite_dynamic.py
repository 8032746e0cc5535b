"""Dynamic-range .tflite files: float32 activations, int8 weights (TensorFlow's converter calls
this dynamic-range quantization; the go/stop study ships it).

The float32 graph of the model (`tinykws.export.float_graph.lower_float`: BatchNorm folded,
the same ops and layouts as a float .tflite) is written with the weights of every CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED stored as int8 with their scales (per output channel,
or per tensor) and zero point 0, biases float32. A float op whose weight tensor is int8 is
what TFLite calls a hybrid op (op_version.cc: CONV_2D 2 / 5 per channel, DEPTHWISE_CONV_2D
4 / 6, FULLY_CONNECTED 9 with `asymmetric_quantize_inputs`): LiteRT's hybrid kernels quantize
each input row to int8 on the fly (asymmetric, from its own min and max), multiply in
integers and rescale to float32 with s_in * s_w[c], as in TensorFlow's dynamic-range files.

The weights are rounded by the rule `tinykws.quant.dynamic` rounds them with
(`tinykws.ir.params.weight_scales` and `quantize_weights`: the config's scheme, observer,
power-of-two and bit width, half away from zero), from the same folded float weights, so the
file's int8 values equal the PyTorch dynamic-range model's (a BC-ResNet SubSpectralNorm is
folded first here, per sub-band, and rounded after: one more folding than the PyTorch model,
which rounds the weights before its SubSpectralNorm). Outputs differ from the PyTorch model
(which keeps its activations float) only by the hybrid kernels' input rounding.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig
    >>> from tinykws.quant.dynamic import quantize_dynamic
    >>> model = build_model(model_config("tinyconv", 4, (49, 40))).eval()
    >>> quantized = quantize_dynamic(model, QuantConfig(method="dynamic"))
    >>> data = dynamic_tflite_bytes(quantized.module)
    >>> from tinykws.measure.runtimes import TFLiteRunner
    >>> import numpy as np
    >>> TFLiteRunner(data).run(np.zeros((1, 49, 40, 1), np.float32)).shape
    (1, 4)
"""

from __future__ import annotations

import numpy as np

from tinykws.export._tflite_plan import HybridWeight
from tinykws.export.float_graph import lower_float
from tinykws.export.tflite import tflite_bytes
from tinykws.ir.params import quantize_weights, weight_scales

HYBRID_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}  # op -> channel axis


def hybrid_weights(graph, config) -> dict[str, HybridWeight]:
    """The int8 form of every weight tensor of the float graph's conv / depthwise / FC ops.

    Args:
        graph: a float32 Graph (`lower_float`).
        config: the `QuantConfig` of the dynamic-range model (scheme, observer, bits).

    Returns:
        weight tensor name -> `HybridWeight` (values within ±(2^(bits-1) - 1)).
    """
    out = {}
    for op in graph.ops:
        if op.type not in HYBRID_OPS:
            continue
        axis = HYBRID_OPS[op.type]
        per_channel = config.per_channel(op.type == "DEPTHWISE_CONV_2D")
        weight = np.moveaxis(np.asarray(graph.tensor(op.inputs[1]).data, np.float32), axis, 0)
        scales = weight_scales(
            weight, config.weight_bits, per_channel, config.weight_observer, config.power_of_two
        )
        integers = quantize_weights(weight, scales, config.weight_bits)
        out[op.inputs[1]] = HybridWeight(
            np.ascontiguousarray(np.moveaxis(integers, 0, axis)),
            tuple(float(s) for s in scales),
            axis if per_channel else None,
            config.weight_bits,
        )
    return out


def dynamic_tflite_bytes(module, metadata: dict | None = None, **options) -> bytes:
    """The .tflite bytes of a `tinykws.quant.dynamic.DynamicModel` (float io, int8 weights).

    Args:
        module: the dynamic-range model (its folded float network and config are used).
        metadata: the "tinykws" metadata entry.
        **options: `tinykws.export.tflite.tflite_bytes` options (widen_narrow_weights,
            tensor_names).

    Raises:
        TinyKWSError: a layer has no float op, or narrow weights are not widened.
    """
    graph = lower_float(module.net)
    hybrid = hybrid_weights(graph, module.config)
    return tflite_bytes(graph, metadata=metadata or {}, hybrid=hybrid, **options)
