"""ONNX files of a PyTorch model through `torch.onnx`: float, and int8 weights only (from a
dynamic-range model). Graph-based (int8 QDQ) files are written without torch, by
`tinykws.export.onnx`.

- Float: `torch.onnx.export` of the float model (TorchScript exporter; BatchNorm folded by its
  constant folding). Outputs match PyTorch to float rounding.
- Dynamic range: the float model with each conv / linear weight stored as int8 and read through
  a per-channel DequantizeLinear; activations stay float, as in the dynamic-range model.

The input is normalised features (batch, 1, frames, bins), like the PyTorch model's; the batch
is dynamic. Metadata and checking as in `tinykws.export.onnx.finish_onnx`.

Example:
    >>> from tinykws.export.onnx import read_onnx_metadata
    >>> from tinykws.models import build_model, model_config
    >>> model = build_model(model_config("tinyconv", 2, (49, 40))).eval()
    >>> data = onnx_float_bytes(model, {"labels": ["yes", "no"]})
    >>> read_onnx_metadata(data)["labels"]
    ['yes', 'no']
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import torch

from tinykws.errors import TinyKWSError
from tinykws.export.onnx import OPSET, finish_onnx

INPUT_NAME, OUTPUT_NAME = "features", "logits"


def _torch_onnx(model, input_shape) -> bytes:
    """TorchScript-based ONNX export of a float module taking (batch, 1, frames, bins)."""
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
    return finish_onnx(proto, metadata)


def onnx_dynamic_bytes(dynamic_model, metadata: dict | None = None) -> bytes:
    """ONNX of a dynamic-range model: int8 weights read through DequantizeLinear, float
    activations. `dynamic_model` is a `tinykws.quant.dynamic.DynamicModel`."""
    import onnx

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
    return finish_onnx(proto, metadata)


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
