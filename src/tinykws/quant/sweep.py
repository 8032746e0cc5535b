"""Sweep bit widths, schemes and methods: accuracy vs bit width, PTQ vs QAT.

Every combination of `methods` x `schemes` x `weight_modes` x `bits` quantizes the same float
model; the table records the fake-quant validation accuracy, the integer graph's accuracy and
top-1 agreement (when the point lowers: 8-bit activations, symmetric weights), the parameter
memory and compression ratio. The scheme is the activation scheme, "asym" or "sym"; the weight
mode "sym" or "asym" (asymmetric weights are scored in fake quantization only). Activations
stay at the base config's width unless `follow_activations` makes them follow the weights.

A recipe may hold several sweeps as an array of tables (`[[quantize.sweep]]`), each with an
optional `name` (default: its methods joined by "-"); each writes sweep-<name>.json / .csv /
.png, while a single unnamed `[quantize.sweep]` keeps sweep.json / .csv / .png.

Example:
    >>> QuantSweepConfig(bits=(2, 8), methods=("ptq",)).points()[:2]
    [('ptq', 'asym', 'sym', 2), ('ptq', 'asym', 'sym', 8)]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinykws.config import check_choice, check_file_name, check_range, labelled_tables
from tinykws.errors import TinyKWSError
from tinykws.io import save_figure, write_json, write_text
from tinykws.log import logger
from tinykws.plots import pyplot
from tinykws.quant import quantize
from tinykws.quant.scoring import lower_if_possible, score_backends
from tinykws.quant.sizes import float_memory, quantized_memory


@dataclass(frozen=True)
class QuantSweepConfig:
    """Which points to quantize.

    Attributes:
        bits: weight widths, each 2..8.
        schemes: activation schemes, "asym" and/or "sym".
        weight_modes: weight modes, "sym" and/or "asym" (`QuantConfig.weight_mode`).
        methods: "ptq", "qat" and/or "dynamic".
        follow_activations: activations use the same width as the weights (then points below
            8 bits are fake-quant only).
        name: what the report and the file names call the sweep ("" means the methods).
    """

    bits: tuple[int, ...] = (2, 4, 6, 8)
    schemes: tuple[str, ...] = ("asym",)
    weight_modes: tuple[str, ...] = ("sym",)
    methods: tuple[str, ...] = ("ptq", "qat")
    follow_activations: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not (self.bits and self.schemes and self.methods and self.weight_modes):
            raise TinyKWSError(
                "quantize.sweep: bits, schemes, weight_modes and methods need one value each"
            )
        for bits in self.bits:
            check_range("quantize.sweep.bits", bits, 2, 8)
        for scheme in self.schemes:
            check_choice("quantize.sweep.schemes", scheme, ("asym", "sym"))
        for mode in self.weight_modes:
            check_choice("quantize.sweep.weight_modes", mode, ("sym", "asym"))
        for method in self.methods:
            check_choice("quantize.sweep.methods", method, ("ptq", "qat", "dynamic"))
        check_file_name("quantize.sweep.name", self.name)

    @property
    def label(self) -> str:
        """The sweep's name in the report and its file names: `name`, or else the methods."""
        return self.name or "-".join(self.methods)

    def points(self) -> list[tuple[str, str, str, int]]:
        """(method, activation scheme, weight mode, bits) in table order."""
        return list(
            itertools.product(self.methods, self.schemes, self.weight_modes, sorted(self.bits))
        )


def quant_sweeps(value, where: str = "quantize.sweep") -> tuple[QuantSweepConfig, ...]:
    """One sweep table, an array of them (`[[quantize.sweep]]`) or None -> the sweeps; two
    with one name are an error naming it.

    Example:
        >>> [s.label for s in quant_sweeps([{"methods": ["ptq"]}, {"name": "qat4", "bits": [4]}])]
        ['ptq', 'qat4']
    """
    return labelled_tables(QuantSweepConfig, value, where)


