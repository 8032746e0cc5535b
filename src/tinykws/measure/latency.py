"""Batch-1 latency of a model in every runtime it can be deployed with, and of its front end.

Each measurement calls the model on one clip's features `warmup` times, then `runs` times,
and reports the median wall time (`time.perf_counter_ns`) in milliseconds. Runtimes:

- PyTorch eager, float32, CPU (and CUDA when available, synchronised after each call);
- LiteRT (default kernels, XNNPACK included): the float .tflite and the int8 .tflite;
- ONNX Runtime (CPU): the float .onnx and the int8 QDQ .onnx (or int8-weight .onnx of a
  dynamic-range model).

Files are built in memory from the model, exactly as `tinykws export` writes them (int8 models
with int8 inputs and outputs). The front end is timed on one 1 s clip with its numpy
implementation; total = front end + network. All runtimes use `threads` threads (default 1,
the microcontroller-like setting, and fair on a shared machine).

These are figures of this PC, not of a microcontroller: a network taking 0.6 ms here can take
hundreds of milliseconds on an 80 MHz Cortex-M4. The microcontroller's figure is the
instruction count of the exported C on an emulated Cortex-M4 (`tinykws.export.c.mcu`), which
`tinykws metrics` shows and `tinykws check --max-latency` judges (`--max-pc-latency` judges
these).

Example:
    >>> round(median_ms(lambda x: x, 0, runs=5, warmup=1), 1)
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinykws.config import check_range
from tinykws.errors import TinyKWSError
from tinykws.export import onnx as onnx_export
from tinykws.export import onnx_torch
from tinykws.export.float_graph import lower_float
from tinykws.export.tflite import tflite_bytes
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.runtimes import ONNXRunner, TFLiteRunner
from tinykws.timing import median_ms
from tinykws.train.model_file import frontend


@dataclass(frozen=True)
class LatencyConfig:
    """How to time.

    Attributes:
        runs: timed calls per measurement (the median is reported); at least 200 by default.
        warmup: untimed calls first.
        threads: threads for PyTorch, LiteRT and ONNX Runtime.
        cuda: also time PyTorch on CUDA when a GPU is available.
        frontend: time the front end on one clip.
    """

    runs: int = 200
    warmup: int = 20
    threads: int = 1
    cuda: bool = True
    frontend: bool = True

    def __post_init__(self) -> None:
        check_range("latency.runs", self.runs, 1, 1_000_000)
        check_range("latency.warmup", self.warmup, 0, 1_000_000)
        check_range("latency.threads", self.threads, 1, 1024)


def frontend_ms(meta: dict, config: LatencyConfig) -> float:
    """Median ms of the numpy front end on one clip (seeded noise of the clip's length)."""

    fe = frontend(meta)
    clip = (np.random.default_rng(0).normal(size=fe.config.clip_samples) * 0.1).astype(np.float32)
    return median_ms(fe.numpy, clip, runs=config.runs, warmup=min(config.warmup, 5))


def _torch_rows(module, input_shape, config: LatencyConfig) -> list[dict]:
    import torch

    rows = []
    devices = ["cpu"] + (["cuda"] if config.cuda and torch.cuda.is_available() else [])
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        for device in devices:
            net = module.to(device).eval()
            x = torch.zeros(1, 1, *input_shape, device=device)
            sync = torch.cuda.synchronize if device == "cuda" else None
            with torch.inference_mode():
                ms = median_ms(net, x, runs=config.runs, warmup=config.warmup, sync=sync)
            rows.append(_row("pytorch", device, "float32", ms))
        module.to("cpu")
    finally:
        torch.set_num_threads(threads)
    return rows


def _row(runtime: str, device: str, precision: str, network_ms: float) -> dict:
    return {"runtime": runtime, "device": device, "precision": precision, "network_ms": network_ms}


def _litert_row(data: bytes, precision: str, config: LatencyConfig) -> dict:
    runner = TFLiteRunner(data, threads=config.threads)
    x = np.zeros(runner.input_shape, runner.input["dtype"])
    ms = median_ms(runner.invoke, x, runs=config.runs, warmup=config.warmup)
    return _row("litert", "cpu", precision, ms)


def _onnx_row(
    data: bytes, precision: str, input_shape, config: LatencyConfig, dtype=np.float32
) -> dict:

    runner = ONNXRunner(data, threads=config.threads)
    x = np.zeros((1, 1, *input_shape), dtype)
    ms = median_ms(runner.invoke, x, runs=config.runs, warmup=config.warmup)
    return _row("onnxruntime", "cpu", precision, ms)


def _artefacts(model) -> list[tuple[str, str, Any]]:
    """(runtime, precision, builder() -> bytes) for every file the model can be exported to."""

    jobs = []
    if model.module is not None:
        jobs.append(
            (
                "litert",
                "float32",
                lambda: tflite_bytes(lower_float(model.float_source), metadata={}),
            )
        )
        jobs.append(("onnxruntime", "float32", lambda: onnx_torch.onnx_float_bytes(model.module)))
    if model.graph is not None:
        graph = with_io_dtype(model.graph, "int8")
        jobs.append(
            ("litert", "int8", lambda: tflite_bytes(graph, metadata={}, widen_narrow_weights=True))
        )
        jobs.append(
            (
                "onnxruntime",
                "int8",
                lambda: onnx_export.onnx_graph_bytes(graph, {}, widen_narrow_weights=True),
            )
        )
    if model.precision == "dynamic":
        jobs.append(
            (
                "onnxruntime",
                "dynamic",
                lambda: onnx_torch.onnx_dynamic_bytes(model.quantized.module),
            )
        )
    return jobs


def measure_latency(model, input_shape, config: LatencyConfig | None = None) -> dict:
    """Latency rows of a `tinykws.run.exporting.LoadedModel` (see the module docstring).

    Returns:
        {"runs", "threads", "frontend_ms" (or None), "rows": [{"runtime", "device",
        "precision", "network_ms", "total_ms"}], "skipped": {"runtime precision": reason}}.
    """

    config = config or LatencyConfig()
    rows, skipped = [], {}
    if model.module is not None:
        rows += _torch_rows(model.module, input_shape, config)
    for runtime, precision, build in _artefacts(model):
        try:
            data = build()
        except TinyKWSError as exc:  # e.g. a layer TFLite has no op for
            skipped[f"{runtime} {precision}"] = str(exc)
            continue
        if runtime == "litert":
            rows.append(_litert_row(data, precision, config))
        else:
            int8_io = precision == "int8"
            rows.append(
                _onnx_row(data, precision, input_shape, config, np.int8 if int8_io else np.float32)
            )
    front = (
        frontend_ms(model.meta, config) if config.frontend and "frontend" in model.meta else None
    )
    for row in rows:
        row["total_ms"] = row["network_ms"] + (front or 0.0)
    return {
        "runs": config.runs,
        "threads": config.threads,
        "frontend_ms": front,
        "rows": rows,
        "skipped": skipped,
    }
