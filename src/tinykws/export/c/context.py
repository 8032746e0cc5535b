"""What every op emitter shares: the `EmitContext` it appends C text to, and initializers.

An emitter (`tinykws.export.c.emit.EMITTERS`) reads its op and the arena plan from the context
and appends `static const` definitions to `ctx.constants` (`ctx.struct` writes the kernel's
parameter struct, named after the op: op<index>) and statements to `ctx.calls` (`ctx.call`).

Example:
    >>> dims((1, 49, 40, 8)), four((3, 5))
    ('{1, 49, 40, 8}', '{1, 1, 3, 5}')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinykws.export.c.carray import c_comment, c_string
from tinykws.ir.graph import Graph, Op, Tensor
from tinykws.ir.plan import ArenaPlan


@dataclass
class EmitContext:
    """What the emitters read and append to.

    Attributes:
        graph: the int8 graph being generated.
        plan: its arena plan (buffer offsets).
        sparse: weight encoding mode ("auto", "off", "always").
        constants: C definitions, in order.
        calls: C statements of `tinykws_invoke`, in order.
        layers: one record per weighted layer (name, bits, encoding, bytes), for the report.
        index: the index of the op being emitted.
    """

    graph: Graph
    plan: ArenaPlan
    sparse: str = "auto"
    constants: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    index: int = 0

    def buffer(self, name: str) -> str:
        """C expression of a tensor's place in the arena."""
        return f"arena + {self.plan.offsets[name]}"

    @property
    def symbol(self) -> str:
        return f"op{self.index}"

    def tensors(self, op: Op) -> tuple[list[Tensor], Tensor]:
        return [self.graph.tensors[n] for n in op.inputs], self.graph.tensors[op.outputs[0]]

    def struct(self, ctype: str, fields: dict[str, str]) -> None:
        """Define the op's parameter struct `static const <ctype> op<index>`."""
        body = "\n".join(f"    .{k} = {v}," for k, v in fields.items())
        self.constants.append(f"static const {ctype} {self.symbol} = {{\n{body}\n}};\n")

    def call(self, op: Op, kernel: str, *args: str, indent: str = "    ") -> None:
        """Append `kernel(&op<index>, args...)` (tk_copy_s8 takes no parameter struct)."""
        label = f"{op.type} '{op.name}'" if op.name else op.type
        params = f"&{self.symbol}, " if kernel != "tk_copy_s8" else ""
        self.calls.append(f"{indent}{kernel}({params}{', '.join(args)}); /* {c_comment(label)} */")

    def profile(self, index: int, label: str) -> None:
        """Append the profiling hook `TK_PROFILE_OP(index, "label")`, which marks the end of a
        step of `tinykws_invoke`; it expands to nothing unless TINYKWS_PROFILE is defined (the
        Cortex-M4 emulator image, `tinykws.export.c.mcu`)."""
        self.calls.append(f"    TK_PROFILE_OP({index}, {c_string(label)});")

    def where(self, op: Op) -> str:
        """'graph NAME: op INDEX TYPE 'NAME'', the start of an error message about `op`."""
        return f"graph {self.graph.name}: op {self.index} {op.type}" + (
            f" '{op.name}'" if op.name else ""
        )


def dims(shape) -> str:
    """A tk_dims initializer of a 4-D (NHWC) shape."""
    n, h, w, c = (int(d) for d in shape)
    return f"{{{n}, {h}, {w}, {c}}}"


def four(values) -> str:
    """A 4-entry C initializer from up to 4 values, padded on the left with 1s."""
    values = [int(v) for v in values]
    return "{" + ", ".join(str(v) for v in [1] * (4 - len(values)) + values) + "}"


def int_list(values) -> str:
    """A C initializer listing `values` as they are."""
    return "{" + ", ".join(str(int(v)) for v in values) + "}"
