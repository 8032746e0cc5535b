"""Export a model file (checkpoint, quantized model, integer graph or run directory) to a
deployable format: `tinykws export MODEL --format tflite|onnx|c --out PATH`.

What each format holds:

| model                         | tflite                   | onnx                      | c        |
|-------------------------------|--------------------------|---------------------------|----------|
| float checkpoint              | float32 graph            | float (torch.onnx)        | refused  |
| ptq / qat, 8-bit weights      | int8 graph               | int8 QDQ                  | int8     |
| ptq / qat, 2..7-bit weights   | refused (or widened)     | refused (or widened)      | packed   |
| dynamic range                 | int8 weights, float acts | int8 weights, float acts  | refused  |
| asymmetric weights (any)      | refused                  | refused                   | refused  |

A refusal names the layer and the format that can hold it. The file is built in memory first
and written atomically, so a refusal or an error leaves nothing behind. The labels, front-end
config and normalisation travel inside the file ("tinykws" metadata), or in a sidecar
`NAME.tflite.json` with `sidecar=True`; `tinykws evaluate FILE --data ROOT` reads either.

Example:
    >>> import tempfile, pathlib
    >>> from tinykws.checkpoint import save_checkpoint
    >>> from tinykws.config import to_dict
    >>> from tinykws.features.frontend import frontend_config
    >>> from tinykws.models import build_model, config_to_dict, model_config
    >>> model = build_model(model_config("tinyconv", 2, (49, 40)))
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> meta = {"model": config_to_dict(model.config), "labels": ["yes", "no"],
    ...         "frontend": to_dict(frontend_config("micro")),
    ...         "normalization": {"mean": [0.0] * 40, "std": [1.0] * 40}}
    >>> save_checkpoint(folder / "m.safetensors", model.state_dict(), meta)
    >>> result = export_model(folder / "m.safetensors", "tflite", folder / "m.tflite")
    >>> result.precision, result.bytes == (folder / "m.tflite").stat().st_size
    ('float32', True)
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from tinykws.config import check_choice
from tinykws.errors import TinyKWSError
from tinykws.export import EXPORTERS, onnx_torch
from tinykws.export import onnx as onnx_export
from tinykws.export.c.sparse import SPARSE_MODES
from tinykws.export.float_graph import lower_float
from tinykws.export.tflite import tflite_bytes
from tinykws.export.tflite_dynamic import dynamic_tflite_bytes
from tinykws.io import write_bytes, write_json
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.model_file import LoadedModel, load_model
from tinykws.measure.runtimes import sidecar_path

FORMATS = ("tflite", "onnx", "c")
IO_DTYPES = ("int8", "float32")
META_KEYS = ("labels", "frontend", "normalization", "data", "model", "recipe")
EXPORT_FORMAT = "tinykws-export-1"


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        io_dtype: "int8" or "float32" inputs and outputs of an int8 model; None = the format's
            default (tflite and c: int8, onnx: float32). Float models are always float32.
        widen_narrow_weights: store 2..7-bit weights as int8 in tflite / onnx (exact, not
            packed) instead of refusing them.
        sidecar: write the metadata to NAME.<ext>.json beside the file instead of inside it.
        tensor_names: tflite: "io" (only inputs and outputs named) or "all".
        compact_bias: tflite: leave the quantization parameters out of the biases of
            per-channel ops (8 bytes less per channel; LiteRT's XNNPACK delegate then declines
            those ops, see `tinykws.export.tflite`): for targets that never use a delegate.
        sparse: c: "auto" stores a layer's weights sparse (bitmask + non-zero values) where
            that is smaller, "off" always dense (faster), "always" sparse wherever the kernels
            allow (testing); see `tinykws.export.c.sparse`.
    """

    io_dtype: str | None = None
    widen_narrow_weights: bool = False
    sidecar: bool = False
    tensor_names: str = "io"
    compact_bias: bool = False
    sparse: str = "auto"

    def __post_init__(self) -> None:
        if self.io_dtype is not None:
            check_choice("export.io", self.io_dtype, IO_DTYPES)
        check_choice("export.tensor_names", self.tensor_names, ("io", "all"))
        check_choice("export.sparse", self.sparse, SPARSE_MODES)


