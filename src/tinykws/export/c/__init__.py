"""Self-contained C for microcontrollers: the network, its kernels, its front end, a demo.

`export_c(graph, out_dir, ...)` writes into `out_dir`:

- model.h / model.c: weights as `const` arrays (int8; 3-4-bit weights packed two per byte,
  2-bit four per byte; magnitude-pruned layers optionally sparse), per-channel multipliers and
  shifts and LOGISTIC lookup tables from the graph, a static arena laid out by
  `tinykws.ir.plan.plan_arena`, and
  `int tinykws_invoke(const int8_t *features, int8_t *scores)`;
- kernels.h, kernels.c, kernels_conv.c, kernels_depthwise.c: the integer kernels, equal to
  `tinykws.ir.interpret` bit for bit;
- tk_config.h: the kernel paths the model uses, the others compiled out
  (`tinykws.export.c.kconfig`);
- frontend.h / frontend.c: the model's log-mel / MFCC / bark front end in float32 with its
  normalisation and the input quantization (only when a front-end config is known);
- main.c: `kws_demo FILE.wav`, printing "label score" lines, best first;
- Makefile: `make` builds kws_demo, `make cortex-m4` cross-builds the library;
- export.json: what was generated (weight bytes per layer, sparse savings, arena bytes);
- sizes.json: measured Cortex-M4 section sizes (`tinykws.export.c.build.build_cortex_m4`) of
  the network ("text", "rodata", "data", "bss") and of network + front end, when
  arm-none-eabi-gcc is installed (`cortex_m4="auto"`); `tinykws metrics` and `tinykws check`
  read it;
- mcu.json: instructions per inference (front end + network, and per op) measured on an
  emulated Cortex-M4 (`tinykws.export.c.mcu.emulate_cortex_m4`, QEMU mps2-an386) on a seeded
  noise clip (or seeded random features without a front end), the scores checked against the
  integer interpreter (`emulate="auto"`: when the size measurement runs and qemu-system-arm is
  installed; a failing emulator then only logs a warning).

C99, no dynamic allocation, nothing beyond libc (and libm for the front end). Every file is
generated in memory first, then each is written atomically: a graph the backend cannot handle
leaves the folder untouched. `tinykws.export.c.build` compiles the folder (host library, demo,
Cortex-M4 image with its section sizes).

Example:
    >>> import tempfile
    >>> from tinykws.ir import GraphBuilder, QuantParams
    >>> b = GraphBuilder("demo")
    >>> x = b.input("x", (1, 4), QuantParams(0.1, 0))
    >>> folder = export_c(b.build([b.softmax(x)]), tempfile.mkdtemp(), cortex_m4="off")
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['Makefile', 'export.json', 'kernels.c', 'kernels.h', 'kernels_conv.c',
     'kernels_depthwise.c', 'kernels_internal.h', 'model.c', 'model.h', 'tk_config.h']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tinykws.config import check_choice, to_dict
from tinykws.errors import TinyKWSError
from tinykws.export.c.build import CORTEX_M4_FLAGS, arm_compiler, build_cortex_m4
from tinykws.export.c.frontend import frontend_sources, template
from tinykws.export.c.generate import int8_graph, model_sources
from tinykws.export.c.mcu import MCU_FILE, can_emulate, default_inputs, emulate_cortex_m4
from tinykws.export.c.sparse import SPARSE_MODES
from tinykws.export.c.stream import stream_config_of, stream_sources
from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
from tinykws.io import write_json, write_text
from tinykws.ir.graph import Graph
from tinykws.log import logger

__all__ = ["CORTEX_M4_MODES", "SIZES_FILE", "SPARSE_MODES", "export_c"]

CORTEX_M4_MODES = ("auto", "on", "off")
SIZES_FILE = "sizes.json"  # read by tinykws.measure.metrics
OPTIONAL_FILES = {"frontend.h", "frontend.c", "main.c", "stream.h", "stream.c", "kws_stream.c"}


def export_c(
    graph: Graph,
    out_dir,
    *,
    frontend_config=None,
    normalization=None,
    labels=None,
    sparse: str = "auto",
    cortex_m4: str = "auto",
    emulate: str = "auto",
) -> Path:
    """Write the C sources of `graph` (and its front end) into `out_dir`.

    Args:
        graph: a validated int8 Graph (a float QUANTIZE in and DEQUANTIZE out are fine).
        out_dir: destination folder (created; files of the same names are replaced, and
            generated files this export does not write, e.g. an old frontend.c, removed).
        frontend_config: a `FrontEndConfig`, preset name or dict (default: the graph's
            metadata "frontend"); None and no metadata: no front end and no demo.
        normalization: a `Normalization` or {"mean": [...], "std": [...]} (default: the
            graph's metadata "normalization"; none means mean 0, std 1).
        labels: class names in output order (default: the graph's metadata "labels").
        sparse: "auto" (sparse weights where smaller), "off", or "always" (testing).
        cortex_m4: "auto" (measure a Cortex-M4 build into sizes.json when arm-none-eabi-gcc is
            installed), "on" (required) or "off".
        emulate: "auto" (write mcu.json when `cortex_m4` is not "off" and qemu-system-arm is
            installed; an emulator failure is logged, the export still succeeds), "on"
            (required: a failure is an error) or "off".

    Returns:
        The folder.

    Raises:
        TinyKWSError: an op the backend lacks (named), float ops inside the graph, labels,
            front end or normalisation that do not fit the graph.
    """
    out_dir = Path(out_dir)
    check_choice("cortex_m4", cortex_m4, CORTEX_M4_MODES)
    check_choice("emulate", emulate, CORTEX_M4_MODES)
    if out_dir.exists() and not out_dir.is_dir():
        raise TinyKWSError(f"{out_dir}: exists and is not a folder; choose another --out")
    meta = graph.metadata
    config = meta.get("frontend") if frontend_config is None else frontend_config
    norm = meta.get("normalization") if normalization is None else normalization
    labels = meta.get("labels") if labels is None else labels
    files, report = _generate(graph, config, norm, labels, sparse)
    if config is None:
        logger.warning(
            f"{out_dir}: no front-end config; writing the network without frontend.c and kws_demo"
        )
    _write_all(out_dir, files)
    logger.info(_summary(out_dir, report))
    _measure_cortex_m4(out_dir, cortex_m4, with_frontend=config is not None)
    _measure_emulated(out_dir, graph, emulate, sizes_measured=cortex_m4 != "off")
    return out_dir


def _measure_emulated(out_dir: Path, graph: Graph, mode: str, sizes_measured: bool) -> None:
    """Write mcu.json from an emulator run (or remove a stale one when not measuring); "auto"
    runs along with the size measurement, when the tools are installed."""
    path = out_dir / MCU_FILE
    path.unlink(missing_ok=True)
    if mode == "off" or (mode == "auto" and not (sizes_measured and can_emulate())):
        return
    try:
        run = emulate_cortex_m4(out_dir, graph=graph, **default_inputs(out_dir))
    except TinyKWSError as exc:
        if mode == "on":
            raise
        logger.warning(f"{out_dir}: no Cortex-M4 instruction count: {exc}")
        return
    write_json(path, run.to_dict())
    logger.info(
        f"{out_dir}: Cortex-M4 (emulated, {run.optimization}): {run.instructions:,} "
        f"instructions per inference ({run.frontend_instructions:,} in the front end)"
    )


def _measure_cortex_m4(out_dir: Path, mode: str, with_frontend: bool) -> None:
    """Write sizes.json from a Cortex-M4 build (or remove a stale one when not measuring)."""
    path = out_dir / SIZES_FILE
    if mode == "off" or (mode == "auto" and arm_compiler() is None):
        path.unlink(missing_ok=True)
        return
    network = build_cortex_m4(out_dir)
    sizes = {"target": "cortex-m4", "flags": list(CORTEX_M4_FLAGS), **_sizes_dict(network)}
    if with_frontend:
        sizes["with_frontend"] = _sizes_dict(build_cortex_m4(out_dir, frontend=True))
    write_json(path, sizes)
    logger.info(
        f"{out_dir}: Cortex-M4 network: flash {network.flash_bytes} bytes (.text "
        f"{network.text} + .rodata {network.rodata} + .data {network.data}), static RAM "
        f"{network.ram_bytes} bytes"
    )


def _sizes_dict(sizes) -> dict[str, int]:
    return {
        "text": sizes.text,
        "rodata": sizes.rodata,
        "data": sizes.data,
        "bss": sizes.bss,
        "flash_bytes": sizes.flash_bytes,
        "ram_bytes": sizes.ram_bytes,
    }


def _generate(graph: Graph, config, norm, labels, sparse: str):
    """(file name -> text, report) of everything export_c writes."""
    model = model_sources(graph, labels=labels, sparse=sparse)
    files = dict(model.files)
    for name in (
        "kernels.h",
        "kernels_internal.h",
        "kernels.c",
        "kernels_conv.c",
        "kernels_depthwise.c",
    ):
        files[name] = template(name)
    report: dict[str, Any] = dict(model.report)
    if config is not None:
        files.update(_frontend_files(graph, config, norm))
        files["main.c"] = template("main.c")
        files.update(_stream_files(graph, config, labels))
        report["frontend"] = _config_dict(config)
    files["Makefile"] = _makefile(config is not None, with_stream="stream.c" in files)
    files["export.json"] = json.dumps(report, indent=2) + "\n"
    return files, report


def _frontend_files(graph: Graph, config, norm) -> dict[str, str]:
    frontend = FrontEnd(frontend_config(config))
    int8 = int8_graph(graph)
    x = int8.tensor(int8.inputs[0])
    frames, bins = frontend.output_shape
    fits = int(np.prod(x.shape)) == frames * bins and (
        len(x.shape) != 4 or tuple(x.shape[1:3]) == (frames, bins)
    )
    if not fits:
        raise TinyKWSError(
            f"frontend: it makes ({frames}, {bins}) features but graph {graph.name} takes "
            f"{tuple(x.shape)}; export with the model's own front-end config"
        )
    if isinstance(norm, dict):
        norm = Normalization.from_dict(norm)
    return frontend_sources(
        frontend, norm, input_scale=x.scale[0], input_zero_point=x.zero_point[0]
    )


def _config_dict(config) -> dict[str, Any]:
    return to_dict(frontend_config(config))


def _stream_files(graph: Graph, config, labels) -> dict[str, str]:
    """stream.h / stream.c / kws_stream.c (none for a resizing front end, which cannot stream)."""

    config = frontend_config(config)
    if config.resize is not None:
        return {}
    labels = labels or [f"class{i}" for i in range(graph.tensor(graph.outputs[0]).shape[-1])]
    return stream_sources(config, labels, stream_config_of(graph.metadata))


def _makefile(with_frontend: bool, with_stream: bool = False) -> str:
    kernels = "kernels.c kernels_conv.c kernels_depthwise.c"
    sources = f"model.c {kernels}" + (" frontend.c" if with_frontend else "")
    programs = "kws_demo kws_stream" if with_stream else "kws_demo"
    return (
        template("Makefile")
        .replace("@LIB_SOURCES@", sources)
        .replace("@ALL@", programs if with_frontend else "libtinykws.a")
    )


def _write_all(out_dir: Path, files: dict[str, str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        write_text(out_dir / name, files[name])
    for name in OPTIONAL_FILES - set(files):  # left by an earlier export with a front end
        (out_dir / name).unlink(missing_ok=True)


def _summary(out_dir: Path, report: dict[str, Any]) -> str:
    text = (
        f"{out_dir}: C sources written: {report['weight_bytes']} weight bytes, "
        f"{report['bias_bytes']} bias bytes, arena {report['arena_bytes']} bytes"
    )
    if report["sparse_saved_bytes"] > 0:
        text += f"; sparse weights save {report['sparse_saved_bytes']} bytes"
    return text
