"""Network metrics: per layer and in total, what a model costs on a device.

In the spirit of MATLAB's estimateNetworkMetrics, computed on the graph that gets deployed (the
int8 Graph of a quantized model, the float32 graph of a float checkpoint):

- per layer (op): type, output shape, parameters and learnables (non-zero parameters),
  parameter memory at the layer's bit width (weights packed as `tinykws.quant.sizes` packs them,
  biases 4 bytes), MACs and FLOPs;
- FLOPs = 2 x MACs + one per bias add + one per activated output (ReLU/ReLU6) + one per element
  a pool window, mean, add, mul or requantization reads, and 3 per softmax or logistic element
  (exp, sum, divide): the counting of the TinyConv study;
- flash = weights + biases + quantization parameters (the op's fixed-point constants:
  multiplier and shift per channel, clamping ranges, LOGISTIC's 256-entry table) + code when a
  C build measured it;
- peak RAM = the activation arena planned over the graph by liveness (`tinykws.ir.plan`, with
  CMSIS-NN scratch buffers), shown beside the simple per-layer estimate (largest input +
  output of one layer);
- latency at batch 1 (`tinykws.measure.latency`) and a Cortex-M estimate: MACs x cycles per MAC at a
  clock, with the constants of `CORTEX_M` (about 2 cycles per MAC for CMSIS-NN's optimised s8
  kernels on M4/M33 with DSP instructions, 8 for plain reference C, 16 for an M0+ without a
  single-cycle multiply-accumulate; data movement and the front end are not included);
- beside the estimate, when measured ("mcu"): instructions per inference of the exported C on
  an emulated Cortex-M4 (`tinykws.export.c.mcu`, front end + network, per op), from a C export
  folder's mcu.json or run on the spot, and the time they take at `MCU_CLOCK_HZ` counting one
  instruction per cycle (a lower bound: loads and taken branches take 2 or more cycles).

A model whose layers have no graph op gets float figures from the PyTorch summary and the
per-layer RAM estimate only.

Example:
    >>> from tinykws.export.float_graph import lower_float
    >>> from tinykws.models import build_model, model_config
    >>> graph = lower_float(build_model(model_config("tinyconv", 4, (49, 40))))
    >>> figures = graph_metrics(graph)
    >>> figures["total"]["macs"], figures["total"]["ram_bytes"]
    (336000, 23840)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c import SIZES_FILE, export_c
from tinykws.export.c.mcu import MCU_FILE, default_inputs, emulate_cortex_m4
from tinykws.export.float_graph import lower_float
from tinykws.ir.ops import op_macs
from tinykws.ir.plan import io_estimate_bytes, no_scratch, plan_arena
from tinykws.measure.latency import measure_latency
from tinykws.measure.model_file import load_model
from tinykws.models import summary
from tinykws.quant.sizes import packed_bytes


@dataclass(frozen=True)
class CortexTarget:
    """A Cortex-M estimate: cycles per MAC of its kernels and a typical clock."""

    name: str
    cycles_per_mac: float
    clock_hz: float


CORTEX_M = (
    CortexTarget("Cortex-M4/M33, CMSIS-NN s8 kernels", 2.0, 80e6),
    CortexTarget("Cortex-M4/M33, reference C kernels", 8.0, 80e6),
    CortexTarget("Cortex-M0+, reference C kernels", 16.0, 48e6),
)
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
FLOAT_BYTES = 4
MCU_CLOCK_HZ = 80e6


def _size(shape) -> int:
    return int(np.prod(shape))


def op_flops(graph, op) -> int:
    """FLOPs of one op (see the module docstring)."""
    out = _size(graph.tensor(op.outputs[0]).shape)
    reads = _size(graph.tensor(op.inputs[0]).shape)
    activation = out if op.options.get("activation", "NONE") != "NONE" else 0
    if op.type in WEIGHTED:
        return 2 * op_macs(graph, op) + out + activation
    if op.type in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return out * _size(op.options["filter"]) + activation
    per_element = {
        "MEAN": reads,
        "ADD": out + activation,
        "MUL": out + activation,
        "LOGISTIC": 3 * out,  # exp, add, divide (an int8 LOGISTIC is one table lookup)
        "SOFTMAX": 3 * out,
        "QUANTIZE": out,
        "DEQUANTIZE": out,
    }
    return per_element.get(op.type, 0)


def _param_figures(graph, op) -> dict:
    """Parameters, non-zero learnables, bit width and bytes of one op's constants."""
    constants = [graph.tensor(n) for n in op.inputs if graph.tensor(n).is_constant]
    weights = [t for t in constants if t.dtype in ("int8", "float32") and op.type in WEIGHTED]
    weights = weights[:1]
    bits = weights[0].bits if weights and weights[0].dtype == "int8" else 32
    weight_bytes = sum(
        packed_bytes(t.data.size, t.bits) if t.dtype == "int8" else FLOAT_BYTES * t.data.size
        for t in weights
    )
    others = [t for t in constants if t not in weights and op.type in WEIGHTED]
    return {
        "params": sum(t.data.size for t in weights + others),
        "learnables": sum(int(np.count_nonzero(t.data)) for t in weights + others),
        "param_bits": bits if weights else None,
        "weight_bytes": weight_bytes,
        "bias_bytes": sum(t.data.nbytes for t in others),
        "qparam_bytes": int(sum(np.asarray(v).nbytes for v in op.params.values())),
    }