@dataclass(frozen=True)
class ExportResult:
    """One written artefact: format, path, sizes, precision and boundary dtype."""

    format: str
    path: Path
    bytes: int
    zipped_bytes: int
    precision: str
    io_dtype: str

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "path": str(self.path),
            "bytes": self.bytes,
            "zipped_bytes": self.zipped_bytes,
            "precision": self.precision,
            "io_dtype": self.io_dtype,
        }


def export_metadata(model: LoadedModel, io_dtype: str) -> dict:
    """What an exported file carries: labels, front end, normalisation, model config, precision."""
    meta = {k: model.meta[k] for k in META_KEYS if k in model.meta}
    meta.update(
        format=EXPORT_FORMAT,
        precision=model.precision,
        io_dtype=io_dtype,
        weight_bits=model.weight_bits,
    )
    return meta


def zipped_size(data: bytes, name: str = "model") -> int:
    """Bytes of a .zip archive (deflate) holding `data`: TensorFlow guides' "zipped size"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same bytes
        archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return len(buffer.getvalue())


def _refuse(model: LoadedModel, fmt: str, reason: str, instead: str) -> TinyKWSError:
    return TinyKWSError(f"{model.path}: cannot export to {fmt}: {reason}; {instead}")


def _refuse_asymmetric_weights(model: LoadedModel, fmt: str) -> None:
    """Every format holds symmetric weights only (zero point 0: TFLite's int8 spec, the
    integer graph, the C kernels, and the dynamic-range files' hybrid kernels)."""
    quantized = model.quantized
    if quantized is not None and not quantized.config.symmetric_weights:
        raise _refuse(
            model,
            fmt,
            "its weights are asymmetric (weight_mode asym), and exported weights must be "
            "symmetric (zero point 0, TFLite's int8 spec)",
            "evaluate it in fake quantization (--backend fakequant), or quantize with "
            "--weight-mode sym",
        )


def _io_dtype(model: LoadedModel, fmt: str, options: ExportOptions) -> str:
    if model.precision != "int8":
        if options.io_dtype == "int8":
            raise _refuse(
                model,
                fmt,
                f"a {model.precision} model has float32 inputs and outputs",
                "drop --io int8, or quantize the model (ptq or qat) first",
            )
        return "float32"
    return options.io_dtype or ("float32" if fmt == "onnx" else "int8")


def _tflite_bytes(model: LoadedModel, io_dtype: str, options: ExportOptions, meta) -> bytes:
    if model.precision == "dynamic":
        return dynamic_tflite_bytes(
            model.quantized.module,
            meta,
            widen_narrow_weights=options.widen_narrow_weights,
            tensor_names=options.tensor_names,
        )
    if model.precision == "fakequant":
        raise _refuse(
            model,
            "tflite",
            f"a {model.precision} model keeps float activations, "
            "which TFLite's int8 kernels cannot hold",
            "use --format onnx, or quantize with ptq or qat",
        )
    graph = model.graph if model.precision == "int8" else _float_graph(model, "tflite")
    graph = with_io_dtype(graph, io_dtype)
    return tflite_bytes(
        graph,
        metadata=meta,
        widen_narrow_weights=options.widen_narrow_weights,
        tensor_names=options.tensor_names,
        compact_bias=options.compact_bias,
    )


def _float_graph(model: LoadedModel, fmt: str):
    try:
        return lower_float(model.float_source)
    except TinyKWSError as exc:
        reason = str(exc).replace("cannot be quantized", f"has no {fmt} op")
        raise TinyKWSError(
            f"{model.path}: cannot export to {fmt}: {reason}; use --format onnx"
        ) from None


def _onnx_bytes(model: LoadedModel, io_dtype: str, options: ExportOptions, meta) -> bytes:
    if model.precision == "int8":
        return onnx_export.onnx_graph_bytes(
            model.graph, meta, io_dtype=io_dtype, widen_narrow_weights=options.widen_narrow_weights
        )
    if model.precision == "dynamic":
        return onnx_torch.onnx_dynamic_bytes(model.quantized.module, meta)
    if model.precision == "fakequant":
        raise _refuse(
            model,
            "onnx",
            "this model has no integer graph (activations below 8 bits)",
            "quantize with 8-bit activations",
        )
    return onnx_torch.onnx_float_bytes(model.module, meta)


def _with_io_meta(model: LoadedModel, meta: dict, io_dtype: str) -> dict:
    """Record the int8 boundary's scale and zero point (ONNX inputs do not carry them)."""
    if io_dtype != "int8" or model.graph is None:
        return meta

    graph = with_io_dtype(model.graph, "int8")
    x, y = graph.tensor(graph.inputs[0]), graph.tensor(graph.outputs[0])
    return {
        **meta,
        "io": {"input": [x.scale[0], x.zero_point[0]], "output": [y.scale[0], y.zero_point[0]]},
    }


BUILDERS = {"tflite": _tflite_bytes, "onnx": _onnx_bytes}


def export_model(
    model_path, fmt: str, out, options: ExportOptions | None = None, *, io_dtype: str | None = None
) -> ExportResult:
    """Export the model at `model_path` to `fmt` at `out` (a file; a folder for "c").

    Args:
        model_path: checkpoint, quantized checkpoint, integer graph (.json) or run directory.
        fmt: "tflite", "onnx" or "c".
        out: the file (or folder) to write.
        options: `ExportOptions`; `io_dtype` overrides its io_dtype.

    Raises:
        TinyKWSError: the format cannot hold the model (naming the layer and what to use
            instead), or the model cannot be read. Nothing is written then.
    """
    options = options or ExportOptions()
    if io_dtype is not None:
        options = replace(options, io_dtype=io_dtype)
    check_choice("format", fmt, FORMATS)
    model = load_model(model_path)
    return export_loaded(model, fmt, Path(out), options)


def export_loaded(model: LoadedModel, fmt: str, out: Path, options: ExportOptions) -> ExportResult:
    """`export_model` for a model already loaded."""
    _refuse_asymmetric_weights(model, fmt)
    if fmt == "c":
        return _export_c(model, out, options)
    io_dtype = _io_dtype(model, fmt, options)
    meta = _with_io_meta(model, export_metadata(model, io_dtype), io_dtype)
    try:
        data = BUILDERS[fmt](model, io_dtype, options, {} if options.sidecar else meta)
    except TinyKWSError as exc:
        message = str(exc)
        raise TinyKWSError(
            message if message.startswith(str(model.path)) else f"{out}: {message}"
        ) from None
    if options.sidecar:
        write_json(sidecar_path(out), meta)
    write_bytes(out, data)
    return ExportResult(fmt, out, len(data), zipped_size(data, out.name), model.precision, io_dtype)


def _export_c(model: LoadedModel, out: Path, options: ExportOptions) -> ExportResult:
    """The C sources (a folder), by the "c" exporter (`tinykws.export.c.export_c`)."""
    if model.precision != "int8":
        raise _refuse(
            model,
            "c",
            f"the C kernels are integer-only and this model is {model.precision}",
            "quantize it with ptq or qat first",
        )
    export_c = EXPORTERS["c"]
    meta = model.meta
    path = Path(
        export_c(
            model.graph,
            out,
            frontend_config=meta.get("frontend"),
            normalization=meta.get("normalization"),
            labels=meta.get("labels"),
            sparse=options.sparse,
        )
    )
    files = sorted(p for p in path.rglob("*") if p.is_file())
    data = b"".join(p.read_bytes() for p in files)
    return ExportResult("c", path, len(data), zipped_size(data, path.name), "int8", "int8")
