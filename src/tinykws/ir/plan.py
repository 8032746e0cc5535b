"""Plan the activation arena of a Graph: one block of RAM holding every live tensor.

Each non-constant tensor lives from the op that writes it (graph inputs: from the start) to the
last op that reads it (graph outputs: to the end). Tensors whose lifetimes overlap must not
share bytes; the others may. An op's output lives from that op on and each of its inputs until
at least that op, so the output never shares bytes with anything the op reads: every input of
a CONCATENATION stays whole until it runs, and no kernel has to work in place. `plan_arena`
places the buffers greedily, largest first, each at the lowest aligned offset that collides
with no placed buffer alive at the same time: the strategy of TFLite Micro's
`GreedyMemoryPlanner`. Ops that need working memory (im2col rows of an optimised convolution,
the int32 sums of MEAN) get a scratch buffer that lives only during that op, planned in the
same arena. A RESHAPE whose input is read by nothing after it writes its output in place: both
names get the same offset (`ArenaPlan.aliases`), so generated code needs no copy.

Scratch sizes (`cmsis_scratch_bytes`, the default) follow CMSIS-NN's `*_get_buffer_size` for
the s8 kernels TFLite Micro uses on Cortex-M:
- CONV_2D, not 1x1: 2 x C_in x KH x KW x sizeof(int16) (two im2col columns in int16);
- DEPTHWISE_CONV_2D: C_in x KH x KW x sizeof(int16);
- MEAN: 4 bytes (int32 sum) per output value;
- others: none. Pass `scratch=no_scratch` to plan tensors alone.

Example:
    >>> import numpy as np
    >>> from tinykws.ir import GraphBuilder, QuantParams, Weights
    >>> b = GraphBuilder()
    >>> x = b.input("x", (1, 8, 8, 4), QuantParams(0.1, 0))
    >>> w = Weights(np.ones((4, 1, 1, 4), np.int8), scales=(0.01,) * 4)
    >>> y = b.conv2d(x, w, QuantParams(0.1, 0))
    >>> z = b.conv2d(y, w, QuantParams(0.1, 0))
    >>> plan = plan_arena(b.build([z]))
    >>> plan.size_bytes, plan.offsets[x] == plan.offsets[z]   # x is dead when z is written
    (512, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinykws.ir.graph import DTYPES, Graph, Op

DEFAULT_ALIGNMENT = 16  # bytes, as TFLite Micro aligns arena buffers
INT16_BYTES, INT32_BYTES = 2, 4


@dataclass(frozen=True)
class Buffer:
    """One block to place: `name` (a tensor, or "scratch:<op index>"), bytes, first and last op
    index during which it must hold its value (inclusive; -1 = before the first op)."""

    name: str
    size_bytes: int
    first: int
    last: int


@dataclass
class ArenaPlan:
    """Where each buffer lives in the arena.

    Attributes:
        offsets: buffer name -> byte offset (tensor names; scratch buffers as "scratch:<i>").
        buffers: the planned buffers (sizes and lifetimes).
        size_bytes: the arena size: the end of the highest buffer.
        alignment: every offset is a multiple of it.
        scratch: op index -> scratch bytes, for ops that need any.
        aliases: RESHAPE output -> the tensor whose bytes it reuses (same offset).
    """

    offsets: dict[str, int]
    buffers: list[Buffer]
    size_bytes: int
    alignment: int
    scratch: dict[int, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def scratch_bytes(self) -> int:
        """The largest scratch buffer (only one op runs at a time)."""
        return max(self.scratch.values(), default=0)

    def tensor_bytes(self, name: str) -> int:
        name = self.aliases.get(name, name)
        return next(b.size_bytes for b in self.buffers if b.name == name)

    def live_bytes(self, op_index: int) -> int:
        """Bytes of the buffers alive while op `op_index` runs (unaligned sum)."""
        return sum(b.size_bytes for b in self.buffers if b.first <= op_index <= b.last)


def tensor_bytes(graph: Graph, name: str) -> int:
    """Bytes of one tensor at batch 1 (its shape as the graph says, dtype size)."""
    tensor = graph.tensor(name)
    return int(np.prod(tensor.shape)) * np.dtype(DTYPES[tensor.dtype]).itemsize


def cmsis_scratch_bytes(graph: Graph, op: Op) -> int:
    """Working memory of `op` in CMSIS-NN's s8 kernels (see the module docstring)."""
    if op.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "MEAN"):
        return 0
    x = graph.tensor(op.inputs[0])
    if op.type == "MEAN":
        return INT32_BYTES * int(np.prod(graph.tensor(op.outputs[0]).shape))
    if x.dtype != "int8":
        return 0
    kh, kw = graph.tensor(op.inputs[1]).shape[1:3]
    if op.type == "DEPTHWISE_CONV_2D":
        return x.shape[3] * kh * kw * INT16_BYTES
    return 0 if (kh, kw) == (1, 1) else 2 * x.shape[3] * kh * kw * INT16_BYTES


