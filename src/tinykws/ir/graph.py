"""Graph: a deployed network as data (tensors + ops + fixed-point constants), int8 or float32.

A graph is a list of ops in execution order over named tensors. Tensors carry shape (NHWC for
activations), dtype ("int8", "int32" or "float32"), quantization (float32 scale(s) and integer
zero point(s), per tensor or per channel along `axis`), optional constant data, and the bit width
of the weights they hold (2..8; narrower widths use the same int8 storage with range
±(2^(bits-1) - 1)). Ops carry their options (strides, pads, fused activation, ...) and the
fixed-point constants (`params`) that `tinykws.ir.ops` computes when the op is added; after
that they are only read, by the interpreter and the exporters.

Files: `save(path)` writes `graph.json` (structure, scales, options) and `graph.npz` (constant
data and params) into a folder, or `NAME.json` + `NAME.npz` for a path ending in ".json"; the
JSON records the npz's sha256 so a mismatched pair is refused. Loading never unpickles.

Example:
    >>> import numpy as np
    >>> g = Graph("demo")
    >>> _ = g.add_tensor(Tensor("x", (1, 4), "int8", scale=(0.5,), zero_point=(0,)))
    >>> _ = g.add_tensor(Tensor("y", (1, 2, 2), "int8", scale=(0.5,), zero_point=(0,)))
    >>> g.inputs.append("x")
    >>> _ = g.add_op("RESHAPE", ["x"], ["y"], {"shape": [1, 2, 2]})
    >>> g.outputs.append("y")
    >>> g.validate()
    >>> [op.type for op in g.ops]
    ['RESHAPE']
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.io import write_bytes, write_json
from tinykws.ir.ops import OP_KINDS, OpError

DTYPES = {"int8": np.int8, "int32": np.int32, "float32": np.float32}
FORMAT = "tinykws.intgraph"  # the name every saved file carries; unchanged so old files load
VERSION = 1


@dataclass
class Tensor:
    """One tensor of a Graph.

    Attributes:
        name: unique within the graph.
        shape: dimensions; activations are NHWC with the batch first.
        dtype: "int8", "int32" or "float32".
        scale: float32-representable scales: one (per tensor) or one per index of `axis`;
            empty for float tensors.
        zero_point: integer zero points, as many as `scale` (0 for symmetric weights/biases).
        axis: the quantized dimension of a per-channel tensor, else None.
        data: constant values (numpy array of `dtype`), or None for activations.
        bits: bit width of constant weights (2..8); values lie in ±(2^(bits-1) - 1) below 8.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    axis: int | None = None
    data: np.ndarray | None = None
    bits: int = 8

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        # Scales live in files and flatbuffers as float32; keep exactly those values.
        self.scale = tuple(float(np.float32(s)) for s in np.ravel(self.scale))
        self.zero_point = tuple(int(z) for z in np.ravel(self.zero_point))
        if self.data is not None and self.dtype in DTYPES:
            self.data = np.asarray(self.data)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def is_quantized(self) -> bool:
        return bool(self.scale)

    def problem(self) -> str | None:
        """One sentence saying what is wrong with this tensor, or None when it is consistent."""
        if self.dtype not in DTYPES:
            return f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
        if any(d < 1 for d in self.shape):
            return f"every dimension must be >= 1, got {self.shape}"
        if not 2 <= self.bits <= 8:
            return f"bits must be in 2..8, got {self.bits}"
        return self._quant_problem() or self._data_problem()

    def _quant_problem(self) -> str | None:
        if self.dtype == "float32":
            return "a float32 tensor has no scale" if self.scale else None
        if not self.scale or len(self.scale) != len(self.zero_point):
            return "an integer tensor needs as many scales as zero points (at least one)"
        if not all(math.isfinite(s) and s > 0 for s in self.scale):
            return f"scales must be finite and > 0, got {self.scale[:4]}"
        if self.dtype == "int8" and not all(-128 <= z <= 127 for z in self.zero_point):
            return f"int8 zero points must be in [-128, 127], got {self.zero_point[:4]}"
        if self.axis is not None and not (
            0 <= self.axis < len(self.shape) and self.shape[self.axis] == len(self.scale)
        ):
            return f"per-channel axis {self.axis} needs {len(self.scale)} entries on that axis"
        if self.axis is None and len(self.scale) != 1:
            return "several scales need a per-channel axis"
        return None

    def _data_problem(self) -> str | None:
        if self.data is None:
            return None
        if self.data.dtype != DTYPES[self.dtype] or self.data.shape != self.shape:
            return (
                f"data is {self.data.dtype} {self.data.shape}, expected {self.dtype} {self.shape}"
            )
        limit = 2 ** (self.bits - 1) - 1
        if (
            self.bits < 8
            and self.data.size
            and int(np.abs(self.data.astype(np.int32)).max()) > limit
        ):
            return f"{self.bits}-bit weights must lie in [-{limit}, {limit}]"
        return None


