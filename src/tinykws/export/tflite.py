"""Write a Graph as a .tflite flatbuffer, with no TensorFlow dependency.

The file is built with the `flatbuffers` runtime and the builder functions generated from
TFLite's schema (the `tflite` package: `tflite.ModelStart`, `tflite.Conv2DOptionsAddPadding`,
...). One subgraph, builtin ops only, int8 tensors with their per-tensor or per-channel
quantization, fused activations. LiteRT's builtin reference kernels and TensorFlow Lite Micro's
interpreter reproduce `tinykws.ir.interpret` exactly on the files written here
(tests/test_tflite_ops.py, tests/test_tflite_micro.py).

Biases carry their quantization, as TensorFlow's converter writes it: scale s_in * s_w[c],
zero point 0, quantized dimension 0. No builtin int8 kernel reads it (LiteRT and TFLite Micro
compute the requantization from the input, weight and output scales), but LiteRT's XNNPACK
delegate takes a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED only when its quantized bias
has it; without it LiteRT falls back to its builtin kernels (tests/test_litert_delegation.py).
`compact_bias=True` leaves it out of per-channel ops, for targets that never use a delegate
(TFLite Micro computes the same outputs from either file): DS-CNN-S (12 classes, 49x10) is then
2,560 B smaller (30,128 B instead of 32,688 B: one float32 scale per channel and a quantization
table per bias; the all-zero int64 zero-point vectors are shared with the weights'), but runs
3.3x slower in LiteRT's default resolver (about 200 us vs 62 us, 1 thread, x86-64, where the
default file runs at 1.13x LiteRT's float32 file of the same network; `benchmarks/runtime.py`).

What is left out, compared with TensorFlow's converter, and why it is safe:
- signature defs, "min_runtime_version", description and subgraph names: runtimes address the
  graph's inputs and outputs by index; TFLite Micro never reads them;
- names of internal tensors (kept with `tensor_names="all"`): only viewers show them;
- min/max calibration ranges of tensors: runtimes compute with scale and zero point only;
- `builtin_code` of operator codes below 127: the deprecated int8 field holds the same code
  and runtimes (LiteRT, TFLite Micro: schema_utils.cc) read the larger of the two fields;
- duplicates: identical vectors (shapes, zero-point lists, index lists) and tables
  (quantization parameters, op options) are stored once and shared, which flatbuffers permits
  (tables are immutable; readers only follow offsets);
- a RESHAPE that only flattens the input of FULLY_CONNECTED ops: FULLY_CONNECTED flattens its
  input itself (rows = elements / input depth), and TensorFlow's converter drops it too.
As in TensorFlow's files, fields equal to their schema default (buffer 0, opcode index 0, op
version 1, SAME padding, no activation, dilation 1, quantized dimension 0) are not written:
readers return the default. What stays although it costs flash: the 16-byte alignment of
constant buffers, which the schema asks for (`force_align: 16`; 118 B of padding for
DS-CNN-S), and one int64 zero point per per-channel scale, which LiteRT's InterpreterBuilder
requires (616 B for DS-CNN-S).
The only metadata entry is "tinykws" (front-end config, labels, ...: compact JSON, zlib-
compressed when that is shorter; `read_tflite_metadata`), written when there is metadata.

Size, DS-CNN-S int8 (12 classes, 49x10, 24,368 B of weights and biases, metadata left out):
32,688 B, 1.34x (compact biases: 30,128 B, 1.24x). Of the compact file's 5,760 B overhead,
the per-channel weight scales and their zero points are 3,008 B; the tables and index vectors
of its 33 tensors and 11 ops about 2,400 B; buffer length prefixes and alignment 190 B. 1.15x
would leave 647 B for those tables, less than the tensor tables alone take (766 B): within
1.15x needs per-tensor weight scales.

Explicit padding that TFLite's SAME/VALID cannot express becomes a PAD (convolutions, padded
with the input zero point) or PADV2 (max pooling, padded with the lowest value) op in front;
average pooling with such padding is refused, as TFLite would count the padded pixels.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from tinykws.ir import GraphBuilder, QuantParams
    >>> b = GraphBuilder()
    >>> x = b.input("x", (1, 4), QuantParams(0.1, 0))
    >>> graph = b.build([b.softmax(x)])
    >>> path = export_tflite(graph, pathlib.Path(tempfile.mkdtemp()) / "m.tflite",
    ...                      metadata={"labels": ["yes", "no"]})
    >>> read_tflite_metadata(path)
    {'labels': ['yes', 'no']}
"""

