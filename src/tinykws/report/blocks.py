"""The building blocks of report.html: escaped tables, inlined images, a run file read as JSON,
percentages."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from tinykws.errors import TinyKWSError


def table(headers: list[str], rows: list[list]) -> str:
    """An HTML table; cells are escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def image(path: Path, alt: str = "") -> str:
    """An <img> with the PNG inlined, or "" when the file does not exist."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def read_json(path: Path) -> dict | None:
    """Parsed JSON object, or None when absent (a damaged file is a `TinyKWSError`)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise TinyKWSError(f"{path}: damaged (not a JSON object); redo the stage that wrote it")
    return value


def pct(value) -> str:
    """A fraction as a percentage with one decimal ("-" for None)."""
    return "-" if value is None else f"{100 * value:.1f}%"


def pct2(value) -> str:
    """A fraction as a percentage with two decimals ("-" for None)."""
    return "-" if value is None else f"{100 * value:.2f}%"
