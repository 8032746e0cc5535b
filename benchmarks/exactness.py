"""How exactly a run's exported int8 files reproduce its integer graph, clip by clip.

For every clip of a split (validation by default), the integer graph of the run's quantize stage
is interpreted (`tinykws.ir.interpret`, with LiteRT's and with TFLite Micro's arithmetic), and
each exported file runs in its runtime: the .tflite in TensorFlow Lite Micro's own interpreter
(the `tflite-micro` package), in LiteRT with its builtin reference kernels (the arithmetic of
TFLite Micro and CMSIS-NN, but for FULLY_CONNECTED's rounding of ties) and with its default
kernels (XNNPACK), the C folder as a host build, the .onnx in ONNX Runtime. Printed per file:
clips whose int8 outputs equal the graph's exactly, the largest difference in output steps, and
top-1 agreement.

With `--trace N`, the .tflite also runs on the first N clips in LiteRT's default kernels with
every op's output exposed, and each op that differs from the graph is printed (share of its
outputs that differ, largest difference in steps): where differences start, and how the network
grows them.

    python benchmarks/exactness.py runs/real10_bcresnet --data ../shared/data/speech_commands_dev
    python benchmarks/exactness.py runs/real10_bcresnet --data ... --trace 100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinykws.checkpoint import load_checkpoint
from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph
from tinykws.ir.interpret import interpret
from tinykws.measure.runtimes import (
    FilePredictor,
    TFLiteRunner,
    load_c_predictor,
    load_onnx_predictor,
    load_tflite_predictor,
)
from tinykws.quant.data import feature_batches
from tinykws.train.evaluate import load_eval_data
from tinykws.train.model_file import normalization


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory with quantize/ and export/")
    parser.add_argument("--data", required=True, help="the dataset folder of the run")
    parser.add_argument("--split", default="validation", help="split to run (default validation)")
    parser.add_argument(
        "--trace", type=int, default=0, metavar="N", help="compare every op's output on N clips"
    )
    return parser.parse_args()


def graph_logits(graph: Graph, meta: dict, features: np.ndarray, runtime: str) -> np.ndarray:
    """The integer graph's dequantized logits of every clip."""
    out = [
        interpret(graph, batch.numpy().transpose(0, 2, 3, 1), runtime=runtime)["logits"]
        for batch in feature_batches(features, normalization(meta), 256)
    ]
    return np.concatenate(out)


def file_runs(run: Path, meta: dict) -> dict:
    """name -> (predictor, the graph runtime whose arithmetic it should reproduce)."""
    export = run / "export"
    runs = {}
    tflite = export / "model.tflite"
    if tflite.is_file():
        runs["tflite, TFLite Micro"] = (load_tflite_predictor(tflite, "tflm"), "tflm")
        runs["tflite, LiteRT reference kernels"] = (
            load_tflite_predictor(tflite, "reference"),
            "litert",
        )
        builtin = TFLiteRunner(tflite, "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
        runs["tflite, LiteRT builtin optimised kernels"] = (
            FilePredictor(builtin, meta, "NHWC", batch_size=64),
            "litert",
        )
        runs["tflite, LiteRT default (XNNPACK)"] = (load_tflite_predictor(tflite), "litert")
    if (export / "c" / "model.h").is_file():
        runs["C host build"] = (load_c_predictor(export / "c", meta), "tflm")
    if (export / "model.onnx").is_file():
        runs["ONNX Runtime QDQ"] = (load_onnx_predictor(export / "model.onnx"), "tflm")
    return runs


def main() -> None:
    args = parse_args()
    graph_path = args.run / "quantize" / "model.json"
    if not graph_path.is_file():
        raise SystemExit(f"error: {graph_path}: no integer graph (run the quantize stage first)")
    graph = Graph.load(graph_path)
    step = graph.tensor(graph.producer(graph.outputs[0]).inputs[0]).scale[0]
    meta = load_checkpoint(graph_path.with_suffix(".safetensors"))[1]
    runs = file_runs(args.run, meta)
    if not runs:
        raise SystemExit(f"error: {args.run / 'export'}: no exported files")
    try:
        features = load_eval_data(meta, args.data, args.split).features
    except TinyKWSError as exc:
        raise SystemExit(f"error: {exc}") from None
    reference = {rt: graph_logits(graph, meta, features, rt) for rt in ("litert", "tflm")}
    print(f"{args.run}: {len(features)} {args.split} clips, integer graph {graph_path}")
    print(f"{'file':42s} {'exact clips':>12s} {'max steps':>10s} {'top-1 agrees':>13s}")
    for name, (predictor, runtime) in runs.items():
        ours, theirs = reference[runtime], predictor.logits(features)
        steps = np.abs(np.round((theirs - ours) / step))
        exact = int(np.all(steps == 0, axis=1).sum())
        agree = float(np.mean(theirs.argmax(1) == ours.argmax(1)))
        print(f"{name:42s} {exact:7d}/{len(ours):<4d} {int(steps.max()):10d} {100 * agree:12.2f}%")
    if args.trace:
        trace_ops(graph, meta, features[: args.trace])


def trace_ops(graph: Graph, meta: dict, features: np.ndarray, resolver: str = "AUTO") -> None:
    """Print each op whose int8 output in LiteRT's `resolver` kernels differs from the graph's."""
    import copy

    from ai_edge_litert import interpreter as litert

    from tinykws.export.tflite import tflite_bytes
    from tinykws.ir.kernels import quantize_f32_s8
    from tinykws.ir.transform import with_io_dtype

    graph = with_io_dtype(graph, "int8")
    exposed = copy.copy(graph)
    exposed.outputs = [op.outputs[0] for op in graph.ops]
    batch = next(iter(feature_batches(features, normalization(meta), len(features))))
    source = graph.tensor(graph.inputs[0])
    x = quantize_f32_s8(batch.numpy().transpose(0, 2, 3, 1), source.scale[0], source.zero_point[0])
    ours = interpret(graph, x, return_all=True, runtime="litert")
    it = litert.Interpreter(
        model_content=tflite_bytes(exposed),
        experimental_op_resolver_type=getattr(litert.OpResolverType, resolver),
    )
    it.allocate_tensors()
    theirs = {name: [] for name in exposed.outputs}
    for clip in x:
        it.set_tensor(it.get_input_details()[0]["index"], clip[None])
        it.invoke()
        for name, detail in zip(exposed.outputs, it.get_output_details()):
            theirs[name].append(it.get_tensor(detail["index"]).copy())
    print(f"\nops whose outputs differ in LiteRT's {resolver} kernels, {len(x)} clips:")
    for index, op in enumerate(graph.ops):
        name = op.outputs[0]
        steps = np.abs(np.concatenate(theirs[name]).astype(int) - ours[name].astype(int))
        if steps.any():
            print(
                f"{index:4d} {op.type:18s} {name:44s} {100 * np.mean(steps > 0):6.2f}% "
                f"max {int(steps.max())}"
            )


if __name__ == "__main__":
    main()
