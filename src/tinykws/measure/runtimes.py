"""Run exported files: .tflite in LiteRT, .onnx in ONNX Runtime, as predictors and as runners.

A runner takes one model-input batch and returns float32 logits, converting at an int8 boundary
exactly as the graph's QUANTIZE / DEQUANTIZE would (float32 division, rounding half away from
zero). A predictor adds what `tinykws evaluate` needs: labels, front end and normalisation,
read from the file's "tinykws" metadata or from a sidecar `NAME.tflite.json` / `NAME.onnx.json`.

Backends (`--backend`):
- .tflite: "litert" (default: LiteRT's default kernels, XNNPACK included), "reference"
  (LiteRT's builtin reference kernels, the arithmetic of TFLite Micro) or "tflm" (TensorFlow
  Lite Micro's own interpreter, the `tflite-micro` package: what microcontrollers run);
- .onnx: "onnxruntime" (default, CPU).
`predictors.load_predictor` reaches `load_tflite_predictor` and `load_onnx_predictor`
through its `LOADERS` table.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.build import CModel, build_shared_library
from tinykws.export.onnx import read_onnx_metadata
from tinykws.export.tflite import read_tflite_metadata
from tinykws.ir.kernels import dequantize_s8_f32, quantize_f32_s8
from tinykws.quant.data import feature_batches
from tinykws.train.model_file import normalization

TFLITE_RESOLVERS = {"litert": "AUTO", "reference": "BUILTIN_REF"}
TFLITE_BACKENDS = (*TFLITE_RESOLVERS, "tflm")
ONNX_BACKENDS = ("onnxruntime",)
SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | Path) -> Path:
    """Where the metadata of an exported file goes when it is not embedded: NAME.tflite.json."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


@dataclass
class _Boundary:
    """How one input or output crosses between float32 and the file's dtype."""

    dtype: Any
    scale: float = 0.0
    zero_point: int = 0

    def to_file(self, x: np.ndarray) -> np.ndarray:
        if self.dtype == np.int8:
            return quantize_f32_s8(x, self.scale, self.zero_point)
        return np.asarray(x, np.float32)

    def from_file(self, y: np.ndarray) -> np.ndarray:
        if np.asarray(y).dtype == np.int8:
            return dequantize_s8_f32(np.asarray(y), self.scale, self.zero_point)
        return np.asarray(y, np.float32)