@dataclass
class Op:
    """One op: `type` (a key of `tinykws.ir.ops.OP_KINDS`), tensor names, options, params.

    `params` holds the fixed-point constants as numpy int32 arrays (for example "multiplier" and
    "shift" of shape (C_out,), "activation_range" = [min, max]); see `tinykws.ir.ops`.
    """

    type: str
    inputs: list[str]
    outputs: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""


class Graph:
    """A network of int8 or float32 ops: tensors by name, ops in execution order, inputs, outputs.

    `metadata` is free-form JSON data that travels with the graph (labels, front-end config).
    """

    def __init__(self, name: str = "model") -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.metadata: dict[str, Any] = {}

    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise TinyKWSError(f"graph {self.name}: no tensor named '{name}'") from None

    def add_tensor(self, tensor: Tensor) -> Tensor:
        """Add a tensor after checking it; its name must be new."""
        if not tensor.name or tensor.name in self.tensors:
            raise TinyKWSError(f"graph {self.name}: tensor name '{tensor.name}' is empty or taken")
        problem = tensor.problem()
        if problem:
            raise TinyKWSError(f"graph {self.name}: tensor '{tensor.name}': {problem}")
        self.tensors[tensor.name] = tensor
        return tensor

    def add_op(self, op_type: str, inputs, outputs, options=None, name: str = "") -> Op:
        """Append an op, check it, and compute its fixed-point constants (the only time they are).

        Raises:
            TinyKWSError: naming the op when a tensor is missing or inconsistent with the op.
        """
        op = Op(op_type, list(inputs), list(outputs), _jsonable(options or {}), {}, name)
        where = f"op {len(self.ops)} {op_type}" + (f" '{name}'" if name else "")
        try:
            ins, out = self._check_op(op)
            op.params = OP_KINDS[op_type].prepare(ins, out, op.options)
        except OpError as exc:
            raise TinyKWSError(f"graph {self.name}: {where}: {exc}") from None
        self.ops.append(op)
        return op

    def producer(self, name: str) -> Op | None:
        """The op that writes tensor `name`, or None for inputs and constants."""
        return next((op for op in self.ops if name in op.outputs), None)

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]

    def _check_op(self, op: Op) -> tuple[list[Tensor], Tensor]:
        if op.type not in OP_KINDS:
            raise OpError(f"unknown op type; known: {', '.join(OP_KINDS)}")
        kind = OP_KINDS[op.type]
        n_inputs = len(op.inputs)
        if (n_inputs != kind.n_inputs if kind.n_inputs else n_inputs < 1) or len(op.outputs) != 1:
            raise OpError(f"needs {kind.n_inputs or 'one or more'} input(s) and 1 output")
        missing = [n for n in op.inputs + op.outputs if n not in self.tensors]
        if missing:
            raise OpError(f"unknown tensor '{missing[0]}'")
        ins = [self.tensors[n] for n in op.inputs]
        out = self.tensors[op.outputs[0]]
        if out.is_constant:
            raise OpError(f"output '{out.name}' is a constant")
        try:
            shape = kind.infer(ins, op.options)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, OpError):
                raise
            raise OpError(f"missing or malformed options {op.options} ({exc!r})") from None
        if tuple(shape) != out.shape:
            raise OpError(f"output '{out.name}' has shape {out.shape}, the op makes {tuple(shape)}")
        kind.check(ins, out, op.options)
        return ins, out

    def validate(self) -> None:
        """Check the whole graph: tensors, ops, execution order, inputs/outputs, params.

        Raises:
            TinyKWSError: one line naming the first problem found.
        """
        for tensor in self.tensors.values():
            problem = tensor.problem()
            if problem:
                raise TinyKWSError(f"graph {self.name}: tensor '{tensor.name}': {problem}")
        ready = {n for n, t in self.tensors.items() if t.is_constant}
        for name in self.inputs:
            if name not in self.tensors or name in ready:
                raise TinyKWSError(f"graph {self.name}: input '{name}' is unknown or a constant")
            ready.add(name)
        for index, op in enumerate(self.ops):
            self._validate_op(index, op, ready)
        for name in self.outputs:
            if name not in ready:
                raise TinyKWSError(f"graph {self.name}: output '{name}' is never computed")
        if not self.inputs or not self.outputs:
            raise TinyKWSError(f"graph {self.name}: needs at least one input and one output")

    def _validate_op(self, index: int, op: Op, ready: set[str]) -> None:
        where = f"graph {self.name}: op {index} {op.type}" + (f" '{op.name}'" if op.name else "")
        try:
            ins, out = self._check_op(op)
            expected = OP_KINDS[op.type].prepare(ins, out, op.options)
        except OpError as exc:
            raise TinyKWSError(f"{where}: {exc}") from None
        early = [n for n in op.inputs if n not in ready]
        if early or op.outputs[0] in ready:
            raise TinyKWSError(f"{where}: reads a tensor before it is computed or rewrites one")
        shapes = {k: np.shape(v) for k, v in op.params.items()}
        if shapes != {k: np.shape(v) for k, v in expected.items()}:
            raise TinyKWSError(f"{where}: fixed-point params {sorted(shapes)} are incomplete")
        ready.add(op.outputs[0])

    def save(self, path: str | Path) -> Path:
        """Write the graph as JSON + npz (atomically, npz first); returns the JSON path."""
        json_path, npz_path = graph_paths(path)
        arrays = {
            f"tensor.{i}": t.data for i, t in enumerate(self.tensors.values()) if t.is_constant
        }
        for i, op in enumerate(self.ops):
            arrays.update({f"op.{i}.{k}": v for k, v in op.params.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
        write_bytes(npz_path, payload)
        write_json(json_path, self._to_json(npz_path.name, hashlib.sha256(payload).hexdigest()))
        return json_path

    def _to_json(self, npz_name: str, digest: str) -> dict[str, Any]:
        tensors = [
            {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "scale": list(t.scale),
                "zero_point": list(t.zero_point),
                "axis": t.axis,
                "bits": t.bits,
                "constant": t.is_constant,
            }
            for t in self.tensors.values()
        ]
        ops = [
            {
                "type": op.type,
                "name": op.name,
                "inputs": op.inputs,
                "outputs": op.outputs,
                "options": op.options,
            }
            for op in self.ops
        ]
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "metadata": self.metadata,
            "tensors": tensors,
            "ops": ops,
            "arrays": npz_name,
            "arrays_sha256": digest,
        }

    @classmethod
    def load(cls, path: str | Path) -> Graph:
        """Read a graph written by `save` (no pickle), then validate it."""
        json_path, _ = graph_paths(path)
        doc = _read_json(json_path)
        npz_path = json_path.parent / str(doc.get("arrays", ""))
        try:
            payload = npz_path.read_bytes()
        except OSError:
            raise TinyKWSError(f"{npz_path}: missing arrays file of graph {json_path}") from None
        if hashlib.sha256(payload).hexdigest() != doc.get("arrays_sha256"):
            raise TinyKWSError(f"{npz_path}: does not match {json_path.name}; save the graph again")
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            graph = _from_json(doc, arrays)
        except (KeyError, TypeError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise TinyKWSError(
                f"{json_path}: malformed graph ({exc}); save the graph again"
            ) from None
        graph.validate()
        return graph


def graph_paths(path: str | Path) -> tuple[Path, Path]:
    """(json, npz) paths for a folder or for a path ending in ".json"."""
    path = Path(path)
    if path.suffix == ".json":
        return path, path.with_suffix(".npz")
    return path / "graph.json", path / "graph.npz"


def _read_json(json_path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(json_path.read_text())
    except OSError:
        raise TinyKWSError(f"{json_path}: no such graph file") from None
    except ValueError as exc:
        raise TinyKWSError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TinyKWSError(f"{json_path}: not a tinykws integer graph")
    if doc.get("version") != VERSION:
        raise TinyKWSError(f"{json_path}: graph version {doc.get('version')} is not {VERSION}")
    return doc


def _from_json(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Graph:
    graph = Graph(doc["name"])
    graph.metadata = dict(doc.get("metadata") or {})
    for i, t in enumerate(doc["tensors"]):
        data = arrays[f"tensor.{i}"] if t["constant"] else None
        graph.tensors[t["name"]] = Tensor(
            t["name"],
            tuple(t["shape"]),
            t["dtype"],
            tuple(t["scale"]),
            tuple(t["zero_point"]),
            t["axis"],
            data,
            t["bits"],
        )
    for i, o in enumerate(doc["ops"]):
        prefix = f"op.{i}."
        params = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        graph.ops.append(
            Op(
                o["type"],
                list(o["inputs"]),
                list(o["outputs"]),
                o["options"],
                params,
                o.get("name", ""),
            )
        )
    graph.inputs = list(doc["inputs"])
    graph.outputs = list(doc["outputs"])
    return graph


def _jsonable(value: Any) -> Any:
    """Options as plain JSON data (tuples -> lists, numpy scalars -> Python), so they round-trip."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
