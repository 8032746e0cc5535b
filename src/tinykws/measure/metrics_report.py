"""Tables of `metrics` results, for the terminal (`tinykws metrics`) and report.html.

Example:
    >>> latency_rows({"rows": [{"runtime": "litert", "device": "cpu", "precision": "int8",
    ...                         "network_ms": 0.05, "total_ms": 1.25}]})
    [['litert', 'cpu', 'int8', '0.0500', '1.2500']]
"""

from __future__ import annotations

LATENCY_HEADERS = ["runtime", "device", "precision", "network ms", "total ms"]
CORTEX_HEADERS = ["Cortex-M", "cycles/MAC", "MHz", "cycles", "ms"]
MCU_OP_HEADERS = ["step (emulated Cortex-M4)", "instructions", "share", "MACs", "instr./MAC"]
LAYER_HEADERS = [
    "layer",
    "type",
    "output",
    "learnables",
    "bits",
    "param B",
    "MACs",
    "FLOPs",
    "in+out B",
]


def cortex_rows(metrics: dict) -> list[list[str]]:
    """(target, cycles per MAC, MHz, cycles, ms) rows: the MAC-based estimates, then the
    emulated Cortex-M4 count when measured (instructions, one per cycle: a lower bound)."""
    rows = [
        [
            f"{c['target']} (estimate)",
            f"{c['cycles_per_mac']:g}",
            f"{c['clock_mhz']:g}",
            f"{c['cycles']:,}",
            f"{c['ms']:.2f}",
        ]
        for c in metrics["cortex_m"]
    ]
    mcu = metrics.get("mcu")
    if mcu:
        per_mac = mcu.get("instructions_per_mac")
        rows.append(
            [
                f"Cortex-M4, tinykws C {mcu['optimization']} (emulated: instructions"
                + (", front end included)" if mcu.get("frontend_instructions") else ")"),
                "-" if per_mac is None else f"{per_mac:.2f} (network)",
                f"{mcu['clock_mhz']:g}",
                f"{mcu['instructions']:,}",
                f"{mcu['ms']:.2f}",
            ]
        )
    return rows


def mcu_op_rows(mcu: dict) -> list[list[str]]:
    """(step, instructions, share of the total, MACs, instructions per MAC) rows."""
    total = max(mcu["instructions"], 1)
    rows = []
    for step in mcu["per_op"]:
        n, macs = step["instructions"], step.get("macs")
        rows.append(
            [
                step["label"],
                f"{n:,}",
                f"{100 * n / total:.1f}%",
                f"{macs:,}" if macs else "-",
                f"{n / macs:.2f}" if macs else "-",
            ]
        )
    return rows


def summary_rows(metrics: dict) -> list[list[str]]:
    """(figure, value) rows: totals, flash and RAM parts."""
    total, flash, ram = metrics["total"], metrics["flash"], metrics["ram"]
    code = flash["code_bytes"]
    rows = [
        ["precision", f"{metrics['precision']} ({metrics['weight_bits']}-bit weights)"],
        ["parameters (non-zero)", f"{total['params']:,} ({total['learnables']:,})"],
        ["parameter memory", f"{total['param_bytes']:,} B"],
        ["MACs", f"{total['macs']:,}"],
        ["FLOPs", f"{total['flops']:,}"],
        [
            "flash: weights + biases + qparams" + (" + code" if code else ""),
            f"{flash['weight_bytes']:,} + {flash['bias_bytes']:,} + {flash['qparam_bytes']:,}"
            + (f" + {code:,}" if code else "")
            + f" = {flash['total_bytes']:,} B",
        ],
        [
            "peak RAM (planned arena: tensors and scratch)",
            "-"
            if ram["arena_bytes"] is None
            else f"{ram['total_bytes']:,} B (tensors alone {ram['arena_bytes']:,} B; largest "
            f"scratch buffer {ram['scratch_bytes']:,} B, planned into the same arena)",
        ],
        ["RAM estimate (largest layer input + output)", f"{ram['io_estimate_bytes']:,} B"],
    ]
    latency = metrics.get("latency") or {}
    if latency.get("frontend_ms") is not None:
        rows.append(["front end per clip (numpy)", f"{latency['frontend_ms']:.3f} ms"])
    return rows


def latency_rows(latency: dict) -> list[list[str]]:
    """(runtime, device, precision, network ms, total ms) rows."""
    return [
        [
            r["runtime"],
            r["device"],
            r["precision"],
            f"{r['network_ms']:.4f}",
            f"{r['total_ms']:.4f}",
        ]
        for r in latency["rows"]
    ]


def layer_table_rows(metrics: dict) -> list[list[str]]:
    """Per-layer rows and a total row."""
    rows = [
        [
            r["name"],
            r["type"],
            "x".join(map(str, r["output_shape"])),
            f"{r['learnables']:,}",
            "-" if r["param_bits"] is None else str(r["param_bits"]),
            f"{r['param_bytes']:,}",
            f"{r['macs']:,}",
            f"{r['flops']:,}",
            f"{r['ram_io_bytes']:,}",
        ]
        for r in metrics["layers"]
    ]
    total = metrics["total"]
    rows.append(
        [
            "total",
            "",
            "",
            f"{total['learnables']:,}",
            "",
            f"{total['param_bytes']:,}",
            f"{total['macs']:,}",
            f"{total['flops']:,}",
            f"{total['ram_io_estimate_bytes']:,}",
        ]
    )
    return rows


def print_metrics(metrics: dict, console=None) -> None:
    """The metrics as rich tables: layers, totals, latency, Cortex-M estimates."""
    from rich.console import Console

    console = console or Console()
    console.print(_rich_table(LAYER_HEADERS, layer_table_rows(metrics), metrics["model"]))
    console.print(_rich_table(["figure", "value"], summary_rows(metrics)))
    latency = metrics.get("latency")
    if latency:
        title = f"batch-1 latency, median of {latency['runs']} runs"
        console.print(_rich_table(LATENCY_HEADERS, latency_rows(latency), title))
    console.print(_rich_table(CORTEX_HEADERS, cortex_rows(metrics)))
    if metrics.get("mcu"):
        console.print(_rich_table(MCU_OP_HEADERS, mcu_op_rows(metrics["mcu"])))


def _rich_table(headers: list[str], rows: list[list[str]], title: str | None = None):
    from rich.table import Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    return table