class TFLiteRunner:
    """A .tflite model in LiteRT, one sample per invoke (its graph has batch 1).

    `run(x)` takes NHWC float32 (N, frames, bins, 1) normalised features; `invoke(x)` runs one
    sample already in the file's dtype (for timing).
    """

    def __init__(self, source, resolver: str = "AUTO", threads: int = 1) -> None:
        from ai_edge_litert import interpreter as litert

        kind = getattr(litert.OpResolverType, resolver)
        content = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        try:
            self.interpreter = litert.Interpreter(
                model_content=bytes(content),
                experimental_op_resolver_type=kind,
                num_threads=threads,
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TinyKWSError(
                f"LiteRT cannot load the model ({str(exc).splitlines()[0]})"
            ) from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.inputs = _boundary(self.input)
        self.outputs = _boundary(self.output)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """Samples in the file's dtype in, the file's output dtype out (int8 for int8 io)."""
        return np.concatenate([self.invoke(x[i : i + 1]) for i in range(len(x))])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.outputs.from_file(self.run_raw(self.inputs.to_file(x)))


class TFLiteMicroRunner:
    """A .tflite model in TensorFlow Lite Micro's interpreter (the `tflite-micro` package), one
    sample per invoke; the same interface as `TFLiteRunner`.

    Example:
        >>> from tinykws.ir import GraphBuilder, QuantParams
        >>> from tinykws.export.tflite import tflite_bytes
        >>> b = GraphBuilder()
        >>> x = b.input("x", (1, 4), QuantParams(0.1, 0))
        >>> runner = TFLiteMicroRunner(tflite_bytes(b.build([b.softmax(x)])))
        >>> runner.invoke(np.array([[0, 0, 0, 0]], np.int8)).tolist()
        [[-64, -64, -64, -64]]
    """

    def __init__(self, source) -> None:
        from tflite_micro.python.tflite_micro import runtime as tflm

        content = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        try:
            self.interpreter = tflm.Interpreter.from_bytes(
                bytes(content), arena_size=micro_arena_bytes(bytes(content))
            )
        except (ValueError, RuntimeError) as exc:
            raise TinyKWSError(
                f"TFLite Micro cannot load the model ({str(exc).splitlines()[0]})"
            ) from None
        self.inputs = _micro_boundary(self.interpreter.get_input_details(0))
        self.outputs = _micro_boundary(self.interpreter.get_output_details(0))
        self.input_shape = tuple(int(d) for d in self.interpreter.get_input_details(0)["shape"])

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_input(np.ascontiguousarray(x), 0)
        self.interpreter.invoke()
        return self.interpreter.get_output(0).copy()

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """Samples in the file's dtype in, the file's output dtype out (int8 for int8 io)."""
        return np.concatenate([self.invoke(x[i : i + 1]) for i in range(len(x))])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.outputs.from_file(self.run_raw(self.inputs.to_file(x)))


def micro_arena_bytes(data: bytes) -> int:
    """A tensor arena TFLite Micro can surely plan the model in: every activation tensor side
    by side (its planner shares memory, so it needs less), plus 64 KiB for the interpreter's
    own records and ten times the file's size (the package's default), for scratch buffers.
    Host memory is cheap; an arena too small fails to allocate.

    Example:
        >>> from tinykws.ir import GraphBuilder, QuantParams
        >>> from tinykws.export.tflite import tflite_bytes
        >>> b = GraphBuilder()
        >>> x = b.input("x", (1, 4), QuantParams(0.1, 0))
        >>> data = tflite_bytes(b.build([b.softmax(x)]))
        >>> micro_arena_bytes(data) == 4 + 4 + 65536 + 10 * len(data)
        True
    """
    import tflite

    model = tflite.Model.GetRootAs(data, 0)
    activations = 0
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if model.Buffers(tensor.Buffer()).DataLength() == 0:
                count = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
                activations += count * _ITEM_BYTES.get(tensor.Type(), 8)
    return activations + 65536 + 10 * len(data)


# bytes per element of tflite.TensorType FLOAT32, INT32, UINT8, INT64, INT16, INT8
_ITEM_BYTES = {0: 4, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1}


def _micro_boundary(detail: dict) -> _Boundary:
    q = detail.get("quantization_parameters") or {}
    scales, zero_points = list(q.get("scales", [])), list(q.get("zero_points", []))
    if not scales:
        return _Boundary(detail["dtype"])
    return _Boundary(detail["dtype"], float(scales[0]), int(zero_points[0]))


def litert_undelegated_ops(source, threads: int = 1) -> list[str]:
    """The type of every op of a .tflite that LiteRT's default resolver leaves to its builtin
    kernels instead of a delegate (XNNPACK), in graph order; [] when all are delegated.
    (XNNPACK has no int8 SOFTMAX, for one.)

    After allocation, LiteRT lists the file's ops followed by one DELEGATE node per delegated
    partition, whose inputs and outputs are the partition's boundary. An op belongs to a
    partition when it lies on a path from the partition's outputs back to its inputs.

    Example:
        >>> from tinykws.ir import GraphBuilder, QuantParams
        >>> from tinykws.export.tflite import tflite_bytes
        >>> b = GraphBuilder()
        >>> x = b.input("x", (1, 4), QuantParams(0.1, 0))
        >>> litert_undelegated_ops(tflite_bytes(b.build([b.softmax(x)])))
        ['SOFTMAX']
    """
    details = TFLiteRunner(source, "AUTO", threads).interpreter._get_ops_details()
    ops = [op for op in details if op["op_name"] != "DELEGATE"]
    producer = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    delegated: set[int] = set()
    for partition in (op for op in details if op["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            i = producer.get(tensor)
            if tensor in boundary or i is None or i in delegated:
                continue
            delegated.add(i)
            pending.extend(int(t) for t in ops[i]["inputs"])
    return [op["op_name"] for i, op in enumerate(ops) if i not in delegated]


def _boundary(detail: dict) -> _Boundary:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return _Boundary(detail["dtype"], float(scale), int(zero_point))


class ONNXRunner:
    """An .onnx model in ONNX Runtime (CPU). `run(x)` takes NCHW float32 (N, 1, frames, bins)."""

    def __init__(self, source, threads: int = 1, meta: dict | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only
        content = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        try:
            self.session = ort.InferenceSession(
                bytes(content), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise TinyKWSError(
                f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})"
            ) from None
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        io = (meta or {}).get("io", {})
        self.inputs = _Boundary(np.int8, *io["input"]) if "input" in io else _Boundary(np.float32)
        self.outputs = (
            _Boundary(np.int8, *io["output"]) if "output" in io else _Boundary(np.float32)
        )

    def invoke(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input.name: x})[0]

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        return self.invoke(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.outputs.from_file(self.invoke(self.inputs.to_file(x)))


class CRunner:
    """Generated C (a `tinykws export --format c` folder) compiled for this machine (gcc) and run
    through ctypes; the int8 boundary's scale and zero point are read from its model.h."""

    def __init__(self, folder) -> None:
        folder = Path(folder)
        self._build_dir = tempfile.TemporaryDirectory(prefix="tinykws-c-")
        library = build_shared_library(folder, Path(self._build_dir.name) / "libtinykws.so")
        self.model = CModel(library)
        header = (folder / "model.h").read_text()
        self.inputs = _Boundary(np.int8, *_define(header, "INPUT"))
        self.outputs = _Boundary(np.int8, *_define(header, "OUTPUT"))

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.outputs.from_file(self.model.invoke(self.inputs.to_file(x)))


def _define(header: str, which: str) -> tuple[float, int]:
    """(scale, zero point) of TINYKWS_<which>_SCALE / _ZERO_POINT in a generated model.h."""

    scale = re.search(rf"TINYKWS_{which}_SCALE\s+([-+0-9.eE]+)f", header)
    zero = re.search(rf"TINYKWS_{which}_ZERO_POINT\s+\((-?[0-9]+)\)", header)
    if scale is None or zero is None:
        raise TinyKWSError(f"model.h: no TINYKWS_{which}_SCALE / _ZERO_POINT; export it again")
    return float(scale.group(1)), int(zero.group(1))


def load_c_predictor(folder, meta: dict) -> FilePredictor:
    """A generated C folder as a predictor (labels, front end and normalisation from `meta`)."""
    return FilePredictor(CRunner(folder), meta, "NHWC", path=str(folder), backend="c")


@dataclass
class FilePredictor:
    """An exported file as a `tinykws.measure.predictors.Predictor`."""

    runner: Any
    meta: dict
    layout: str  # "NHWC" (.tflite) or "NCHW" (.onnx)
    batch_size: int = 256
    path: str = ""
    backend: str = ""
    info: dict = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def logits(self, features: np.ndarray) -> np.ndarray:
        out = [np.zeros((0, len(self.labels)), np.float32)]
        for batch in feature_batches(features, normalization(self.meta), self.batch_size):
            x = batch.numpy()  # (B, 1, frames, bins)
            if self.layout == "NHWC":
                x = x.transpose(0, 2, 3, 1)
            out.append(self.runner.run(np.ascontiguousarray(x)).reshape(len(x), -1))
        return np.concatenate(out)


def file_metadata(path: Path, embedded: dict | None) -> dict:
    """The metadata embedded in an exported file, else its sidecar JSON; checked for use."""
    meta = embedded
    sidecar = sidecar_path(path)
    if meta is None and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except ValueError as exc:
            raise TinyKWSError(f"{sidecar}: not valid JSON ({exc})") from None
    if meta is None:
        raise TinyKWSError(
            f"{path}: no tinykws metadata (labels, front end, normalisation) in "
            f"the file or in {sidecar.name}; export it with `tinykws export`"
        )
    missing = [k for k in ("labels", "frontend", "normalization") if k not in meta]
    if missing:
        raise TinyKWSError(
            f"{path}: its metadata has no '{missing[0]}'; export it again with `tinykws export`"
        )
    return meta


def load_tflite_predictor(path: Path, backend: str = "litert") -> FilePredictor:
    """A .tflite file run by LiteRT ("litert" or "reference" kernels) or TFLite Micro ("tflm")."""

    if backend not in TFLITE_BACKENDS:
        raise TinyKWSError(
            f"{path}: a .tflite file runs with --backend "
            f"{' or '.join(TFLITE_BACKENDS)}; got {backend!r}"
        )
    data = Path(path).read_bytes()
    try:
        embedded = read_tflite_metadata(data)
    except Exception:  # a damaged flatbuffer raises anything from struct errors to IndexError
        raise TinyKWSError(f"{path}: not a readable .tflite file") from None
    meta = file_metadata(Path(path), embedded)
    if backend == "tflm":
        runner = TFLiteMicroRunner(data)
    else:
        runner = TFLiteRunner(data, TFLITE_RESOLVERS[backend])
    return FilePredictor(runner, meta, "NHWC", batch_size=64, path=str(path), backend=backend)


def load_onnx_predictor(path: Path, backend: str = "onnxruntime") -> FilePredictor:
    """An .onnx file run by ONNX Runtime."""

    if backend not in ONNX_BACKENDS:
        raise TinyKWSError(
            f"{path}: an .onnx file runs with --backend onnxruntime; got {backend!r}"
        )
    meta = file_metadata(Path(path), read_onnx_metadata(path))
    runner = ONNXRunner(path, meta=meta)
    return FilePredictor(runner, meta, "NCHW", path=str(path), backend=backend)
