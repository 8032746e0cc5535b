"""ONNX files: float (from PyTorch), int8 QDQ (from the integer graph), int8 weights only
(from a dynamic-range model).

- Float: `torch.onnx.export` of the float model (TorchScript exporter; BatchNorm folded by its
  constant folding). Outputs match PyTorch to float rounding.
- int8 QDQ: the IntGraph written op by op (`tinykws.export.onnx_qdq`): QuantizeLinear /
  DequantizeLinear around float ops, per-channel int8 weights, int32 biases. ONNX Runtime runs
  it with its integer kernels.
- Dynamic range: the float model with each conv / linear weight stored as int8 and read through
  a per-channel DequantizeLinear; activations stay float, as in the dynamic-range model.

Every file is checked with `onnx.checker` and carries the model's labels, front-end config and
normalisation as JSON in `metadata_props["tinykws"]` (`read_onnx_metadata`). The input is
normalised features (batch, 1, frames, bins), like the PyTorch model's; the batch is dynamic.

Example:
    >>> from tinykws.models import build_model, model_config
    >>> model = build_model(model_config("tinyconv", 2, (49, 40))).eval()
    >>> data = onnx_float_bytes(model, {"labels": ["yes", "no"]})
    >>> read_onnx_metadata(data)["labels"]
    ['yes', 'no']
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; readable by every ONNX Runtime since 1.11
METADATA_KEY = "tinykws"
INPUT_NAME, OUTPUT_NAME = "features", "logits"


def _finish(model, metadata: dict | None) -> bytes:
    """Attach metadata, check the model, return its bytes."""
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


def _torch_onnx(model, input_shape) -> bytes:
    """TorchScript-based ONNX export of a float module taking (batch, 1, frames, bins)."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-folding and deprecation notes, not problems
        torch.onnx.export(
            model.eval(),
            torch.zeros(1, 1, *input_shape),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def onnx_float_bytes(model, metadata: dict | None = None) -> bytes:
    """A float ONNX model of a PyTorch model (`model.config.input_shape` gives the input)."""
    import onnx

    proto = onnx.load_from_string(_torch_onnx(model, tuple(model.config.input_shape)))
    return _finish(proto, metadata)


def onnx_graph_bytes(
    graph,
    metadata: dict | None = None,
    *,
    io_dtype: str | None = None,
    widen_narrow_weights: bool = False,
    unsigned: bool = True,
) -> bytes:
    """An ONNX model of an IntGraph: QDQ for int8 graphs, plain float for float32 graphs.

    Args:
        graph: a valid IntGraph.
        metadata: JSON stored under metadata_props["tinykws"] (default: graph.metadata).
        io_dtype: None keeps the graph's boundary; "int8" or "float32" rewrites it.
        widen_narrow_weights: store 2..7-bit weights as int8 instead of refusing them.
        unsigned: store activations and weights as uint8 (see `tinykws.export.onnx_qdq`).
    """
    from onnx import helper

    from tinykws.export.onnx_qdq import qdq_graph
    from tinykws.ir.transform import with_io_dtype

    if io_dtype is not None:
        graph = with_io_dtype(graph, io_dtype)
    if not widen_narrow_weights:
        refuse_narrow_weights(graph, "ONNX")
    model = helper.make_model(
        qdq_graph(graph, unsigned), opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = IR_VERSION
    return _finish(model, graph.metadata if metadata is None else metadata)


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


def onnx_dynamic_bytes(dynamic_model, metadata: dict | None = None) -> bytes:
    """ONNX of a dynamic-range model: int8 weights read through DequantizeLinear, float
    activations. `dynamic_model` is a `tinykws.quant.dynamic.DynamicModel`."""
    import onnx
    import torch

    net = copy.deepcopy(dynamic_model.net).eval()
    replacements = {}
    with torch.no_grad():
        for path in dynamic_model.paths:
            layer = net.get_submodule(path)
            quantizer = dynamic_model.weight[path.replace(".", "__")]
            integers = quantizer.integers(layer.weight).to(torch.int8).numpy()
            fake = quantizer(layer.weight)
            layer.weight.copy_(fake)
            replacements[_array_key(fake.numpy())] = (integers, quantizer.scale.numpy(), 0)
            if fake.dim() == 2:  # a MatMul stores the transposed weight
                replacements[_array_key(fake.numpy().T)] = (integers.T, quantizer.scale.numpy(), 1)
    proto = onnx.load_from_string(_torch_onnx(net, tuple(net.config.input_shape)))
    found = _dequantize_initializers(proto.graph, replacements)
    if found < len(dynamic_model.paths):
        raise TinyKWSError(
            f"ONNX export found {found} of {len(dynamic_model.paths)} quantized "
            f"weights in the exported graph; export the float model instead"
        )
    return _finish(proto, metadata)


def _array_key(array: np.ndarray) -> tuple:
    array = np.ascontiguousarray(array, np.float32)
    return array.shape, array.tobytes()


def _dequantize_initializers(graph, replacements: dict) -> int:
    """Replace float initializers found in `replacements` by int8 + DequantizeLinear."""
    from onnx import helper, numpy_helper

    nodes, kept, found = [], [], 0
    for init in graph.initializer:
        key = _array_key(numpy_helper.to_array(init))
        if key not in replacements:
            kept.append(init)
            continue
        integers, scale, axis = replacements[key]
        scale = scale.astype(np.float32)
        zero = np.zeros(scale.shape, np.int8)
        per_channel = scale.size > 1
        if not per_channel:
            scale, zero = scale.reshape(()), zero.reshape(())
        names = [f"{init.name}_int8", f"{init.name}_scale", f"{init.name}_zero_point"]
        kept += [numpy_helper.from_array(a, n) for a, n in zip((integers, scale, zero), names)]
        extra = {"axis": axis} if per_channel else {}
        nodes.append(
            helper.make_node(
                "DequantizeLinear", names, [init.name], name=f"{init.name}_dq", **extra
            )
        )
        found += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    return found


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
    """Write an IntGraph as an ONNX file (QDQ for int8), atomically; returns the path."""
    from tinykws.io import write_bytes

    try:
        data = onnx_graph_bytes(
            graph, metadata, io_dtype=io_dtype, widen_narrow_weights=widen_narrow_weights
        )
    except TinyKWSError as exc:
        raise TinyKWSError(f"{path}: {exc}") from None
    write_bytes(path, data)
    return Path(path)
