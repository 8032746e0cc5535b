"""Lower a float PyTorch model to a float32 Graph (for float .tflite files and float metrics).

The model is traced exactly as for quantization (`tinykws.models.trace`): BatchNorms fold into
the conv or linear layer before them, ReLU / ReLU6 fuse into the op before them, a ZeroPad2d
joins the conv after it. The steps are then lowered by the table the int8 graph uses
(`tinykws.models.lower`), with float32 weights and no quantization, so float and int8 files of
one model have the same structure and layouts. A layer with no op is refused with one line
naming it.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> graph = lower_float(build_model(model_config("tinyconv", 4, (49, 40))))
    >>> [op.type for op in graph.ops], graph.tensor(graph.inputs[0]).shape
    (['CONV_2D', 'RESHAPE', 'FULLY_CONNECTED'], (1, 49, 40, 1))
"""

from __future__ import annotations

import copy

from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import GraphBuilder
from tinykws.ir.graph import Graph
from tinykws.models.fold import fold_steps
from tinykws.models.lower import INPUT_NAME, OUTPUT_NAME, Lowering, float_weights, lower_steps
from tinykws.models.trace import Trace, trace_steps


def lower_float(model, name: str = "model") -> Graph:
    """The float32 Graph of a float PyTorch model (BatchNorm folded; the model is unchanged).

    `model` may also be a traced, folded network with `net` and `trace` attributes (a
    `tinykws.quant.model.QuantModel`): its float weights are used (the weights a quantized model
    was rounded from).

    Raises:
        TinyKWSError: a layer has no op in the graph (the message names it).
    """
    net, trace = _folded(model)
    lowering = Lowering(net, GraphBuilder(name), float_weights(net), _no_qparams, verb="export")
    frames, bins = trace.input_shape[2:]
    lowering.names["input"] = lowering.builder.input(INPUT_NAME, (1, frames, bins, 1))
    graph = lowering.builder.build([lower_steps(lowering, trace)])
    _rename_output(graph, OUTPUT_NAME)
    graph.metadata["input_layout"] = "NHWC (batch, frames, bins, 1), normalised features"
    return graph


def _folded(model) -> tuple[nn.Module, Trace]:
    """The network and its trace with every BatchNorm folded (a traced copy for a plain model)."""
    if hasattr(model, "trace") and hasattr(model, "net"):
        if any(step.bn for step in model.trace.steps):
            raise TinyKWSError("export: fold the BatchNorms first (QuantModel.fold)")
        return model.net, model.trace
    net = copy.deepcopy(model).eval()
    trace = trace_steps(net)
    fold_steps(net, trace.steps)
    return net, trace


def _no_qparams(tensor: str) -> None:
    """Every tensor of a float32 graph is unquantized."""
    return None


def _rename_output(graph: Graph, name: str) -> None:
    """Call the graph's output tensor `name` (as the int8 graph's output is called)."""
    old = graph.outputs[0]
    if old == name or name in graph.tensors or old in graph.inputs:
        return
    tensor = graph.tensors.pop(old)
    tensor.name = name
    graph.tensors[name] = tensor
    for op in graph.ops:
        op.outputs = [name if n == old else n for n in op.outputs]
        op.inputs = [name if n == old else n for n in op.inputs]
    graph.outputs[0] = name
