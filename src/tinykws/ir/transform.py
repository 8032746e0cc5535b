"""Graph rewrites that keep the arithmetic: choosing int8 or float32 at the graph boundary.

A deployed int8 network either takes int8 features (the caller quantizes) or float features
with a QUANTIZE op inside the graph; likewise for its outputs and DEQUANTIZE. `with_io_dtype`
switches between the two without touching any other op or its fixed-point constants.

Example:
    >>> import numpy as np
    >>> from tinykws.ir.builder import GraphBuilder, QuantParams
    >>> b = GraphBuilder()
    >>> x = b.input("x", (1, 3), QuantParams(0.5, 0))
    >>> g = b.build([b.softmax(x)])
    >>> [op.type for op in with_io_dtype(g, "float32").ops]
    ['QUANTIZE', 'SOFTMAX', 'DEQUANTIZE']
"""

from __future__ import annotations

import copy

from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph, Op, Tensor
from tinykws.ir.ops import OP_KINDS

IO_DTYPES = ("int8", "float32")


def with_io_dtype(graph: Graph, io_dtype: str) -> Graph:
    """A copy of `graph` whose inputs and outputs are all `io_dtype` ("int8" or "float32").

    float32: int8 inputs get a QUANTIZE from a new float input "<name>_float"; int8 outputs get
    a DEQUANTIZE to "<name>_float". int8: a float input feeding only a QUANTIZE is dropped (the
    QUANTIZE output becomes the input), and a DEQUANTIZE producing an output is dropped.
    """
    if io_dtype not in IO_DTYPES:
        raise TinyKWSError(f"io dtype must be one of {', '.join(IO_DTYPES)}; got {io_dtype!r}")
    graph = copy.deepcopy(graph)
    if io_dtype == "float32":
        _float_boundary(graph)
    else:
        _int8_boundary(graph)
    graph.validate()
    return graph


def _float_boundary(graph: Graph) -> None:
    head: list[Op] = []
    for i, name in enumerate(graph.inputs):
        tensor = graph.tensors[name]
        if tensor.dtype == "int8":
            float_name = _fresh(graph, f"{name}_float")
            graph.tensors[float_name] = Tensor(float_name, tensor.shape, "float32")
            head.append(_op(graph, "QUANTIZE", float_name, name))
            graph.inputs[i] = float_name
    graph.ops[:0] = head
    for i, name in enumerate(graph.outputs):
        tensor = graph.tensors[name]
        if tensor.dtype == "int8":
            float_name = _fresh(graph, f"{name}_float")
            graph.tensors[float_name] = Tensor(float_name, tensor.shape, "float32")
            graph.ops.append(_op(graph, "DEQUANTIZE", name, float_name))
            graph.outputs[i] = float_name


def _int8_boundary(graph: Graph) -> None:
    for i, name in enumerate(graph.inputs):
        users = graph.consumers(name)
        if graph.tensors[name].dtype == "float32":
            if len(users) != 1 or users[0].type != "QUANTIZE" or name in graph.outputs:
                raise TinyKWSError(
                    f"graph {graph.name}: float input '{name}' does not feed a "
                    "single QUANTIZE; it cannot become an int8 input"
                )
            graph.ops.remove(users[0])
            del graph.tensors[name]
            graph.inputs[i] = users[0].outputs[0]
    for i, name in enumerate(graph.outputs):
        producer = graph.producer(name)
        if graph.tensors[name].dtype == "float32":
            if producer is None or producer.type != "DEQUANTIZE" or graph.consumers(name):
                raise TinyKWSError(
                    f"graph {graph.name}: float output '{name}' is not made by a "
                    "DEQUANTIZE; it cannot become an int8 output"
                )
            graph.ops.remove(producer)
            del graph.tensors[name]
            graph.outputs[i] = producer.inputs[0]


def _op(graph: Graph, op_type: str, source: str, target: str) -> Op:
    ins, out = [graph.tensors[source]], graph.tensors[target]
    return Op(op_type, [source], [target], {}, OP_KINDS[op_type].prepare(ins, out, {}), target)


def _fresh(graph: Graph, name: str) -> str:
    candidate, n = name, 1
    while candidate in graph.tensors:
        candidate, n = f"{name}_{n}", n + 1
    return candidate