def no_scratch(graph: Graph, op: Op) -> int:
    """No working memory (plan the tensors alone)."""
    return 0


def reshape_aliases(graph: Graph) -> dict[str, str]:
    """RESHAPE outputs that can reuse their input's bytes: the input is not read afterwards and
    is not a graph output. Maps each such output to the root tensor owning the bytes."""
    last_read: dict[str, int] = {}
    for index, op in enumerate(graph.ops):
        for name in op.inputs:
            last_read[name] = index
    aliases: dict[str, str] = {}
    for index, op in enumerate(graph.ops):
        source = op.inputs[0]
        if op.type == "RESHAPE" and last_read.get(source) == index and source not in graph.outputs:
            aliases[op.outputs[0]] = aliases.get(source, source)
    return aliases


def buffers_of(
    graph: Graph, scratch: Callable[[Graph, Op], int], aliases: dict[str, str] | None = None
) -> list[Buffer]:
    """Every activation tensor with its lifetime (an alias extends its root's), and the scratch
    buffer of each op needing one."""
    aliases = aliases or {}
    end = len(graph.ops)
    first = {name: -1 for name in graph.inputs}
    last = {name: -1 for name in graph.inputs}
    for index, op in enumerate(graph.ops):
        for name in op.inputs:
            name = aliases.get(name, name)
            if name in last:
                last[name] = max(last[name], index)
        out = op.outputs[0]
        if out in aliases:
            last[aliases[out]] = max(last[aliases[out]], index)
        else:
            first[out] = last[out] = index
    for name in graph.outputs:
        last[aliases.get(name, name)] = end
    buffers = [Buffer(n, tensor_bytes(graph, n), first[n], last[n]) for n in first]
    for index, op in enumerate(graph.ops):
        size = int(scratch(graph, op))
        if size > 0:
            buffers.append(Buffer(f"scratch:{index}", size, index, index))
    return buffers


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def place(buffers: list[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> dict[str, int]:
    """Greedy placement: largest first (ties: earlier first, then name), lowest free offset."""
    order = sorted(buffers, key=lambda b: (-b.size_bytes, b.first, b.name))
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[str, int] = {}
    for buffer in order:
        conflicts = sorted(
            (
                (offset, other)
                for offset, other in placed
                if other.first <= buffer.last and buffer.first <= other.last
            ),
            key=lambda pair: pair[0],
        )
        offset = 0
        for other_offset, other in conflicts:
            if offset + buffer.size_bytes <= other_offset:
                break  # fits in the gap below this buffer
            offset = max(offset, _align(other_offset + other.size_bytes, alignment))
        offsets[buffer.name] = offset
        placed.append((offset, buffer))
    return offsets


def plan_arena(
    graph: Graph,
    *,
    scratch: Callable[[Graph, Op], int] = cmsis_scratch_bytes,
    alignment: int = DEFAULT_ALIGNMENT,
    alias_reshape: bool = True,
) -> ArenaPlan:
    """Place every activation tensor (and scratch buffer) of `graph` in one arena.

    Args:
        graph: a valid Graph (int8 or float32); shapes at batch 1.
        scratch: bytes of working memory an op needs, given (graph, op).
        alignment: byte alignment of every offset (16 as TFLite Micro).
        alias_reshape: let RESHAPE write in place where its input dies (see `reshape_aliases`).

    Returns:
        An `ArenaPlan`; no two buffers alive at the same time overlap.
    """
    aliases = reshape_aliases(graph) if alias_reshape else {}
    buffers = buffers_of(graph, scratch, aliases)
    offsets = place(buffers, alignment)
    offsets.update({name: offsets[root] for name, root in aliases.items()})
    size = max((offsets[b.name] + b.size_bytes for b in buffers), default=0)
    scratch_sizes = {
        int(b.name.split(":")[1]): b.size_bytes for b in buffers if b.name.startswith("scratch:")
    }
    return ArenaPlan(offsets, buffers, size, alignment, scratch_sizes, aliases)


def io_estimate_bytes(graph: Graph) -> list[int]:
    """Per op, its input activations plus its output (bytes): the simple per-layer RAM estimate
    (the peak is the largest; it ignores tensors kept alive for later ops, e.g. residuals)."""
    rows = []
    for op in graph.ops:
        names = [n for n in op.inputs if not graph.tensor(n).is_constant] + op.outputs
        rows.append(sum(tensor_bytes(graph, n) for n in names))
    return rows
