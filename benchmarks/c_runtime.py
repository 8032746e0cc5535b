"""Host batch-1 latency of the generated C network (gcc -O3) against LiteRT int8, same graph.

One int8 graph (a randomly initialised, calibrated model of a preset; DS-CNN-S by default) is
exported twice: as C (`tinykws.export.c`, compiled with `gcc -std=c99 -O3` into a shared
library called through ctypes) and as .tflite (`tinykws.export.tflite`, int8 in and out) run by
LiteRT with one thread, with its default kernels (XNNPACK / optimised), its builtin int8
kernels without the XNNPACK delegate, and its builtin reference kernels; the ratio of the C
build to LiteRT's builtin int8 kernels is printed last (target: at most 2). Rounds interleave
the runtimes, so the ratios hold on a shared machine;
each figure is the median per-invoke time over all rounds (a Python call into each runtime is
included in every figure). Then an instrumented copy of the C build times every kernel call,
to show where the time goes (MACs, microseconds, share, MACs per ns). The outputs of the C
build and of LiteRT are compared on random inputs.

    python benchmarks/c_runtime.py --model dscnn_s --rounds 20 --runs 50
"""

from __future__ import annotations

import argparse
import ctypes
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinykws.export.c import export_c
from tinykws.export.c.build import HOST_FLAGS, CModel, build_shared_library
from tinykws.export.tflite import export_tflite
from tinykws.features.frontend import FrontEnd, Normalization
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.metrics import op_macs
from tinykws.measure.runtimes import TFLiteRunner
from tinykws.models import MODEL_PRESETS, build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

