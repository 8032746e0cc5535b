"""Deployment constraints: does a run's model fit the device? `tinykws check RUN ...`.

Each limit is compared with a figure the run measured:

| limit          | figure                                                                       |
|----------------|------------------------------------------------------------------------------|
| min_accuracy   | accuracy of the exported file (`format`) on `split`, else of the final model |
| max_flash      | flash of `tinykws metrics` (weights + biases + qparams + code), or with      |
|                | `zipped` the zipped size of the exported file                                |
| max_ram        | peak RAM: the planned activation arena plus scratch                          |
| max_latency    | front end + network at batch 1 in the exported file's runtime (median)       |

Figures come from what the export stage wrote (`export/summary.json`, `export/metrics.json`);
a run without it is measured on the spot (its final model; no zipped size then).
Sizes read "25KB" (1000 bytes per kB, as the go/stop study counts), "24KiB", "2MB" or a number
of bytes; latencies "8ms", "500us", "0.008s" or a number of milliseconds; accuracy 0.97 or "97%".

Example:
    >>> parse_bytes("25KB"), parse_bytes("2KiB"), parse_ms("500us"), parse_fraction("97%")
    (25000, 2048, 0.5, 0.97)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tinykws.errors import ConstraintFailed, TinyKWSError

BYTE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
MS_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
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
        max_latency: e.g. "8ms".
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
    metrics: dict  # `tinykws.metrics.model_metrics` output
    accuracy: float | None
    accuracy_source: str


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_figures(run_dir, config: CheckConfig) -> RunFigures:
    """The figures of a run: from its export stage, else measured on its final model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TinyKWSError(f"{run_dir}: no such run directory")
    summary = _read(run_dir / "export" / "summary.json")
    metrics = _read(run_dir / "export" / "metrics.json")
    artefact = _pick_artefact(summary, config, run_dir)
    if metrics is None:
        from tinykws.latency import LatencyConfig
        from tinykws.metrics import model_metrics

        latency = LatencyConfig() if config.max_latency is not None else None
        metrics = model_metrics(run_dir, latency)
    accuracy, source = _accuracy(run_dir, artefact, config.split)
    return RunFigures(artefact, metrics, accuracy, source)


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
    for name, option, value_source in (
        ("flash", config.max_flash, lambda: _flash(figures, config.zipped)),
        (
            "RAM",
            config.max_ram,
            lambda: (figures.metrics["total"]["ram_bytes"], "activation arena + scratch"),
        ),
    ):
        if option is not None:
            limit, (value, source) = parse_bytes(option), value_source()
            rows.append(
                CheckRow(
                    name,
                    f"<= {limit:,} B",
                    _fmt(value, "{:,} B"),
                    value is not None and value <= limit,
                    source,
                )
            )
    if config.max_latency is not None:
        limit = parse_ms(config.max_latency)
        value, source = _latency(figures.metrics, figures.artefact)
        rows.append(
            CheckRow(
                "latency",
                f"<= {limit:g} ms",
                _fmt(value, "{:.3f} ms"),
                value is not None and value <= limit,
                source,
            )
        )
    return rows


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def check_run(run_dir, config: CheckConfig) -> list[CheckRow]:
    """Check every limit of `config` against the run's figures (see the module docstring)."""
    if all(
        getattr(config, k) is None for k in ("min_accuracy", "max_flash", "max_ram", "max_latency")
    ):
        raise TinyKWSError(
            "check: no limit given; set --min-accuracy, --max-flash, --max-ram or --max-latency"
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
    from rich.console import Console
    from rich.table import Table

    table = Table("constraint", "limit", "value", "result", "measured on")
    for r in rows:
        table.add_row(
            r.name, r.limit, r.value, "[green]pass[/]" if r.passed else "[red]FAIL[/]", r.source
        )
    (console or Console()).print(table)
