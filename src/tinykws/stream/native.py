"""The generated C detector (`kws_stream`, from `tinykws export --format c`) run from Python:
build it, run it on a WAV file, read its events and its per-hop trace.

Example (needs gcc):
    >>> import tempfile
    >>> from tinykws.export.c import export_c
    >>> from tinykws.stream.testing import tiny_graph
    >>> folder = export_c(tiny_graph(), tempfile.mkdtemp(), cortex_m4="off")
    >>> build_kws_stream(folder).name
    'kws_stream'
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.build import HOST_FLAGS, _need, _run, host_compiler
from tinykws.stream.recognize import Event

NOT_LIBRARY = {"kws_stream.c", "stream.c", "main.c"}  # programs and the detector itself


def build_kws_stream(folder, optimization: str = "-O2") -> Path:
    """Compile kws_stream in an exported C folder with the host compiler; returns its path."""

    folder = Path(folder).resolve()
    if not (folder / "stream.c").is_file():
        raise TinyKWSError(f"{folder}: no stream.c; export the model with `tinykws export -f c`")
    gcc = _need(host_compiler(), "gcc")
    out = folder / "kws_stream"
    library = sorted(p.name for p in folder.glob("*.c") if p.name not in NOT_LIBRARY)
    sources = ["kws_stream.c", "stream.c", *library]
    _run([gcc, *HOST_FLAGS, *optimization.split(), "-o", str(out), *sources, "-lm"], folder)
    return out


def run_kws_stream(binary, wav, threshold: float | None = None, trace=None, profile=False):
    """Run kws_stream on a WAV file.

    Returns:
        (events, stderr text).
    """
    command = [str(binary), str(wav)]
    if threshold is not None:
        command += ["--threshold", repr(float(threshold))]
    if trace is not None:
        command += ["--trace", str(trace)]
    if profile:
        command.append("--profile")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise TinyKWSError(result.stderr.strip() or f"{binary}: exit status {result.returncode}")
    events = []
    for line in result.stdout.splitlines():
        time_s, label, score = line.split("\t")
        events.append(Event(float(time_s), label, float(score)))
    return events, result.stderr


@dataclass
class Trace:
    """Every hop of a kws_stream run: times (samples), int8 inputs (H, frames, bins), int8
    scores (H, classes)."""

    times: np.ndarray
    inputs: np.ndarray
    scores: np.ndarray


def read_trace(path, frames: int, bins: int, classes: int) -> Trace:
    """Read the file kws_stream --trace wrote."""
    record = np.dtype([("time", "<i8"), ("input", "i1", (frames, bins)), ("scores", "i1", classes)])
    data = np.fromfile(path, dtype=record)
    return Trace(data["time"], data["input"], data["scores"])
