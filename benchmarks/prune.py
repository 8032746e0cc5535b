"""Batch-1 latency of an original and a pruned model, in PyTorch and ONNX Runtime (float32).

Both models run in the same process, interleaved, one thread each, and the script prints the
median latency of each and the ratio original / pruned: channel pruning should make the model
faster, not only smaller. Absolute numbers depend on the (possibly shared) machine; the ratios
are what to compare.

    python benchmarks/prune.py                          # DS-CNN-S vs its 50 % L1-pruned copy
    python benchmarks/prune.py --run runs/real10        # train/best vs prune/pruned of a run
    python benchmarks/prune.py --original a.safetensors --pruned b.safetensors
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from tinykws.models import build_model, count_macs, count_params, model_config


def load(path: Path) -> torch.nn.Module:
    from tinykws.measure.predictors import load_torch

    return load_torch(path).module.eval()


def demo_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    from tinykws.prune import PruneConfig, prune

    torch.manual_seed(0)
    original = build_model(model_config("dscnn_s", 12, (49, 10))).eval()
    pruned, _ = prune(original, PruneConfig(method="l1", amount=0.5, retrain_enabled=False))
    return original, pruned.eval()


def onnx_session(model: torch.nn.Module, folder: str):
    import onnxruntime as ort

    path = Path(folder) / f"{id(model)}.onnx"
    inputs = torch.zeros(1, 1, *model.config.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter needs no onnxscript.
        torch.onnx.export(
            model,
            (inputs,),
            str(path),
            dynamo=False,
            input_names=["features"],
            output_names=["logits"],
            opset_version=17,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_interleaved(runners: dict, runs: int) -> dict[str, float]:
    """Median ms per call of each runner, calls interleaved so load changes hit all alike."""
    times = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(10):
            run()
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="run directory with train/ and prune/ stages")
    parser.add_argument("--original", type=Path)
    parser.add_argument("--pruned", type=Path)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.run:
        original = load(args.run / "train" / "best.safetensors")
        pruned = load(args.run / "prune" / "pruned.safetensors")
    elif args.original and args.pruned:
        original, pruned = load(args.original), load(args.pruned)
    else:
        original, pruned = demo_pair()
    x = torch.randn(1, 1, *original.config.input_shape)
    with tempfile.TemporaryDirectory() as folder:
        sessions = {
            "original": onnx_session(original, folder),
            "pruned": onnx_session(pruned, folder),
        }
        feed = {"features": x.numpy()}
        with torch.inference_mode():
            for name, model in (("original", original), ("pruned", pruned)):
                diff = np.abs(sessions[name].run(None, feed)[0] - model(x).numpy()).max()
                assert diff < 1e-4, f"ONNX Runtime disagrees with PyTorch on {name}: {diff}"
            runners = {
                "torch original": lambda: original(x),
                "torch pruned": lambda: pruned(x),
                "onnxruntime original": lambda: sessions["original"].run(None, feed),
                "onnxruntime pruned": lambda: sessions["pruned"].run(None, feed),
            }
            ms = time_interleaved(runners, args.runs)
    report(original, pruned, ms)


def report(original, pruned, ms: dict[str, float]) -> None:
    print(f"{'':22}{'original':>14}{'pruned':>14}{'ratio':>9}")
    for label, fn in (("parameters", count_params), ("MACs", count_macs)):
        a, b = fn(original), fn(pruned)
        print(f"{label:22}{a:>14,}{b:>14,}{a / b:>8.2f}x")
    for backend in ("torch", "onnxruntime"):
        a, b = ms[f"{backend} original"], ms[f"{backend} pruned"]
        print(f"{backend + ' latency (ms)':22}{a:>14.3f}{b:>14.3f}{a / b:>8.2f}x")


if __name__ == "__main__":
    main()
