"""Exporters: write a Graph in a deployable format.

`EXPORTERS[format](graph, path, **options)` writes the file and returns its path; each
format's module documents its options. Importing this package is cheap: the flatbuffer and
schema libraries load only when a file is written.

Example:
    >>> sorted(EXPORTERS)
    ['c', 'onnx', 'tflite']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tinykws.export.c import export_c
from tinykws.export.onnx import export_onnx
from tinykws.export.tflite import export_tflite

EXPORTERS: dict[str, Callable[..., Path]] = {
    "c": export_c,
    "onnx": export_onnx,
    "tflite": export_tflite,
}

__all__ = ["EXPORTERS"]
