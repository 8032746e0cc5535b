"""Serialize planned TFLite tensors and ops into schema-v3 flatbuffer bytes.

Uses the builder functions generated from TFLite's schema in the `tflite` package (for every
table `T`: `tflite.TStart`, `tflite.TAdd<Field>`, `tflite.TEnd`) on a `flatbuffers.Builder`.
Flatbuffers are written back to front, so children (strings, vectors, tables) are created
before the table that points at them. Constant data sits in 16-byte aligned buffers, as the
schema asks (`data: [ubyte] (force_align: 16)`) and TensorFlow's converter writes them: TFLite
Micro reads weights in place, and targets with 16-byte vector loads want them aligned.
Fields equal to their schema default are not written (the builder's `force_defaults` is off).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

from tinykws.export._tflite_plan import _TENSOR_TYPE

_BUFFER_ALIGNMENT = 16
_SCHEMA_VERSION = 3
_FILE_IDENTIFIER = b"TFL3"


class _Writer:
    """A flatbuffers.Builder that writes each distinct vector, string and table only once.

    Flatbuffers may point many tables at one child; identical shapes, zero-point vectors (all
    zeros, one per channel count), index lists, quantization tables and op options are
    therefore stored once. Every table starts 4-byte aligned, so tables with the same fields
    also share one vtable (the builder merges equal vtables, padding included).
    """

    def __init__(self) -> None:
        import flatbuffers

        self.b = flatbuffers.Builder(1024)
        self._vectors: dict[tuple[str, bytes], int] = {}
        self._tables: dict[tuple, int] = {}

    def table(self, name: str, fields: dict[str, Any]) -> int:
        """Write table `name` with fields (scalars, or offsets of children written before)."""
        import tflite

        key = (name, *fields.items())
        if key not in self._tables:
            self.b.Prep(4, 0)  # pad before the table, not inside it (see the class docstring)
            getattr(tflite, f"{name}Start")(self.b)
            for field_name, value in fields.items():
                getattr(tflite, f"{name}Add{field_name}")(self.b, value)
            self._tables[key] = getattr(tflite, f"{name}End")(self.b)
        return self._tables[key]

    def vector(self, values, dtype: str) -> int:
        array = np.asarray(values, dtype=dtype)
        key = (dtype, array.tobytes())
        if key not in self._vectors:
            self._vectors[key] = self.b.CreateNumpyVector(array)
        return self._vectors[key]

    def string(self, text: str) -> int:
        return self.b.CreateSharedString(text)

    def offsets(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return self.b.EndVector()

    def buffer(self, data: bytes | None) -> int:
        if not data:
            return self.table("Buffer", {})
        b = self.b
        b.StartVector(1, len(data), _BUFFER_ALIGNMENT)
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        return self.table("Buffer", {"Data": b.EndVector()})

    def quantization(self, tensor) -> int | None:
        if not tensor.scale:
            return None
        fields = {
            "Scale": self.vector(tensor.scale, "<f4"),
            "ZeroPoint": self.vector(tensor.zero_point, "<i8"),
        }
        if tensor.axis is not None:
            fields["QuantizedDimension"] = tensor.axis
        return self.table("QuantizationParameters", fields)

    def tensor(self, tensor, buffer_index: int) -> int:
        fields = {
            "Shape": self.vector(tensor.shape, "<i4"),
            "Type": _TENSOR_TYPE[tensor.dtype],
            "Buffer": buffer_index,
        }
        if tensor.name:
            fields["Name"] = self.string(tensor.name)
        quantization = self.quantization(tensor)
        if quantization is not None:
            fields["Quantization"] = quantization
        return self.table("Tensor", fields)

    def operator(self, op, opcode_index: int) -> int:
        import tflite

        fields = {
            key: (self.vector(v, "<i4") if isinstance(v, np.ndarray) else v)
            for key, v in op.fields.items()
        }
        options = None if op.options is None else self.table(op.options, fields)
        table = {
            "OpcodeIndex": opcode_index,
            "Inputs": self.vector(op.inputs, "<i4"),
            "Outputs": self.vector(op.outputs, "<i4"),
        }
        if options is not None:  # LOGISTIC has no options table
            table["BuiltinOptionsType"] = getattr(tflite.BuiltinOptions, op.options)
            table["BuiltinOptions"] = options
        return self.table("Operator", table)

    def operator_code(self, code: str, version: int) -> int:
        import tflite

        builtin = getattr(tflite.BuiltinOperator, code)
        # Runtimes read max(builtin_code, deprecated_builtin_code) (schema_utils.cc), so codes
        # below 127 need only the int8 field; larger ones put 127 there and the code in the other.
        fields = {"DeprecatedBuiltinCode": min(builtin, 127), "Version": version}
        if builtin >= 127:
            fields["BuiltinCode"] = builtin
        return self.table("OperatorCode", fields)


def serialize(tensors, ops, inputs, outputs, metadata: bytes | None, metadata_name: str) -> bytes:
    """Flatbuffer bytes of a one-subgraph model (tensors/ops as planned by export.tflite)."""
    w = _Writer()
    buffer_data = [None]  # buffer 0 is the empty sentinel every non-constant tensor points at
    buffer_index = []
    for tensor in tensors:
        buffer_index.append(len(buffer_data) if tensor.data else 0)
        if tensor.data:
            buffer_data.append(tensor.data)
    if metadata:
        buffer_data.append(metadata)
    buffers = w.offsets([w.buffer(d) for d in buffer_data])
    codes = sorted({(op.code, op.version) for op in ops})
    operators = [w.operator(op, codes.index((op.code, op.version))) for op in ops]
    subgraph = w.table(
        "SubGraph",
        {
            "Tensors": w.offsets([w.tensor(t, i) for t, i in zip(tensors, buffer_index)]),
            "Inputs": w.vector(inputs, "<i4"),
            "Outputs": w.vector(outputs, "<i4"),
            "Operators": w.offsets(operators),
        },
    )
    fields = {
        "Version": _SCHEMA_VERSION,
        "OperatorCodes": w.offsets([w.operator_code(c, v) for c, v in codes]),
        "Subgraphs": w.offsets([subgraph]),
        "Buffers": buffers,
    }
    if metadata:
        entry = w.table(
            "Metadata", {"Name": w.string(metadata_name), "Buffer": len(buffer_data) - 1}
        )
        fields["Metadata"] = w.offsets([entry])
    w.b.Finish(w.table("Model", fields), file_identifier=_FILE_IDENTIFIER)
    return bytes(w.b.Output())


def read_metadata(data: bytes, name: str) -> bytes | None:
    """The bytes of metadata entry `name` in a .tflite file, or None."""
    import tflite

    model = tflite.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == name:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def encode_metadata(meta: dict) -> bytes:
    """Compact JSON (sorted keys), zlib-compressed (level 9) when that is shorter.

    >>> decode_metadata(encode_metadata({"labels": ["yes", "no"]}))
    {'labels': ['yes', 'no']}
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    packed = zlib.compress(text, 9)
    return packed if len(packed) < len(text) else text


def decode_metadata(raw: bytes) -> dict:
    """The dict `encode_metadata` wrote; plain JSON starts with "{", a zlib stream never does."""
    return json.loads(raw if raw[:1] == b"{" else zlib.decompress(raw))
