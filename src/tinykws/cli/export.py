"""Verbs: export (tflite, onnx, c), metrics (size, RAM, MACs, latency), check (constraints)."""

from __future__ import annotations

from argparse import SUPPRESS

from tinykws.cli._common import add_verb
from tinykws.io import write_json
from tinykws.measure.metrics_report import print_metrics


def register(subparsers) -> None:
    _add_export(subparsers)
    _add_metrics(subparsers)
    _add_check(subparsers)


def _add_export(subparsers) -> None:
    p = add_verb(
        subparsers,
        "export",
        "write a model as .tflite, .onnx or C sources",
        export_verb,
        EXPORT_HELP,
    )
    p.add_argument("model", help="checkpoint, quantized model, integer graph or run directory")
    p.add_argument("--format", required=True, choices=["tflite", "onnx", "c"])
    p.add_argument("--out", required=True, help="file to write (a folder for --format c)")
    p.add_argument(
        "--io",
        choices=["int8", "float32"],
        help="input/output dtype of an int8 model (default: tflite and c int8, onnx float32)",
    )
    p.add_argument(
        "--widen",
        action="store_true",
        help="store 2..7-bit weights as int8 (tflite, onnx) instead of refusing",
    )
    p.add_argument(
        "--sidecar",
        action="store_true",
        help="write labels and front end to OUT.json instead of into the file",
    )
    p.add_argument(
        "--tensor-names",
        choices=["io", "all"],
        default="io",
        help="tflite: name only inputs and outputs (smallest) or every tensor",
    )
    p.add_argument(
        "--sparse",
        choices=["auto", "off"],
        default="auto",
        help="c: store a layer's weights as a bitmask and its non-zero values where that takes "
        "less flash (auto), or always dense (off). Sparse layers are smaller but slower: the "
        "kernels walk the mask (TinyConv at 50 %% magnitude sparsity: 87 ms against 47 ms on "
        "the emulated Cortex-M4 at 80 MHz)",
    )
    bias = p.add_mutually_exclusive_group()
    bias.add_argument(
        "--compact-bias",
        action="store_true",
        help="tflite: leave the quantization parameters out of the int32 biases of per-channel "
        "ops, for targets that never use a delegate (TFLite Micro): 8 bytes less per channel "
        "(DS-CNN-S: 30,128 instead of 32,688 B), but LiteRT's XNNPACK delegate then declines "
        "every convolution (DS-CNN-S: 3.3x slower in LiteRT on x86-64)",
    )
    # The old opt-in flag for what is now the default: still accepted, does nothing.
    bias.add_argument("--bias-scales", action="store_false", dest="compact_bias", help=SUPPRESS)


def _add_metrics(subparsers) -> None:
    p = add_verb(
        subparsers,
        "metrics",
        "per-layer and total size, RAM, MACs, FLOPs, latency",
        metrics_verb,
        METRICS_HELP,
    )
    p.add_argument("model", help="checkpoint, quantized model, integer graph or run directory")
    p.add_argument("--json", dest="json_out", help="write the figures as JSON here")
    p.add_argument("--no-latency", action="store_true", help="skip the timing runs")
    p.add_argument("--runs", type=int, default=200, help="timed runs per figure (median)")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime")
    p.add_argument(
        "--c-dir",
        help="C export folder whose sizes.json gives the code size and mcu.json the "
        "emulated Cortex-M4 instruction counts",
    )
    p.add_argument(
        "--mcu",
        action="store_true",
        help="count instructions on an emulated Cortex-M4 (qemu-system-arm) when --c-dir has "
        "no mcu.json (on --c-dir, else on a temporary C export)",
    )