BUILTIN = "LiteRT int8 (builtin kernels)"  # no XNNPACK delegate: the kernels the C competes with
PROFILE_PRELUDE = """#include <time.h>
static long long tk_total_ns[{n}];
static long long tk_last_ns;
long long *tinykws_profile_ns(void);
long long *tinykws_profile_ns(void) {{ return tk_total_ns; }}
static void tk_mark(int index)
{{
    struct timespec now;
    long long ns;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    if (index > 0) tk_total_ns[index - 1] += ns - tk_last_ns;
    tk_last_ns = ns;
}}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dscnn_s", help="model preset (default dscnn_s)")
    parser.add_argument("--weight-bits", type=int, default=8, help="weight bits of the C build")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=50, help="invokes per runtime per round")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--march-native", action="store_true", help="also gcc -march=native")
    return parser.parse_args()


def make_graph(preset: str, n_classes: int, weight_bits: int):
    """A calibrated int8 graph of a randomly initialised model of `preset`."""
    torch.manual_seed(0)
    shape = FrontEnd(MODEL_PRESETS[preset].frontend).output_shape
    model = build_model(model_config(preset, n_classes, shape)).eval()
    features = np.random.default_rng(0).normal(size=(32, *shape)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * shape[1], std=(1.0,) * shape[1])
    quantized = quantize(model, QuantConfig(weight_bits=weight_bits), QuantData(features, norm))
    return lower(quantized, preset)


def per_invoke_us(function, x: np.ndarray, runs: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(runs):
        function(x)
    return (time.perf_counter_ns() - start) / runs / 1e3


def c_invoker(model: CModel, x: np.ndarray):
    """A closure calling tinykws_invoke directly (pointers converted once)."""
    out = np.zeros(model.output_size, np.int8)
    args = (x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
    invoke = model.lib.tinykws_invoke
    return lambda _: invoke(*args)


def time_runtimes(runners: dict, x: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    """Median per-invoke microseconds of each runner over interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        per_invoke_us(run, x, max(5, runs // 5))
    for _ in range(rounds):
        for name, run in runners.items():
            samples[name].append(per_invoke_us(run, x, runs))
    return {name: float(np.median(v)) for name, v in samples.items()}


def profiled_library(folder: Path, work: Path) -> tuple[ctypes.CDLL, list[str]]:
    """A copy of the C build with a clock read before every kernel call; (library, labels)."""
    source = (folder / "model.c").read_text()
    calls = re.findall(r"^    (tk_\w+)\(.*?\);(?: /\* (.*?) \*/)?$", source, flags=re.M)
    labels = [
        comment or ("copy in" if i == 0 else "copy out") for i, (_, comment) in enumerate(calls)
    ]
    lines, index = [], 0
    for line in source.splitlines():
        if re.match(r"^    tk_\w+\(", line):
            lines.append(f"    tk_mark({index});")
            index += 1
        if line.strip() == "return 0;" and index == len(calls):
            lines.append(f"    tk_mark({index});")
        lines.append(line)
    prelude = PROFILE_PRELUDE.format(n=len(calls))
    (work / "model.c").write_text(prelude + "\n".join(lines) + "\n")
    names = ("model.h", "kernels.h", "kernels_internal.h", "tk_config.h", "kernels.c")
    for name in (*names, "kernels_conv.c", "kernels_depthwise.c"):
        shutil.copy(folder / name, work / name)
    library = work / "libprofiled.so"
    subprocess.run(
        [
            "gcc",
            *HOST_FLAGS,
            "-O3",
            "-D_POSIX_C_SOURCE=199309L",
            "-fPIC",
            "-shared",
            "-o",
            str(library),
            "model.c",
            "kernels.c",
            "kernels_conv.c",
            "kernels_depthwise.c",
        ],
        cwd=work,
        check=True,
    )
    return ctypes.CDLL(str(library)), labels


def where_time_goes(folder: Path, graph, x: np.ndarray, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lib, labels = profiled_library(folder, Path(tmp))
        lib.tinykws_profile_ns.restype = ctypes.POINTER(ctypes.c_longlong)
        out = np.zeros(256, np.int8)
        for _ in range(runs):
            lib.tinykws_invoke(
                x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p)
            )
        totals = np.ctypeslib.as_array(lib.tinykws_profile_ns(), shape=(len(labels),)) / runs
    by_label = {
        f"{op.type} '{op.name}'" if op.name else op.type: op_macs(graph, op) for op in graph.ops
    }
    macs = [by_label.get(label, 0) for label in labels]
    print(f"\nwhere the C time goes (instrumented -O3 build, {runs} invokes):")
    print(f"  {'op':<44} {'MACs':>9} {'us':>8} {'share':>6} {'MAC/ns':>7}")
    for label, ns, mac in zip(labels, totals, macs):
        rate = f"{mac / ns:7.2f}" if mac and ns else "       "
        print(f"  {label[:44]:<44} {mac:>9,} {ns / 1e3:8.1f} {ns / totals.sum():6.1%} {rate}")


def compare_outputs(c_model: CModel, litert: TFLiteRunner, shape, n: int = 200) -> str:
    x = np.random.default_rng(1).integers(-128, 128, (n, *shape[1:])).astype(np.int8)
    ours = c_model.invoke(x)
    theirs = np.concatenate([litert.invoke(x[i : i + 1]) for i in range(n)]).reshape(n, -1)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    top1 = np.mean(ours.argmax(1) == theirs.argmax(1))
    return (
        f"C vs LiteRT default kernels: max |diff| {diff.max()} LSB, "
        f"{np.mean(diff == 0):.2%} of outputs equal, top-1 {top1:.1%}"
    )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    graph = make_graph(args.model, args.classes, args.weight_bits)
    int8 = with_io_dtype(graph, "int8")
    shape = int8.tensor(int8.inputs[0]).shape
    x = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_c(graph, Path(tmp) / "c", cortex_m4="off")
        builds = {
            "C gcc -O3": build_shared_library(
                folder, Path(tmp) / "o3.so", optimization="-O3", frontend=False
            )
        }
        if args.march_native:
            builds["C gcc -O3 -march=native"] = build_shared_library(
                folder, Path(tmp) / "native.so", optimization="-O3 -march=native", frontend=False
            )
        tflite = export_tflite(
            graph, Path(tmp) / "model.tflite", io_dtype="int8", widen_narrow_weights=True
        )
        models = {name: CModel(path) for name, path in builds.items()}
        runners = {name: c_invoker(m, x) for name, m in models.items()}
        litert = TFLiteRunner(tflite, "AUTO", threads=1)
        runners["LiteRT int8 (default kernels)"] = litert.invoke
        builtin = TFLiteRunner(tflite, "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
        runners[BUILTIN] = builtin.invoke
        runners["LiteRT int8 (reference kernels)"] = TFLiteRunner(tflite, "BUILTIN_REF").invoke
        report(args, graph, time_runtimes(runners, x, args.rounds, args.runs))
        print(compare_outputs(models["C gcc -O3"], litert, shape))
        where_time_goes(folder, int8, x, args.runs * 4)


def report(args, graph, medians: dict[str, float]) -> None:
    macs = sum(op_macs(graph, op) for op in graph.ops)
    c_us = medians["C gcc -O3"]
    print(f"{args.model}: {macs:,} MACs, {args.weight_bits}-bit weights, batch 1, one thread")
    print(f"  {'runtime':<34} {'us/invoke':>10} {'vs C -O3':>9}")
    for name, us in medians.items():
        print(f"  {name:<34} {us:10.1f} {us / c_us:8.2f}x")
    ratio = c_us / medians[BUILTIN]
    print(f"C gcc -O3 / {BUILTIN}: {ratio:.2f}x (target: at most 2)")


if __name__ == "__main__":
    main()
