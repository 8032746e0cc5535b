"""tk_config.h: which paths of the convolution kernels a generated model uses.

The kernels of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED have paths for packed and sparse
weights, for filter shapes and for requantization shifts that a given network may never take.
A path reached from a runtime test stays in the binary (the linker cannot know it is never
taken), so the generator, which knows every layer, writes a header that turns the unused paths
off (`#define TK_... 0`); kernels_internal.h turns on every path the header does not name.
Compiling with `-DTK_ALL_PATHS` ignores the header: every path is built, results unchanged.

Flags (1: some layer needs the path):
- TK_CONV_PACKED: a CONV_2D or FULLY_CONNECTED with 4-bit, 2-bit or sparse weights;
- TK_CONV_TAIL: a CONV_2D given scratch for one window only (it gathers more at the end of its
  output);
- TK_CONV_GENERIC: a CONV_2D runs its generic kernel (no scratch for its windows);
- TK_DW_PACKED: a DEPTHWISE_CONV_2D with 4-bit or 2-bit weights;
- TK_DW_3X3: a depthwise layer run in blocks: a 3 x 3 filter, dilation 1, an input of at
  least 3 x 3, windows overhanging it by at most 2 pixels (inline assembly on a Cortex-M);
- TK_DW_WINDOW: a depthwise fast path window by window, with bounds checks (the others);
- TK_DW_GENERIC: a depthwise layer runs its generic kernel for some channels (depth
  multiplier above 1, more than 25 taps, or channels left over after groups of four);
- TK_DW_FULL: a depthwise layer whose outputs are clamped to int8's range only, all its shifts
  negative (one saturation);
- TK_DW_CLAMP: a depthwise layer with a narrower clamp (a fused activation) or a shift >= 0;
- TK_RQ_ANY_SHIFT: a requantization shift >= 0 in one of these layers (the usual shifts are
  negative, a cheaper path).

Example:
    >>> text = kernel_config([])
    >>> "#define TK_CONV_PACKED 0" in text and "#define TK_RQ_ANY_SHIFT 0" in text
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinykws.ir.graph import Graph

FLAGS = (
    "TK_CONV_PACKED",
    "TK_CONV_TAIL",
    "TK_CONV_GENERIC",
    "TK_DW_PACKED",
    "TK_DW_3X3",
    "TK_DW_WINDOW",
    "TK_DW_GENERIC",
    "TK_DW_FULL",
    "TK_DW_CLAMP",
    "TK_RQ_ANY_SHIFT",
)


def layer_flags(graph: Graph, record: dict[str, Any]) -> set[str]:
    """The flags one layer needs; `record` is its entry in export.json's "layers"."""
    op = graph.ops[record["op"]]
    flags: set[str] = set()
    packed = record["storage_bits"] != 8 or record["encoding"] == "sparse"
    if np.any(np.asarray(op.params["shift"]) >= 0):
        flags.add("TK_RQ_ANY_SHIFT")
    if op.type != "DEPTHWISE_CONV_2D":
        if packed:
            flags.add("TK_CONV_PACKED")
        if record.get("windows") == 1:
            flags.add("TK_CONV_TAIL")
        if record.get("kernel") == "generic":
            flags.add("TK_CONV_GENERIC")
        return flags
    c_out = graph.tensor(op.inputs[1]).shape[3]
    if packed:
        flags.add("TK_DW_PACKED")
    if record.get("kernel") == "generic" or c_out % 4:
        flags.add("TK_DW_GENERIC")
    if record.get("kernel") == "fast":
        flags.add("TK_DW_3X3" if _in_blocks(graph, op) else "TK_DW_WINDOW")
    full = tuple(op.params["activation_range"]) == (-128, 127)
    flags.add("TK_DW_FULL" if full and "TK_RQ_ANY_SHIFT" not in flags else "TK_DW_CLAMP")
    return flags


def _in_blocks(graph: Graph, op) -> bool:
    """Whether a depthwise layer runs in blocks (kernels_depthwise.c runs_3x3): a 3 x 3 filter,
    dilation 1, an input of at least 3 x 3, windows overhanging it by at most 2 pixels."""
    (h, w), (oh, ow) = (graph.tensor(n).shape[1:3] for n in (op.inputs[0], op.outputs[0]))
    kh, kw = graph.tensor(op.inputs[1]).shape[1:3]
    (sh, sw), (top, _, left, _) = op.options["stride"], op.options["pads"]
    if (kh, kw) != (3, 3) or tuple(op.options.get("dilation", (1, 1))) != (1, 1) or h < 3 or w < 3:
        return False
    return all(
        -2 <= _overhang(o * stride - pad, k, size) <= 2
        for stride, pad, k, size, n in ((sh, top, kh, h, oh), (sw, left, kw, w, ow))
        for o in range(n)
    )


def _overhang(i: int, k: int, size: int) -> int:
    return i if i < 0 else i - (size - k) if i > size - k else 0


def kernel_config(layers: list[dict[str, Any]], graph: Graph | None = None) -> str:
    """The text of tk_config.h for a model whose weighted layers are `layers` (export.json)."""
    used: set[str] = set()
    for record in layers:
        used |= layer_flags(graph, record)
    defines = "\n".join(f"#define {flag} {int(flag in used)}" for flag in FLAGS)
    return (
        "/* Kernel paths this model uses (generated; see kernels_internal.h). */\n"
        "#ifndef TINYKWS_TK_CONFIG_H\n#define TINYKWS_TK_CONFIG_H\n\n"
        f"#ifndef TK_ALL_PATHS\n{defines}\n#endif\n\n#endif /* TINYKWS_TK_CONFIG_H */\n"
    )


__all__ = ["FLAGS", "kernel_config", "layer_flags"]