def layer_rows(graph) -> list[dict]:
    """One row per op of `graph` (see the module docstring for each figure)."""
    rows = []
    for op, io_bytes in zip(graph.ops, io_estimate_bytes(graph)):
        out = graph.tensor(op.outputs[0])
        row = {
            "name": op.name or op.outputs[0],
            "type": op.type,
            "output_shape": list(out.shape[1:]),
            **_param_figures(graph, op),
            "macs": op_macs(graph, op),
            "flops": op_flops(graph, op),
            "ram_io_bytes": io_bytes,
        }
        row["param_bytes"] = row["weight_bytes"] + row["bias_bytes"]
        rows.append(row)
    return rows


def graph_metrics(graph, code_bytes: int | None = None) -> dict:
    """Per-layer rows, flash, RAM and totals of a Graph (int8 or float32)."""
    rows = layer_rows(graph)
    plan = plan_arena(graph)
    arena = plan_arena(graph, scratch=no_scratch).size_bytes
    ram = {
        "arena_bytes": arena,
        "scratch_bytes": plan.scratch_bytes,
        "total_bytes": plan.size_bytes,
        "io_estimate_bytes": max((r["ram_io_bytes"] for r in rows), default=0),
    }
    return _assemble(rows, ram, code_bytes)


def _sum(rows, key) -> int:
    return int(sum(r[key] or 0 for r in rows))


def _assemble(rows: list[dict], ram: dict, code_bytes: int | None) -> dict:
    weight, bias, qparam = (_sum(rows, k) for k in ("weight_bytes", "bias_bytes", "qparam_bytes"))
    flash = {
        "weight_bytes": weight,
        "bias_bytes": bias,
        "qparam_bytes": qparam,
        "code_bytes": code_bytes,
        "total_bytes": weight + bias + qparam + (code_bytes or 0),
    }
    total = {
        "params": _sum(rows, "params"),
        "learnables": _sum(rows, "learnables"),
        "param_bytes": _sum(rows, "param_bytes"),
        "macs": _sum(rows, "macs"),
        "flops": _sum(rows, "flops"),
        "flash_bytes": flash["total_bytes"],
        "ram_bytes": ram["total_bytes"],
        "ram_io_estimate_bytes": ram["io_estimate_bytes"],
    }
    return {
        "layers": rows,
        "total": total,
        "flash": flash,
        "ram": ram,
        "cortex_m": cortex_m_estimates(total["macs"]),
    }


def torch_metrics(module) -> dict:
    """Float figures from the PyTorch summary, for models that do not lower to a graph."""
    rows = []
    previous = int(np.prod((1, *module.config.input_shape)))
    for r in summary(module):
        out = int(np.prod(r.output_shape))
        layer = {
            "name": r.name,
            "type": r.type,
            "output_shape": list(r.output_shape),
            "params": r.params,
            "learnables": r.params,
            "param_bits": 32 if r.params else None,
            "weight_bytes": FLOAT_BYTES * r.params,
            "bias_bytes": 0,
            "qparam_bytes": 0,
            "macs": r.macs,
            "flops": 2 * r.macs + (out if r.params else 0),
            "ram_io_bytes": FLOAT_BYTES * (previous + out),
        }
        layer["param_bytes"] = layer["weight_bytes"]
        rows.append(layer)
        previous = out
    io = max((r["ram_io_bytes"] for r in rows), default=0)
    ram = {"arena_bytes": None, "scratch_bytes": None, "total_bytes": io, "io_estimate_bytes": io}
    return _assemble(rows, ram, None)


