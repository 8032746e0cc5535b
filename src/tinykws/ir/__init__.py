"""The graph (int8 or float32): tinykws's definition of the deployed arithmetic.

- `Graph`, `Tensor`, `Op` (`tinykws.ir.graph`): the network as data, saved as JSON + npz.
- `GraphBuilder`, `QuantParams`, `Weights` (`tinykws.ir.builder`): build a graph layer by
  layer; fixed-point constants are computed as each op is added.
- `quantize_bias` and the other rules that turn floats into a graph's integers (weight scales,
  int8 weights, int32 biases; `tinykws.ir.params`), which fake quantization reads too.
- `interpret` (`tinykws.ir.interpret`): run a graph in numpy exactly as TFLite (Micro)'s
  reference int8 kernels do.
- `tinykws.ir.fixedpoint`: QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
  RoundingDivideByPOT, MultiplyByQuantizedMultiplier, gemmlowp exp/reciprocal.

Example:
    >>> import numpy as np
    >>> from tinykws.ir import GraphBuilder, QuantParams, interpret
    >>> b = GraphBuilder()
    >>> x = b.input("x", (1, 3))
    >>> q = b.quantize(x, QuantParams(0.5, 0))
    >>> graph = b.build([b.dequantize(q)])
    >>> list(interpret(graph, np.array([[0.25, -0.25, 1.0]], np.float32)).values())[0].tolist()
    [[0.5, -0.5, 1.0]]
"""

from tinykws.ir.builder import GraphBuilder, QuantParams, Weights
from tinykws.ir.graph import Graph, Op, Tensor
from tinykws.ir.interpret import interpret
from tinykws.ir.params import quantize_bias

__all__ = [
    "Graph",
    "GraphBuilder",
    "Op",
    "QuantParams",
    "Tensor",
    "Weights",
    "interpret",
    "quantize_bias",
]
