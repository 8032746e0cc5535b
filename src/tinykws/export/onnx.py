"""ONNX files of a Graph: int8 QDQ, or plain float for a float32 graph (no torch involved).

- int8 QDQ: the Graph written op by op (`tinykws.export.onnx_qdq`): QuantizeLinear /
  DequantizeLinear around float ops, per-channel int8 weights, int32 biases. ONNX Runtime runs
  it with its integer kernels.
- Float and dynamic-range files of a PyTorch model go through `torch.onnx`
  (`tinykws.export.onnx_torch`) and end here too (`finish_onnx`).

Every file is checked with `onnx.checker` and carries the model's labels, front-end config and
normalisation as JSON in `metadata_props["tinykws"]` (`read_onnx_metadata`). The input is
normalised features (batch, 1, frames, bins), like the PyTorch model's; the batch is dynamic.

Example:
    >>> from tinykws.ir.builder import GraphBuilder
    >>> builder = GraphBuilder("demo")
    >>> x = builder.input("features", (1, 4, 4, 1))
    >>> graph = builder.build([builder.reshape(x, (1, 16), name="logits")])
    >>> data = onnx_graph_bytes(graph, {"labels": ["yes", "no"]})
    >>> read_onnx_metadata(data)["labels"]
    ['yes', 'no']
"""

from __future__ import annotations

import json
from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.export.onnx_qdq import qdq_graph
from tinykws.io import write_bytes
from tinykws.ir.transform import with_io_dtype

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; readable by every ONNX Runtime since 1.11
METADATA_KEY = "tinykws"


def finish_onnx(model, metadata: dict | None) -> bytes:
    """Attach metadata to an ONNX `ModelProto`, check it with `onnx.checker`, return its bytes."""
    import onnx

    model.producer_name = "tinykws"
    del model.metadata_props[:]
    if metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise TinyKWSError(f"the ONNX model does not pass onnx.checker ({first})") from None
    return model.SerializeToString()


def onnx_graph_bytes(
    graph,
    metadata: dict | None = None,
    *,
    io_dtype: str | None = None,
    widen_narrow_weights: bool = False,
    unsigned: bool = True,
) -> bytes:
    """An ONNX model of a Graph: QDQ for int8 graphs, plain float for float32 graphs.

    Args:
        graph: a valid Graph.
        metadata: JSON stored under metadata_props["tinykws"] (default: graph.metadata).
        io_dtype: None keeps the graph's boundary; "int8" or "float32" rewrites it.
        widen_narrow_weights: store 2..7-bit weights as int8 instead of refusing them.
        unsigned: store activations and weights as uint8 (see `tinykws.export.onnx_qdq`).
    """
    from onnx import helper

    if io_dtype is not None:
        graph = with_io_dtype(graph, io_dtype)
    if not widen_narrow_weights:
        refuse_narrow_weights(graph, "ONNX")
    model = helper.make_model(
        qdq_graph(graph, unsigned), opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = IR_VERSION
    return finish_onnx(model, graph.metadata if metadata is None else metadata)


def refuse_narrow_weights(graph, format_name: str) -> None:
    """Raise naming the first op whose weights are narrower than 8 bits."""
    for op in graph.ops:
        for name in op.inputs[1:2]:
            tensor = graph.tensor(name)
            if tensor.is_constant and tensor.dtype == "int8" and tensor.bits < 8:
                where = f"{op.type} '{op.name}'" if op.name else op.type
                raise TinyKWSError(
                    f"{where}: {tensor.bits}-bit weights cannot be stored packed in "
                    f"{format_name} (int8 only); use --format c, or widen them to int8"
                )


def read_onnx_metadata(source) -> dict | None:
    """The "tinykws" metadata (JSON) of an ONNX file or its bytes, or None when absent."""
    import onnx

    try:
        if isinstance(source, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(source))
        else:
            model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError; onnx wraps others
        raise TinyKWSError(
            f"{source if not isinstance(source, bytes) else 'bytes'}: not a "
            f"readable ONNX file ({str(exc).splitlines()[0]})"
        ) from None
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return None


def export_onnx(
    graph,
    path,
    *,
    io_dtype: str | None = None,
    metadata: dict | None = None,
    widen_narrow_weights: bool = False,
) -> Path:
    """Write a Graph as an ONNX file (QDQ for int8), atomically; returns the path."""
    try:
        data = onnx_graph_bytes(
            graph, metadata, io_dtype=io_dtype, widen_narrow_weights=widen_narrow_weights
        )
    except TinyKWSError as exc:
        raise TinyKWSError(f"{path}: {exc}") from None
    write_bytes(path, data)
    return Path(path)
