"""Lower a fake-quantized model (`tinykws.quant`) to a Graph.

Every step of the model's trace becomes one op (or none), with the integers the fake-quant
model rounds to: the same int weights, the same int32 biases, the same scales and zero points.
The graph's fixed-point constants (Q31 multipliers and shifts) are computed once, here, as each
op is added (`tinykws.ir.builder`).

The steps are lowered by the table shared with the float32 graph (`tinykws.models.lower`,
which describes the NHWC layout and BC-ResNet's layers); this module supplies what is integer:
- the graph input is float32 (1, frames, bins, 1): normalised features, quantized by QUANTIZE;
- each weighted step's int8 weights, scales and int32 bias (`QuantModel.integer_layer`);
- each tensor's scale and zero point;
- the output is DEQUANTIZE of the last layer's int8 logits (SOFTMAX before it on request).

The average over every bin and the temporal depthwise conv after it are one DEPTHWISE_CONV_2D
over (time, all bins) whose weights repeat the temporal weights in every bin at 1/bins of their
scale (`Step.bins`): one requantization of the exact sum. A MEAN would compute the same in
LiteRT's reference kernels, but LiteRT's optimised MEAN rounds in float32 with a bias of its own
and lands one step away on about one output in five, which the blocks after it amplify (top-1
agreement with the graph 98.6 % in LiteRT's default path instead of 99.6 %). The weights take
bins times the bytes (BC-ResNet-1: 3.4 kB more .tflite, 2.7 kB more Cortex-M4 flash).

Example:
    >>> import numpy as np
    >>> from tinykws.features.frontend import Normalization
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig, QuantData, quantize
    >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
    >>> data = QuantData(np.random.default_rng(0).normal(size=(8, 49, 40)).astype(np.float32),
    ...                  Normalization(mean=(0.0,) * 40, std=(1.0,) * 40))
    >>> graph = lower(quantize(model, QuantConfig(), data))
    >>> [op.type for op in graph.ops]
    ['QUANTIZE', 'CONV_2D', 'RESHAPE', 'FULLY_CONNECTED', 'DEQUANTIZE']
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import GraphBuilder, QuantParams, Weights
from tinykws.ir.graph import Graph
from tinykws.models.lower import INPUT_NAME, OUTPUT_NAME, Lowering, lower_steps
from tinykws.models.trace import Step
from tinykws.quant.model import QuantModel


def lower(quantized, name: str = "model", *, softmax: bool = False) -> Graph:
    """The int8 Graph of a `QuantizedModel` (method ptq or qat, 8-bit activations).

    Args:
        quantized: a `tinykws.quant.model.QuantizedModel` (or its `QuantModel`).
        name: the graph's name.
        softmax: end with SOFTMAX (int8 probabilities, scale 1/256) before the DEQUANTIZE.

    Raises:
        TinyKWSError: the model cannot be lowered (dynamic range, activations below 8 bits).
    """
    module = _lowerable(getattr(quantized, "module", quantized))
    lowering = Lowering(
        module.net,
        GraphBuilder(name),
        partial(_integer_weights, module),
        lambda tensor: QuantParams(*module.qparams(tensor)),
        bins_in_weights=True,
    )
    builder = lowering.builder
    frames, bins = module.trace.input_shape[2:]
    x = builder.input(INPUT_NAME, (1, frames, bins, 1))
    lowering.names["input"] = builder.quantize(x, lowering.qparams("input"), name="input_q")
    out = lower_steps(lowering, module.trace)
    if softmax:
        out = builder.softmax(out, name="softmax")
    graph = builder.build([builder.dequantize(out, name=OUTPUT_NAME)])
    graph.metadata.update(
        input_layout="NHWC (batch, frames, bins, 1), normalised features",
        weight_bits=module.config.weight_bits,
        activation_bits=module.config.activation_bits,
    )
    return graph


def _lowerable(module) -> QuantModel:
    """`module` if it is a folded QuantModel with int8 activations; otherwise the reason."""
    if not isinstance(module, QuantModel):
        raise TinyKWSError(
            "lower: a dynamic-range model keeps float activations; the integer "
            "graph needs a ptq or qat model"
        )
    if module.config.activation_bits != 8:
        raise TinyKWSError(
            f"lower: the integer graph holds int8 activations; this model uses "
            f"{module.config.activation_bits}-bit activations (use 8)"
        )
    if any(step.bn for step in module.trace.steps):
        raise TinyKWSError("lower: fold the BatchNorms first (QuantModel.fold)")
    return module


def _integer_weights(module, step: Step, layout) -> Weights:
    """The step's int8 weights (in the graph's layout), float32 scales and int32 bias."""
    layer = module.integer_layer(step)
    weight = layout(layer.weight.cpu().numpy()).astype(np.int8)
    return Weights(
        np.ascontiguousarray(weight),
        tuple(layer.scale.cpu().numpy().astype(np.float32)),
        layer.bias.cpu().numpy().astype(np.int32),
        layer.bits,
    )