from __future__ import annotations

from pathlib import Path

from tinykws.errors import TinyKWSError
from tinykws.export._tflite_plan import plan_tflite
from tinykws.export._tflite_writer import decode_metadata, encode_metadata, read_metadata, serialize
from tinykws.io import write_bytes
from tinykws.ir.graph import Graph
from tinykws.ir.transform import with_io_dtype

METADATA_NAME = "tinykws"
TENSOR_NAMES = ("io", "all")


def tflite_bytes(
    graph: Graph,
    *,
    metadata: dict | None = None,
    widen_narrow_weights: bool = False,
    tensor_names: str = "io",
    compact_bias: bool = False,
    hybrid: dict | None = None,
) -> bytes:
    """The .tflite file contents for `graph` (see `export_tflite`); `hybrid` stores float
    weight tensors as int8 (`tinykws.export.tflite_dynamic`)."""
    if tensor_names not in TENSOR_NAMES:
        raise TinyKWSError(
            f"tensor_names must be one of {', '.join(TENSOR_NAMES)}; got {tensor_names!r}"
        )
    plan = plan_tflite(graph, widen_narrow_weights, compact_bias, hybrid)
    meta = graph.metadata if metadata is None else metadata
    meta_bytes = encode_metadata(meta) if meta else None
    inputs = [plan.index[n] for n in graph.inputs]
    outputs = [plan.index[n] for n in graph.outputs]
    if tensor_names == "io":  # internal names only help debugging; they cost flash
        for i, tensor in enumerate(plan.tensors):
            if i not in inputs and i not in outputs:
                tensor.name = ""
    return serialize(plan.tensors, plan.ops, inputs, outputs, meta_bytes, METADATA_NAME)


def export_tflite(
    graph: Graph,
    path,
    *,
    io_dtype: str | None = None,
    metadata: dict | None = None,
    widen_narrow_weights: bool = False,
    tensor_names: str = "io",
    compact_bias: bool = False,
) -> Path:
    """Write `graph` as a .tflite file, atomically.

    Args:
        graph: a valid Graph (int8 or float32).
        path: destination file.
        io_dtype: None keeps the graph's boundary; "int8" or "float32" rewrites it
            (`tinykws.ir.transform.with_io_dtype`).
        metadata: JSON data stored under the "tinykws" metadata entry (default: graph.metadata).
        widen_narrow_weights: store 2..7-bit weights as plain int8 instead of refusing them.
        tensor_names: "io" names only the graph inputs and outputs (smallest file); "all"
            keeps every tensor's name (for inspecting the file in a viewer).
        compact_bias: leave the quantization parameters out of the biases of per-channel ops
            (8 bytes less per channel, but LiteRT's XNNPACK delegate then declines those ops:
            for targets that never use a delegate, such as TFLite Micro).

    Returns:
        The path written.
    """
    if io_dtype is not None:
        graph = with_io_dtype(graph, io_dtype)
    try:
        data = tflite_bytes(
            graph,
            metadata=metadata,
            widen_narrow_weights=widen_narrow_weights,
            tensor_names=tensor_names,
            compact_bias=compact_bias,
        )
    except TinyKWSError as exc:
        raise TinyKWSError(f"{path}: {exc}") from None
    write_bytes(path, data)
    return Path(path)


def read_tflite_metadata(source) -> dict | None:
    """The "tinykws" metadata (JSON) of a .tflite file or its bytes, or None when absent."""
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    raw = read_metadata(bytes(data), METADATA_NAME)
    return None if raw is None else decode_metadata(raw)
