"""Deployment constraints: does a run's model fit the device? `tinykws check RUN ...`.

Each limit is compared with a figure the run measured:

| limit          | figure                                                                       |
|----------------|------------------------------------------------------------------------------|
| min_accuracy   | accuracy of the exported file (`format`) on `split`, else of the final model |
| max_flash      | flash of `tinykws metrics` (weights + biases + qparams + code), or with      |
|                | `zipped` the zipped size of the exported file                                |
| max_ram        | peak RAM: the planned activation arena plus scratch                          |
| max_latency    | front end + network on the microcontroller: instructions per inference of    |
|                | the exported C on an emulated Cortex-M4 (`tinykws.export.c.mcu`) / mcu_clock |
|                | (one instruction per cycle: a lower bound); without a count, the PC figure   |
|                | below, labelled as such                                                      |
| max_pc_latency | front end + network at batch 1 in the exported file's runtime on this PC     |
|                | (median)                                                                     |

Figures come from what the export stage wrote (`export/summary.json`, `export/metrics.json`,
`export/c/mcu.json`); a run without them is measured on the spot (its final model; no zipped
size then; the Cortex-M4 count where arm-none-eabi-gcc and qemu-system-arm are installed).
Sizes read "25KB" (1000 bytes per kB, as the go/stop study counts), "24KiB", "2MB" or a number
of bytes; latencies "8ms", "500us", "0.008s" or a number of milliseconds; clocks "80MHz",
"48 MHz", "1.2GHz" or a number of Hz; accuracy 0.97 or "97%".

Example:
    >>> parse_bytes("25KB"), parse_bytes("2KiB"), parse_ms("500us"), parse_fraction("97%")
    (25000, 2048, 0.5, 0.97)
    >>> parse_hz("80MHz")
    80000000.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinykws.errors import ConstraintFailed, TinyKWSError
from tinykws.export.c.mcu import can_emulate
from tinykws.io import read_json_object
from tinykws.log import logger
from tinykws.measure.latency import LatencyConfig
from tinykws.measure.metrics import measure_mcu, model_metrics, read_mcu
from tinykws.measure.model_file import load_model

BYTE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
MS_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
HZ_UNITS = {"": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
RUNTIME_OF = {"tflite": "litert", "onnx": "onnxruntime"}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-zA-Zµ%]*)\s*$")


def _split_unit(text, what: str) -> tuple[float, str]:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text), ""
    match = _NUMBER.match(str(text))
    if not match:
        raise TinyKWSError(f"{what}: cannot read {text!r}; write e.g. 25KB, 8ms or 0.97")
    return float(match.group(1)), match.group(2).lower()


def parse_bytes(text) -> int:
    """'25KB' -> 25000, '24KiB' -> 24576, 1000 -> 1000."""
    value, unit = _split_unit(text, "size")
    if unit not in BYTE_UNITS:
        raise TinyKWSError(f"size: unknown unit in {text!r}; use B, KB, KiB, MB or MiB")
    return int(round(value * BYTE_UNITS[unit]))


def parse_ms(text) -> float:
    """'8ms' -> 8.0, '500us' -> 0.5, '0.008s' -> 8.0, 8 -> 8.0 (milliseconds)."""
    value, unit = _split_unit(text, "latency")
    if unit not in MS_UNITS:
        raise TinyKWSError(f"latency: unknown unit in {text!r}; use ms, us or s")
    return value * MS_UNITS[unit]


def parse_hz(text) -> float:
    """'80MHz' -> 80e6, '48 MHz' -> 48e6, 1e6 -> 1e6 (hertz)."""
    value, unit = _split_unit(text, "clock")
    if unit not in HZ_UNITS or value <= 0:
        raise TinyKWSError(f"clock: cannot read {text!r}; write e.g. 80MHz")
    return value * HZ_UNITS[unit]


def parse_fraction(text) -> float:
    """0.97 -> 0.97, '97%' -> 0.97."""
    value, unit = _split_unit(text, "accuracy")
    if unit not in ("", "%"):
        raise TinyKWSError(f"accuracy: cannot read {text!r}; write 0.97 or 97%")
    value = value / 100 if unit == "%" else value
    if not 0 <= value <= 1:
        raise TinyKWSError(f"accuracy: {text!r} is not within 0..1 (0..100%)")
    return value


@dataclass(frozen=True)
class CheckConfig:
    """The limits (the `[check]` table of a recipe; unset limits are not checked).

    Attributes:
        min_accuracy: e.g. 0.97 or "97%".
        max_flash: e.g. "25KB".
        max_ram: e.g. "64KB".
        max_latency: e.g. "8ms": on the microcontroller (emulated Cortex-M4 count at
            `mcu_clock`).
        max_pc_latency: e.g. "8ms": in the exported file's runtime on this PC.
        mcu_clock: the microcontroller's clock, e.g. "80MHz".
        zipped: compare the zipped size of the exported file with max_flash.
        format: which exported file is checked (default: the first one exported).
        split: the split whose accuracy counts.
        strict: in a recipe run, stop the run (exit status 1) when a limit is missed; otherwise
            the result is recorded and shown in the report.
    """

    min_accuracy: float | str | None = None
    max_flash: int | str | None = None
    max_ram: int | str | None = None
    max_latency: float | str | None = None
    max_pc_latency: float | str | None = None
    mcu_clock: float | str = "80MHz"
    zipped: bool = False
    format: str = ""
    split: str = "validation"
    strict: bool = False

    def __post_init__(self) -> None:
        for name, parse in (
            ("min_accuracy", parse_fraction),
            ("max_flash", parse_bytes),
            ("max_ram", parse_bytes),
            ("max_latency", parse_ms),
            ("max_pc_latency", parse_ms),
            ("mcu_clock", parse_hz),
        ):
            value = getattr(self, name)
            if value is not None:
                parse(value)  # raises a one-line error for a bad value
        if self.format and self.format not in ("tflite", "onnx", "c"):
            raise TinyKWSError(f"check.format must be tflite, onnx or c; got {self.format!r}")


@dataclass(frozen=True)
class CheckRow:
    """One limit: what, the limit and the measured value (display text), pass/fail, source."""

    name: str
    limit: str
    value: str
    passed: bool
    source: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "limit": self.limit,
            "value": self.value,
            "passed": self.passed,
            "source": self.source,
        }


@dataclass
class RunFigures:
    """What a check reads from a run directory."""

    artefact: dict | None  # an entry of export/summary.json "artefacts"
    metrics: dict  # `tinykws.measure.metrics.model_metrics` output
    accuracy: float | None
    accuracy_source: str
    mcu: dict | None = None  # mcu.json figures of the exported C (emulated Cortex-M4)


def _read(path: Path) -> dict | None:
    return read_json_object(path, "run file") if path.is_file() else None


def run_figures(run_dir, config: CheckConfig) -> RunFigures:
    """The figures of a run: from its export stage, else measured on its final model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TinyKWSError(f"{run_dir}: no such run directory")
    summary = _read(run_dir / "export" / "summary.json")
    metrics = _read(run_dir / "export" / "metrics.json")
    artefact = _pick_artefact(summary, config, run_dir)
    if metrics is None:
        latency = LatencyConfig() if _wants_latency(config) else None
        metrics = model_metrics(run_dir, latency)
    accuracy, source = _accuracy(run_dir, artefact, config.split)
    mcu = _mcu(run_dir, metrics) if config.max_latency is not None else None
    return RunFigures(artefact, metrics, accuracy, source, mcu)


