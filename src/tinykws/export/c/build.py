"""Compile generated C: a host shared library (tests, benchmarks), the demo, a Cortex-M4 image.

- `build_shared_library(src_dir)`: model.c + kernels.c (+ frontend.c) as a shared library for
  `CModel` (ctypes), with gcc `-std=c99 -Wall -Wextra -Werror -O2` (or -O3 for benchmarks).
- `build_demo(src_dir)`: `kws_demo` from main.c with the same flags.
- `build_cortex_m4(src_dir)`: the library cross-compiled with Debian's arm-none-eabi-gcc
  (`-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os`, one section per function
  and object) and linked with `-nostartfiles -Wl,--gc-sections` around a two-line entry that
  calls `tinykws_invoke` (and the front end with `frontend=True`) on caller-provided buffers.
  The image holds exactly what firmware would link: kernels the graph does not use are dropped,
  newlib's memcpy or logf come in when called. `arm-none-eabi-size -A` (SysV format; the
  Berkeley format folds .rodata into text) gives .text, .rodata, .data and .bss: flash is
  .text + .rodata + .data (initial values live in flash), static RAM is .data + .bss. Stack
  and the caller's feature/score buffers are not included.

Example:
    >>> parse_size_sysv("x.elf  :\\nsection size addr\\n.text 120 0\\n.rodata 8 0\\n.bss 64 0\\n")
    SectionSizes(text=120, rodata=8, data=0, bss=64)
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError

HOST_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
CORTEX_M4_FLAGS = (
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfloat-abi=hard",
    "-mfpu=fpv4-sp-d16",
    "-Os",
    "-ffunction-sections",
    "-fdata-sections",
    "-ffp-contract=off",
)
ARM_GCC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
ENTRY = """#include "model.h"
{frontend_include}
void tinykws_entry(const {sample_type} *input, int8_t *features, int8_t *scores);
void tinykws_entry(const {sample_type} *input, int8_t *features, int8_t *scores)
{{
    {frontend_call}tinykws_invoke(features, scores);
}}
"""


@dataclass(frozen=True)
class SectionSizes:
    """Bytes of the sections of a linked image (arm-none-eabi-size -A)."""

    text: int
    rodata: int
    data: int
    bss: int

    @property
    def flash_bytes(self) -> int:
        """.text + .rodata + .data (initial values of .data are stored in flash)."""
        return self.text + self.rodata + self.data

    @property
    def ram_bytes(self) -> int:
        """Static RAM: .data + .bss."""
        return self.data + self.bss


def cortex_m4_flags(optimization: str = "-Os") -> list[str]:
    """`CORTEX_M4_FLAGS` with the optimisation level replaced by `optimization` ("-O2", ...)."""
    return [f for f in CORTEX_M4_FLAGS if not f.startswith("-O")] + optimization.split()


def host_compiler() -> str | None:
    """Path of gcc (or cc), or None."""
    return shutil.which("gcc") or shutil.which("cc")


def arm_compiler() -> str | None:
    """Path of arm-none-eabi-gcc, or None (Debian package gcc-arm-none-eabi)."""
    return shutil.which(ARM_GCC)


def _run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise TinyKWSError(f"{cwd}: `{' '.join(command[:2])} ...` failed: {' | '.join(lines[:6])}")
    return result.stdout


def _sources(src_dir: Path, frontend: bool) -> list[str]:
    kernels = ["kernels.c", "kernels_conv.c", "kernels_depthwise.c"]
    names = ["model.c", *kernels] + (["frontend.c"] if frontend else [])
    missing = [n for n in names if not (src_dir / n).is_file()]
    if missing:
        raise TinyKWSError(f"{src_dir}: no {missing[0]}; export the model with --format c first")
    return names


def _need(compiler: str | None, what: str) -> str:
    if compiler is None:
        raise TinyKWSError(f"{what} not found; install it (Debian: apt-get install {what})")
    return compiler


def build_shared_library(
    src_dir, out_path=None, *, optimization: str = "-O2", frontend: bool | None = None
) -> Path:
    """Compile the generated library into a shared object for `CModel`; returns its path.

    `optimization` holds the optimisation flags ("-O2", "-O3 -march=native", ...).
    """
    src_dir = Path(src_dir)
    gcc = _need(host_compiler(), "gcc")
    frontend = (src_dir / "frontend.c").is_file() if frontend is None else frontend
    out_path = Path(out_path) if out_path else src_dir / "libtinykws.so"
    command = [gcc, *HOST_FLAGS, *optimization.split(), "-fPIC", "-shared", "-o", str(out_path)]
    _run(command + _sources(src_dir, frontend) + ["-lm"], src_dir)
    return out_path


def build_demo(src_dir, *, optimization: str = "-O2") -> Path:
    """Compile `kws_demo` (main.c + library) with the host compiler; returns its path."""
    src_dir = Path(src_dir)
    gcc = _need(host_compiler(), "gcc")
    out = src_dir / "kws_demo"
    _run(
        [
            gcc,
            *HOST_FLAGS,
            *optimization.split(),
            "-o",
            str(out),
            "main.c",
            *_sources(src_dir, True),
            "-lm",
        ],
        src_dir,
    )
    return out


def build_cortex_m4(src_dir, *, frontend: bool = False) -> SectionSizes:
    """Cross-compile and link the library for a Cortex-M4F; returns the image's section sizes.

    Args:
        src_dir: a folder written by `export_c`.
        frontend: include the front end (frontend.c, newlib's libm) besides the network.

    Raises:
        TinyKWSError: arm-none-eabi-gcc is missing or the build fails.
    """
    src_dir = Path(src_dir).resolve()  # the build runs in a temporary folder
    gcc = _need(arm_compiler(), "gcc-arm-none-eabi")
    sources = [str(src_dir / n) for n in _sources(src_dir, frontend)]
    entry = ENTRY.format(
        frontend_include='#include "frontend.h"' if frontend else "",
        sample_type="float" if frontend else "void",
        frontend_call="tinykws_frontend_input(input, features);\n    "
        if frontend
        else "(void)input;\n    ",
    )
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        (build / "entry.c").write_text(entry)
        elf = build / "tinykws.elf"
        command = [
            gcc,
            *CORTEX_M4_FLAGS,
            f"-I{src_dir}",
            "-nostartfiles",
            "-Wl,--gc-sections",
            "-Wl,-e,tinykws_entry",
            "--specs=nano.specs",
            "-o",
            str(elf),
            str(build / "entry.c"),
            *sources,
            "-lm",
        ]
        _run(command, build)
        return parse_size_sysv(_run([shutil.which(ARM_SIZE) or ARM_SIZE, "-A", str(elf)], build))


def parse_size_sysv(text: str) -> SectionSizes:
    """Section sizes from `size -A` output; .rodata*, .data*, .bss* subsections are summed,
    and read-only sections that firmware keeps in flash (.ARM.exidx, .init_array, ...) count
    as .rodata."""
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    flash_extra = (".ARM.exidx", ".ARM.extab", ".init_array", ".fini_array", ".init", ".fini")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(".") or not parts[1].isdigit():
            continue
        name, size = parts[0], int(parts[1])
        for key in ("text", "rodata", "data", "bss"):
            if name == f".{key}" or name.startswith(f".{key}."):
                sizes[key] += size
                break
        else:
            if name.startswith(flash_extra):
                sizes["rodata"] += size
    return SectionSizes(**sizes)


class CModel:
    """The generated library loaded with ctypes: run the network and the front end from Python.

    Example (needs gcc):
        model = CModel(build_shared_library(folder))
        scores = model.invoke(features_int8)     # (N, *input shape) -> (N, output size)
    """

    def __init__(self, library_path) -> None:
        self.lib = ctypes.CDLL(str(library_path))
        self.lib.tinykws_invoke.restype = ctypes.c_int
        self.input_size = self._int_symbol("tinykws_input_size")
        self.output_size = self._int_symbol("tinykws_output_size")

    def _int_symbol(self, name: str) -> int:
        return int(ctypes.c_int32.in_dll(self.lib, name).value)

    def invoke(self, features: np.ndarray) -> np.ndarray:
        """int8 scores (N, output size) of int8 features (N, ...) (N runs of tinykws_invoke)."""
        x = np.ascontiguousarray(features, np.int8).reshape(len(features), -1)
        if x.shape[1] != self.input_size:
            raise TinyKWSError(
                f"features have {x.shape[1]} values; the model takes {self.input_size}"
            )
        out = np.zeros((len(x), self.output_size), np.int8)
        for row, y in zip(x, out):
            status = self.lib.tinykws_invoke(
                row.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p)
            )
            if status != 0:
                raise TinyKWSError(f"tinykws_invoke returned {status}")
        return out

    def frontend_features(self, samples: np.ndarray) -> np.ndarray:
        """Float32 features (frames, bins) of one clip (float32 samples) by frontend.c."""
        return self._frontend("tinykws_frontend_features", samples, np.float32)

    def frontend_input(self, samples: np.ndarray) -> np.ndarray:
        """The quantized network input (frames, bins) int8 of one clip by frontend.c."""
        return self._frontend("tinykws_frontend_input", samples, np.int8)

    def _frontend(self, function: str, samples: np.ndarray, dtype) -> np.ndarray:
        frames = self._int_symbol("tinykws_feature_frames")
        bins = self._int_symbol("tinykws_feature_bins")
        x = np.ascontiguousarray(samples, np.float32)
        if x.shape != (self._int_symbol("tinykws_clip_samples"),):
            raise TinyKWSError(
                f"the front end takes {self._int_symbol('tinykws_clip_samples')} "
                f"samples; got {x.shape}"
            )
        out = np.zeros((frames, bins), dtype)
        status = getattr(self.lib, function)(
            x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p)
        )
        if status != 0:
            raise TinyKWSError(f"{function} returned {status}")
        return out