def _add_check(subparsers) -> None:
    p = add_verb(
        subparsers,
        "check",
        "check a run against flash, RAM, latency and accuracy limits",
        check_verb,
        CHECK_HELP,
    )
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--min-accuracy", help="e.g. 0.97 or 97%%")
    p.add_argument("--max-flash", help="e.g. 25KB (1000 B), 24KiB")
    p.add_argument("--max-ram", help="e.g. 64KB")
    p.add_argument(
        "--max-latency",
        help="e.g. 8ms: front end + network on the microcontroller (emulated Cortex-M4 "
        "instructions / --mcu-clock)",
    )
    p.add_argument("--mcu-clock", default="80MHz", help="microcontroller clock for --max-latency")
    p.add_argument(
        "--max-pc-latency",
        help="e.g. 8ms: front end + network at batch 1 in the exported file's runtime on this PC",
    )
    p.add_argument(
        "--zipped", action="store_true", help="compare the zipped exported file with --max-flash"
    )
    p.add_argument(
        "--format",
        choices=["tflite", "onnx", "c"],
        help="which exported file (default: the first exported)",
    )
    p.add_argument("--split", default="validation", help="split whose accuracy counts")


EXPORT_HELP = """\
Write a model for deployment. Float checkpoints give float files; quantized models (ptq, qat)
give int8 files that match the integer graph; a dynamic-range model exports to TFLite and ONNX
with int8 weights and float activations. Formats that cannot hold a model (e.g. 4-bit weights
in TFLite) are refused with the layer named, and nothing is written. The labels, front end and
normalisation travel in the file, so `tinykws evaluate FILE --data DIR` works.

examples:
  tinykws export runs/real10 --format tflite --out kws.tflite
  tinykws export runs/real10 --format tflite --out kws_mcu.tflite --compact-bias
  tinykws export runs/real10 --format onnx --out kws.onnx --io float32
  tinykws export runs/real10 --format c --out kws_c/
"""

METRICS_HELP = """\
Per layer and in total: parameters, parameter memory at the layer's bit width, MACs, FLOPs,
flash (weights + biases + quantization parameters), peak RAM (planned activation arena),
batch-1 latency in PyTorch, LiteRT and ONNX Runtime (median of --runs), Cortex-M estimates
(MACs x cycles per MAC) and, with --c-dir or --mcu, the instructions per inference (per op)
measured on an emulated Cortex-M4.

examples:
  tinykws metrics runs/real10 --json metrics.json
  tinykws metrics runs/real10 --c-dir runs/real10/export/c
  tinykws metrics runs/real10 --mcu --no-latency
"""

CHECK_HELP = """\
Check a run against deployment limits; prints a pass/fail table and exits with status 1 when
any limit is missed.

example:
  tinykws check runs/gostop --min-accuracy 0.97 --max-flash 25KB --zipped --max-pc-latency 8ms
  tinykws check runs/real10 --max-latency 1s --mcu-clock 80MHz
"""


def export_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.run.exporting import ExportOptions, export_model

    options = ExportOptions(
        io_dtype=args.io,
        widen_narrow_weights=args.widen,
        sidecar=args.sidecar,
        tensor_names=args.tensor_names,
        compact_bias=args.compact_bias,
        sparse=args.sparse,
    )
    result = export_model(args.model, args.format, args.out, options)
    print(
        f"written: {result.path} ({result.bytes:,} bytes, {result.zipped_bytes:,} zipped; "
        f"{result.precision}, {result.io_dtype} inputs and outputs)"
    )
    return 0


def metrics_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.latency import LatencyConfig
    from tinykws.measure.metrics import model_metrics

    latency = None if args.no_latency else LatencyConfig(runs=args.runs, threads=args.threads)
    result = model_metrics(args.model, latency, args.c_dir, mcu=args.mcu)
    print_metrics(result)
    if args.json_out:
        write_json(args.json_out, result)
    return 0


def check_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.check import CheckConfig, check_run, failure, print_rows

    config = CheckConfig(
        min_accuracy=args.min_accuracy,
        max_flash=args.max_flash,
        max_ram=args.max_ram,
        max_latency=args.max_latency,
        max_pc_latency=args.max_pc_latency,
        mcu_clock=args.mcu_clock,
        zipped=args.zipped,
        format=args.format or "",
        split=args.split,
    )
    rows = check_run(args.run_dir, config)
    print_rows(rows)
    problem = failure(rows)
    if problem is not None:
        raise problem
    return 0