def _wants_latency(config: CheckConfig) -> bool:
    return config.max_latency is not None or config.max_pc_latency is not None


def _mcu(run_dir: Path, metrics: dict) -> dict | None:
    """The emulated Cortex-M4 count: recorded by the export stage, else measured here when
    the tools are installed (None when it cannot be had)."""
    figures = metrics.get("mcu") or read_mcu(run_dir / "export" / "c")
    if figures is not None:
        return figures
    if not can_emulate():
        return None
    try:
        return measure_mcu(load_model(run_dir))
    except TinyKWSError as exc:
        logger.debug(f"check: no Cortex-M4 instruction count: {exc}")
        return None


def _pick_artefact(summary: dict | None, config: CheckConfig, run_dir: Path) -> dict | None:
    artefacts = (summary or {}).get("artefacts", [])
    if config.format:
        chosen = [a for a in artefacts if a["format"] == config.format]
        if not chosen:
            raise TinyKWSError(
                f"{run_dir}: no exported {config.format} file; add it to the "
                f"[export] formats of the recipe"
            )
        return chosen[0]
    return artefacts[0] if artefacts else None


def _accuracy(run_dir: Path, artefact: dict | None, split: str) -> tuple[float | None, str]:
    if artefact is not None and artefact.get("accuracy", {}).get(split) is not None:
        return artefact["accuracy"][split], f"{artefact['format']} file, {split}"
    evaluated = (_read(run_dir / "metrics.json") or {}).get("evaluate", {}).get(split)
    if evaluated:
        return evaluated["accuracy"], f"final model, {split}"
    return None, f"no accuracy on '{split}'"


