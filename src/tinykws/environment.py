"""What a bug report needs: package versions, Python, CPU and accelerator.

Versions come from the installed distributions' metadata, so nothing heavy is imported except
torch, and only to ask about CUDA.

Example:
    >>> dict(environment_rows())["tinykws"]  # doctest: +SKIP
    '0.1.0'
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# Distribution names as pip knows them.
PACKAGES = (
    "tinykws",
    "torch",
    "numpy",
    "scipy",
    "soundfile",
    "safetensors",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "torch-pruning",
    "tflite",
    "rich",
    "matplotlib",
)


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_counts() -> str:
    """'N usable of M' logical CPUs (usable = this process's affinity mask)."""
    total = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"{usable} usable of {total}"


def accelerator() -> str:
    """The CUDA devices torch sees, or why there are none."""
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    if not torch.cuda.is_available():
        return f"none (torch {torch.__version__} sees no CUDA device)"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda})"


def environment_rows() -> list[tuple[str, str]]:
    """(name, value) pairs: packages, Python, platform, CPU, accelerator."""
    rows = [(name, package_version(name)) for name in PACKAGES]
    rows += [
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("platform", platform.platform()),
        ("cpu", cpu_model()),
        ("cpu count", cpu_counts()),
        ("accelerator", accelerator()),
    ]
    return rows
