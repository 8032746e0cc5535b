"""Cortex-M4 instructions per inference of the generated C, measured on an emulated M4.

Each network (a randomly initialised, calibrated model of a preset: untrained weights run the
same instructions) is exported as C and run on QEMU's mps2-an386 Cortex-M4
(`tinykws.export.c.mcu.emulate_cortex_m4`, `-icount`: exact, deterministic instruction counts)
built with the project's Cortex-M4 flags at -Os and at -O2, on a seeded noise clip through its
own C front end. Printed per network and level: network instructions per inference and per MAC,
the front end's instructions, the time at 80 MHz counting one instruction per cycle (a lower
bound), and instructions per MAC by op kind (first conv, depthwise, pointwise 1 x 1, other
convs, fully connected; other ops by type: ADD, MEAN, ...) with each kind's share of the
network's instructions. The scores on the emulator are checked against the integer interpreter
on every run.

Anchors, beside ours (not measured here):
  CMSIS-NN s8 kernels, DS-CNN-S on the same emulator: 3.47 instructions/MAC at -Os, 2.90 at -O2;
  TFLite Micro reference kernels on an STM32L4R5 (Cortex-M4): 8.2 cycles/MAC.

    python benchmarks/mcu.py                      # every network, -Os and -O2
    python benchmarks/mcu.py --models dscnn_s --levels -Os
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinykws.export.c import export_c
from tinykws.export.c.generate import int8_graph
from tinykws.export.c.mcu import default_inputs, emulate_cortex_m4
from tinykws.features.frontend import FrontEnd, Normalization
from tinykws.measure.metrics import op_macs
from tinykws.models import MODEL_PRESETS, build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

NETWORKS = {  # name: (preset, weight bits, classes)
    "dscnn_s": ("dscnn_s", 8, 12),
    "dscnn_s_4bit": ("dscnn_s", 4, 12),
    "bcresnet1": ("bcresnet", 8, 12),
    "tinyconv": ("tinyconv", 8, 4),
    "commandnet": ("commandnet", 8, 12),
}
ANCHORS = (
    "anchors: CMSIS-NN on the same emulator 3.47 instr/MAC at -Os, 2.90 at -O2 (DS-CNN-S); "
    "TFLM reference kernels on STM32L4R5 8.2 cycles/MAC"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--levels", nargs="+", default=["-Os", "-O2"])
    return parser.parse_args()


def make_graph(preset: str, weight_bits: int, n_classes: int):
    """A calibrated int8 graph of a randomly initialised model of `preset`, with its front end."""
    torch.manual_seed(0)
    frontend = MODEL_PRESETS[preset].frontend
    shape = FrontEnd(frontend).output_shape
    model = build_model(model_config(preset, n_classes, shape)).eval()
    features = np.random.default_rng(0).normal(size=(32, *shape)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * shape[1], std=(1.0,) * shape[1])
    quantized = quantize(model, QuantConfig(weight_bits=weight_bits), QuantData(features, norm))
    graph = lower(quantized, preset)
    graph.metadata.update(frontend=frontend, normalization=norm.to_dict())
    return graph


def op_kind(graph, op, first_conv: bool) -> str:
    if op.type == "CONV_2D":
        if first_conv:
            return "first conv"
        kh, kw = graph.tensor(op.inputs[1]).shape[1:3]
        return "pointwise" if (kh, kw) == (1, 1) else "other conv"
    if op.type == "DEPTHWISE_CONV_2D":
        return "depthwise"
    return "fully connected" if op.type == "FULLY_CONNECTED" else op.type


def by_kind(graph, run) -> dict[str, tuple[int, int]]:
    """{kind: (instructions, MACs)} over the network's ops: convolutions by kind, other ops by
    type, and the input and output copies."""
    int8 = int8_graph(graph)
    steps = [s for s in run.per_op if s[0] != "front end"][1:-1]  # without the copies
    totals: dict[str, list[int]] = {}
    seen_conv = False
    for op, (_, n) in zip(int8.ops, steps):
        kind = op_kind(int8, op, op.type == "CONV_2D" and not seen_conv)
        seen_conv = seen_conv or op.type == "CONV_2D"
        entry = totals.setdefault(kind, [0, 0])
        entry[0] += n
        entry[1] += op_macs(int8, op)
    copies = sum(n for label, n in run.per_op if label in ("input copy", "output copy"))
    totals["copies"] = [copies, 0]
    return {k: (v[0], v[1]) for k, v in totals.items() if v[0]}


def report(name: str, level: str, graph, run, seconds: float) -> None:
    network = run.network_instructions
    print(
        f"{name:14s} {level:4s} MACs {run.macs:>11,}  network {network:>12,} instr "
        f"= {network / run.macs:5.2f}/MAC  front end {run.frontend_instructions:>11,}  "
        f"total {run.instructions / 80e6 * 1e3:7.1f} ms at 80 MHz  (emulated in {seconds:.1f} s)"
    )
    for kind, (n, macs) in by_kind(graph, run).items():
        per_mac = f"{n / macs:6.2f}/MAC" if macs else "          "
        print(f"{'':20s}{kind:16s} {n:>12,} instr {per_mac}  {100 * n / network:5.1f}%")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    print(ANCHORS)
    for name in args.models:
        graph = make_graph(*NETWORKS[name])
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_c(graph, Path(tmp) / "c", cortex_m4="off")
            for level in args.levels:
                start = time.perf_counter()
                run = emulate_cortex_m4(
                    folder, optimization=level, graph=graph, timeout_s=600, **default_inputs(folder)
                )
                report(name, level, graph, run, time.perf_counter() - start)


if __name__ == "__main__":
    main()