def _mcu_latency(figures: RunFigures, clock) -> tuple[float | None, str]:
    """instructions / clock of the emulated Cortex-M4, else the PC figure (labelled)."""
    mcu = figures.mcu
    if mcu is None:
        value, source = _latency(figures.metrics, figures.artefact)
        note = "no Cortex-M4 count: export C with arm-none-eabi-gcc and qemu-system-arm installed"
        return value, f"PC, not a microcontroller: {source} ({note})"
    hz = parse_hz(clock)
    ms = mcu["instructions"] / hz * 1e3
    what = "front end + network" if mcu.get("frontend_instructions") else "network"
    return ms, (
        f"Cortex-M4 (emulated) {mcu['instructions'] / 1e6:.1f} M instructions at "
        f"{hz / 1e6:g} MHz = {ms:.3g} ms ({what}, {mcu.get('optimization', '-Os')}, one "
        "instruction per cycle)"
    )


def _latency(metrics: dict, artefact: dict | None) -> tuple[float | None, str]:
    rows = (metrics.get("latency") or {}).get("rows", [])
    if not rows:
        return None, "not measured"
    wanted = None
    if artefact is not None and artefact["format"] in RUNTIME_OF:
        wanted = (RUNTIME_OF[artefact["format"]], artefact["precision"])
    row = next((r for r in rows if (r["runtime"], r["precision"]) == wanted), None)
    row = row or min(rows, key=lambda r: r["total_ms"])
    return row[
        "total_ms"
    ], f"{row['runtime']} {row['precision']} ({row['device']}), front end + network"


def _flash(figures: RunFigures, zipped: bool) -> tuple[float | None, str]:
    if not zipped:
        return figures.metrics["total"]["flash_bytes"], "weights + biases + qparams (+ code)"
    if figures.artefact is None:
        raise TinyKWSError(
            "check: --zipped needs an exported file; add an 'export' stage to "
            "the recipe (or drop --zipped)"
        )
    return figures.artefact["zipped_bytes"], f"zipped {figures.artefact['format']} file"


def check_figures(figures: RunFigures, config: CheckConfig) -> list[CheckRow]:
    """One row per limit set in `config`."""
    rows = []
    if config.min_accuracy is not None:
        limit = parse_fraction(config.min_accuracy)
        value = figures.accuracy
        rows.append(
            CheckRow(
                "accuracy",
                f">= {limit:.2%}",
                _fmt(value, "{:.2%}"),
                value is not None and value >= limit,
                figures.accuracy_source,
            )
        )

    def ram():
        return figures.metrics["total"]["ram_bytes"], "activation arena + scratch"

    upper_limits = (  # name, limit, its parser, unit format of limit and value, figure
        ("flash", config.max_flash, parse_bytes, "{:,} B", lambda: _flash(figures, config.zipped)),
        ("RAM", config.max_ram, parse_bytes, "{:,} B", ram),
        (
            "latency",
            config.max_latency,
            parse_ms,
            "{:g} ms",
            lambda: _mcu_latency(figures, config.mcu_clock),
        ),
        (
            "PC latency",
            config.max_pc_latency,
            parse_ms,
            "{:g} ms",
            lambda: _latency(figures.metrics, figures.artefact),
        ),
    )
    for name, option, parse, unit, value_source in upper_limits:
        if option is not None:
            limit, (value, source) = parse(option), value_source()
            value_unit = "{:.3f} ms" if unit.endswith("ms") else unit
            ok = value is not None and value <= limit
            rows.append(
                CheckRow(name, f"<= {unit.format(limit)}", _fmt(value, value_unit), ok, source)
            )
    return rows


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def check_run(run_dir, config: CheckConfig) -> list[CheckRow]:
    """Check every limit of `config` against the run's figures (see the module docstring)."""
    limits = ("min_accuracy", "max_flash", "max_ram", "max_latency", "max_pc_latency")
    if all(getattr(config, k) is None for k in limits):
        raise TinyKWSError(
            "check: no limit given; set --min-accuracy, --max-flash, --max-ram, --max-latency "
            "or --max-pc-latency"
        )
    return check_figures(run_figures(run_dir, config), config)


def failure(rows: list[CheckRow]) -> ConstraintFailed | None:
    """A `ConstraintFailed` naming the limits missed, or None when all pass."""
    missed = [f"{r.name} {r.value} (limit {r.limit})" for r in rows if not r.passed]
    if not missed:
        return None
    return ConstraintFailed(f"constraints not met: {'; '.join(missed)}")


def print_rows(rows: list[CheckRow], console=None) -> None:
    """The pass/fail table."""
    table = Table("constraint", "limit", "value", "result", "measured on")
    for r in rows:
        table.add_row(
            r.name, r.limit, r.value, "[green]pass[/]" if r.passed else "[red]FAIL[/]", r.source
        )
    (console or Console()).print(table)