def run_sweep(model, base, data, features, labels, sweep: QuantSweepConfig) -> list[dict]:
    """Quantize `model` at every point of `sweep`; one row per point (see the module docstring)."""
    float_bytes = float_memory(model).total_bytes
    rows = []
    for method, scheme, mode, bits in sweep.points():
        config = replace(
            base,
            method=method,
            weight_bits=bits,
            weight_mode=mode,
            activation_scheme=scheme,
            activation_bits=bits if sweep.follow_activations else base.activation_bits,
        )
        quantized = quantize(model, config, data)
        graph = lower_if_possible(quantized)
        scores = score_backends(quantized, graph, features, labels, data.normalization)
        memory = quantized_memory(quantized)
        rows.append(
            {
                "method": method,
                "scheme": scheme,
                "weight_bits": bits,
                "weight_mode": mode,
                "activation_bits": config.activation_bits if method != "dynamic" else 32,
                "accuracy": scores["accuracy"].get("fakequant"),
                "int_accuracy": scores["accuracy"].get("int"),
                "agreement_fakequant_int": scores["agreement"].get("fakequant_int"),
                "parameter_bytes": memory.total_bytes,
                "compression_ratio": float_bytes / max(memory.total_bytes, 1),
            }
        )
        logger.info(
            f"sweep {method} {scheme} {mode}-weights {bits}-bit: "
            f"accuracy {rows[-1]['accuracy']:.4f}"
        )
    return rows


def write_sweep(
    rows: list[dict], float_accuracy: float, out_dir: str | Path, stem: str = "sweep"
) -> None:
    """<stem>.json, <stem>.csv and <stem>.png in `out_dir` (stem: `config.labelled_stem`)."""
    out_dir = Path(out_dir)
    write_json(out_dir / f"{stem}.json", {"float_accuracy": float_accuracy, "rows": rows})
    columns = list(rows[0]) if rows else []
    lines = [",".join(columns)] + [",".join(_csv(row[c]) for c in columns) for row in rows]
    write_text(out_dir / f"{stem}.csv", "\n".join(lines) + "\n")
    plot_sweep(rows, float_accuracy, out_dir / f"{stem}.png")


def _csv(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def plot_sweep(rows: list[dict], float_accuracy: float, out_png) -> None:
    """Accuracy vs weight bit width, one line per method and scheme, float as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({_curve(r) for r in rows}):
        points = sorted((r["weight_bits"], r["accuracy"] or 0.0) for r in rows if _curve(r) == key)
        method, scheme, mode = key
        label = f"{method.upper()} ({scheme}" + (f", {mode} weights)" if mode != "sym" else ")")
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=label)
    if float_accuracy is not None:
        ax.axhline(100 * float_accuracy, color="grey", ls="--", lw=1, label="float32")
    ax.set_xticks(sorted({r["weight_bits"] for r in rows}))
    ax.set_xlabel("weight bit width")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("accuracy vs bit width, PTQ vs QAT")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out_png)


def _curve(row: dict) -> tuple[str, str, str]:
    return row["method"], row["scheme"], row.get("weight_mode", "sym")


def print_sweep(rows: list[dict], console=None) -> None:
    """The sweep table on the terminal."""
    table = Table(
        "method",
        "scheme",
        "weights",
        "bits",
        "accuracy",
        "int accuracy",
        "agreement",
        "param bytes",
        "ratio",
        title="accuracy vs bit width",
    )
    for r in rows:
        table.add_row(
            r["method"],
            r["scheme"],
            r.get("weight_mode", "sym"),
            str(r["weight_bits"]),
            _pct(r["accuracy"]),
            _pct(r["int_accuracy"]),
            _pct(r["agreement_fakequant_int"]),
            f"{r['parameter_bytes']:,}",
            f"{r['compression_ratio']:.1f}x",
        )
    (console or Console()).print(table)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
