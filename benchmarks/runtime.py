"""Batch-1 latency of DS-CNN-S: our int8 .tflite in LiteRT vs PyTorch eager and ONNX Runtime.

Builds DS-CNN-S (12 classes, 49x10 MFCC input), quantizes it (PTQ on seeded random features;
latency does not depend on the weights' values), writes the files exactly as `tinykws export`
does, and times one clip at a time in each runtime: the median of `--runs` calls per round,
over `--rounds` rounds that interleave the runtimes (so machine load hits them alike). Printed:
the median and best per runtime, and the ratios of the medians to LiteRT int8, which hold on a
shared machine where absolute times move with load. Also printed: the .tflite size and payload,
also with the weight schemes per_tensor and per_channel_depthwise (one scale per tensor outside
the depthwise convs).

"default" is LiteRT's default op resolver (builtin optimised kernels plus the XNNPACK
delegate). Our int8 files give their int32 biases their quantization parameters, which XNNPACK
requires of a quantized bias: every op of DS-CNN-S then runs in one XNNPACK partition. "LiteRT
int8 (compact bias)" is the same network exported with `--compact-bias` (biases of per-channel
ops without them, 8 bytes less per channel), whose convolutions XNNPACK declines, so LiteRT runs
them in its builtin kernels. Printed after the table: the latency of both int8 files as a
ratio to LiteRT float32 on the same network (target for the default file: <= 1.2x; TensorFlow's
converter's int8 file of DS-CNN-S runs at 1.17x on this machine), and both file sizes.

    python benchmarks/runtime.py --runs 300 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tinykws.export.float_graph import lower_float
from tinykws.export.onnx import onnx_graph_bytes
from tinykws.export.onnx_torch import onnx_float_bytes
from tinykws.export.tflite import tflite_bytes
from tinykws.features.frontend import Normalization
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.latency import median_ms
from tinykws.measure.runtimes import ONNXRunner, TFLiteRunner
from tinykws.models import build_model, model_config
from tinykws.quant import WEIGHT_SCHEMES, QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="timed calls per round (median)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="threads of every runtime")
    parser.add_argument("--model", default="dscnn_s", help="model preset (default dscnn_s)")
    return parser.parse_args()


def build(preset: str, weight_scheme: str = "per_channel"):
    """(float model, int8 graph with int8 io, input shape) of `preset` at 12 classes."""
    from tinykws.features.frontend import FrontEnd, frontend_config
    from tinykws.models import MODEL_PRESETS

    shape = FrontEnd(frontend_config(MODEL_PRESETS[preset].frontend)).output_shape
    torch.manual_seed(0)
    model = build_model(model_config(preset, 12, shape)).eval()
    features = np.random.default_rng(0).normal(size=(64, *shape)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * shape[1], std=(1.0,) * shape[1])
    config = QuantConfig(weight_scheme=weight_scheme)
    quantized = quantize(model, config, QuantData(features, norm))
    return model, with_io_dtype(lower(quantized), "int8"), shape


def runtimes(model, graph, shape, threads: int) -> dict:
    """name -> (callable, one input) for every runtime timed."""
    torch.set_num_threads(threads)
    int8_file = tflite_bytes(graph, metadata={})
    litert_int8 = TFLiteRunner(int8_file, threads=threads)
    compact_file = tflite_bytes(graph, metadata={}, compact_bias=True)
    litert_compact = TFLiteRunner(compact_file, threads=threads)
    litert_float = TFLiteRunner(tflite_bytes(lower_float(model), metadata={}), threads=threads)
    onnx_float = ONNXRunner(onnx_float_bytes(model), threads=threads)
    onnx_int8 = ONNXRunner(onnx_graph_bytes(graph, {}), threads=threads)

    def eager(x):
        with torch.inference_mode():
            return model(x)

    x = np.zeros((1, 1, *shape), np.float32)
    return {
        "LiteRT int8 (default)": (litert_int8.invoke, np.zeros(litert_int8.input_shape, np.int8)),
        "LiteRT int8 (compact bias)": (
            litert_compact.invoke,
            np.zeros(litert_compact.input_shape, np.int8),
        ),
        "LiteRT float32 (default)": (
            litert_float.invoke,
            np.zeros(litert_float.input_shape, np.float32),
        ),
        "ONNX Runtime float32": (onnx_float.invoke, x),
        "ONNX Runtime int8 QDQ": (onnx_int8.invoke, np.zeros((1, 1, *shape), np.int8)),
        "PyTorch eager float32": (eager, torch.from_numpy(x)),
    }, (len(int8_file), len(compact_file))


def main() -> None:
    args = parse_args()
    model, graph, shape = build(args.model)
    timed, (file_bytes, compact_bytes) = runtimes(model, graph, shape, args.threads)
    payload = sum(t.data.nbytes for t in graph.tensors.values() if t.is_constant)
    print(
        f"{args.model}: int8 .tflite {file_bytes:,} bytes ({file_bytes / 1024:.1f} KiB), "
        f"weights + biases {payload:,} bytes ({file_bytes / payload:.2f} x); "
        f"with compact biases {compact_bytes:,} bytes ({compact_bytes / payload:.2f} x)"
    )
    for scheme in WEIGHT_SCHEMES[1:]:
        other = len(tflite_bytes(build(args.model, scheme)[1], metadata={}))
        print(f"  weight scheme {scheme}: {other:,} bytes ({other / payload:.2f} x)")
    results: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(args.rounds):
        for name, (function, x) in timed.items():
            results[name].append(median_ms(function, x, runs=args.runs, warmup=20))
    base = float(np.median(results["LiteRT int8 (default)"]))
    print(f"batch 1, {args.threads} thread(s), median of {args.runs} runs x {args.rounds} rounds")
    print(f"{'runtime':28s} {'median us':>10s} {'best us':>9s} {'vs LiteRT int8':>15s}")
    for name, values in results.items():
        median = float(np.median(values))
        print(f"{name:28s} {1000 * median:10.1f} {1000 * min(values):9.1f} {median / base:14.2f}x")
    print_float_ratios(results, file_bytes, compact_bytes)


def print_float_ratios(results: dict, file_bytes: int, compact_bytes: int) -> None:
    """LiteRT int8 latency over LiteRT float32 latency (same network, same rounds)."""
    float_median = float(np.median(results["LiteRT float32 (default)"]))
    for name, size in (("default", file_bytes), ("compact bias", compact_bytes)):
        ratio = float(np.median(results[f"LiteRT int8 ({name})"])) / float_median
        print(f"LiteRT int8 ({name}) / LiteRT float32: {ratio:.2f}x, file {size:,} bytes")


if __name__ == "__main__":
    main()
