"""The integer graph: tinykws's definition of the deployed arithmetic.

- `IntGraph`, `Tensor`, `Op` (`tinykws.ir.graph`): the network as data, saved as JSON + npz.
- `IntGraphBuilder`, `QuantParams`, `Weights`, `quantize_bias` (`tinykws.ir.builder`): build
  a graph layer by layer; fixed-point constants are computed as each op is added.
- `interpret` (`tinykws.ir.interpret`): run a graph in numpy exactly as TFLite (Micro)'s
  reference int8 kernels do.
- `tinykws.ir.fixedpoint`: QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
  RoundingDivideByPOT, MultiplyByQuantizedMultiplier, gemmlowp exp/reciprocal.

Example:
    >>> import numpy as np
    >>> from tinykws.ir import IntGraphBuilder, QuantParams, interpret
    >>> b = IntGraphBuilder()
    >>> x = b.input("x", (1, 3))
    >>> q = b.quantize(x, QuantParams(0.5, 0))
    >>> graph = b.build([b.dequantize(q)])
    >>> list(interpret(graph, np.array([[0.25, -0.25, 1.0]], np.float32)).values())[0].tolist()
    [[0.5, -0.5, 1.0]]
"""

from tinykws.ir.builder import IntGraphBuilder, QuantParams, Weights, quantize_bias
from tinykws.ir.graph import IntGraph, Op, Tensor
from tinykws.ir.interpret import interpret

__all__ = [
    "IntGraph",
    "IntGraphBuilder",
    "Op",
    "QuantParams",
    "Tensor",
    "Weights",
    "interpret",
    "quantize_bias",
]