def cortex_m_estimates(macs: int) -> list[dict]:
    """Cycles and milliseconds of `macs` on each target of `CORTEX_M`."""
    return [
        {
            "target": t.name,
            "cycles_per_mac": t.cycles_per_mac,
            "clock_mhz": t.clock_hz / 1e6,
            "cycles": int(macs * t.cycles_per_mac),
            "ms": macs * t.cycles_per_mac / t.clock_hz * 1e3,
        }
        for t in CORTEX_M
    ]


def read_code_bytes(c_dir) -> int | None:
    """.text bytes of a Cortex-M build of exported C (`sizes.json` in its folder), if any."""
    path = Path(c_dir) / SIZES_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["text"])
    except (ValueError, KeyError, TypeError):
        raise TinyKWSError(f"{path}: expected JSON with a 'text' size in bytes") from None


def static_metrics(model, code_bytes: int | None = None) -> dict:
    """Per-layer and total figures of a `LoadedModel` (int8 graph, else float)."""
    if model.graph is not None:
        return graph_metrics(model.graph, code_bytes)
    if model.module is None:
        raise TinyKWSError(f"{model.path}: nothing to measure")
    try:
        return graph_metrics(lower_float(model.float_source), code_bytes)
    except TinyKWSError:
        return torch_metrics(model.module)


def read_mcu(c_dir) -> dict | None:
    """The emulated Cortex-M4 counts of a C export folder (its mcu.json), if any."""
    path = Path(c_dir) / MCU_FILE
    if not path.is_file():
        return None
    try:
        figures = json.loads(path.read_text())
        int(figures["instructions"])
    except (ValueError, KeyError, TypeError):
        raise TinyKWSError(
            f"{path}: expected JSON with 'instructions'; export the C again"
        ) from None
    return figures


def measure_mcu(model, c_dir=None) -> dict:
    """Run the emulated Cortex-M4 (`tinykws.export.c.mcu`) on `c_dir`, or on a temporary C
    export of an int8 `LoadedModel`; returns the mcu.json figures."""
    if c_dir is not None:
        run = emulate_cortex_m4(c_dir, graph=model.graph, **default_inputs(c_dir))
        return run.to_dict()
    if model.precision != "int8":
        raise TinyKWSError(
            f"{model.path}: cannot export to c: the C kernels are integer-only and this model "
            f"is {model.precision}; quantize it with ptq or qat first"
        )
    meta = model.meta
    with tempfile.TemporaryDirectory(prefix="tinykws-c-") as tmp:
        folder = export_c(
            model.graph,
            Path(tmp) / "c",
            frontend_config=meta.get("frontend"),
            normalization=meta.get("normalization"),
            labels=meta.get("labels"),
        )
        figures = read_mcu(folder)
        if figures is None:  # not measured by the export: run it here, errors shown
            figures = measure_mcu(model, folder)
    return figures


def mcu_time(figures: dict, clock_hz: float = MCU_CLOCK_HZ) -> dict:
    """`figures` (mcu.json) with "clock_mhz" and "ms" = instructions / clock."""
    ms = figures["instructions"] / clock_hz * 1e3
    return {**figures, "clock_mhz": clock_hz / 1e6, "ms": ms}


def model_metrics(model_path, latency=None, c_dir=None, mcu: bool = False) -> dict:
    """Everything `tinykws metrics` reports for a model file or run directory.

    Args:
        model_path: checkpoint, quantized model, integer graph or run directory.
        latency: a `tinykws.measure.latency.LatencyConfig`, or None to skip timing.
        c_dir: a C export folder whose `sizes.json` gives the code size and `mcu.json` the
            emulated Cortex-M4 instruction counts (default for the counts: a run directory's
            export/c).
        mcu: run the emulated Cortex-M4 when `c_dir` has no mcu.json (on `c_dir`, or on a
            temporary C export of the model).
    """
    model = load_model(model_path)
    code = read_code_bytes(c_dir) if c_dir is not None else None
    result = {
        "model": str(model.path),
        "precision": model.precision,
        "weight_bits": model.weight_bits,
        **static_metrics(model, code),
    }
    exported = Path(model_path) / "export" / "c"  # a run directory's own C export
    figures = read_mcu(c_dir if c_dir is not None else exported)
    if figures is None and mcu:
        figures = measure_mcu(model, c_dir)
    if figures is not None:
        result["mcu"] = mcu_time(figures)
    if latency is not None:
        shape = _input_shape(model)
        result["latency"] = measure_latency(model, shape, latency)
    return result


def _input_shape(model) -> tuple[int, int]:
    if model.module is not None:
        return tuple(model.module.config.input_shape)
    shape = model.graph.tensor(model.graph.inputs[0]).shape
    return tuple(shape[1:3])
