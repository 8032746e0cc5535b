"""Measured Cortex-M4 instruction counts: the generated C run on an emulated microcontroller.

`emulate_cortex_m4(folder, features)` cross-compiles a C export (model.c, kernels.c, and
frontend.c when samples are given) with the project's Cortex-M4 flags (`CORTEX_M4_FLAGS`, the
optimisation level replaced by `optimization`) and `-DTINYKWS_PROFILE`, links it with its own
start-up code, linker script and harness (templates/mcu/: vector table, reset handler that
copies .data and zeroes .bss, FPU enabled in CPACR, SysTick, semihosting I/O), and runs the
image on QEMU's `mps2-an386` board (a Cortex-M4; 4 MB of code memory at 0x00000000, 4 MB of
SRAM at 0x20000000, hw/arm/mps2.c):

    qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native
                    -icount shift=7 -kernel image.elf

How instructions are counted. With `-icount shift=N` QEMU's virtual clock advances exactly
2**N ns per executed instruction, and SysTick counts the board's 25 MHz processor clock on that
virtual clock: one tick is 40 ns. At shift=0 a tick would be 40 instructions; at shift=7 one
instruction is 128 ns = 3.2 ticks, so a count of ticks / 3.2 rounds to the exact number of
instructions (resolution: one instruction). The harness checks this at start: a loop of known
length (20,000 x `subs; bne`) must read 40,000 instructions (+ the clock read), else the run
fails with the figures. The harness reads the clock before and after each inference and at each
`TK_PROFILE_OP` hook of `tinykws_invoke` (after the input copy, after every op, after the output
copy), and after the front end. A hook costs a few dozen instructions; that cost, measured in
the same image on 64 hooks back to back, is subtracted from each step and from the total, so the
figures are those of an image without hooks to within ~10 instructions per step (a hook's cost
varies a little with the code around it; an op without code reads 0 to 10). The SysTick wrap
handler (every ~5.2 M instructions, ~5 instructions) is counted as part of the work.

Counts are instructions, not cycles: on a Cortex-M4 most instructions take one cycle, loads
two, taken branches two to four, so time = instructions / clock is a lower bound (divide by an
instructions-per-cycle figure below 1 for an estimate).

Use (needs gcc-arm-none-eabi and qemu-system-arm):
    run = emulate_cortex_m4("kws_c", features_int8, graph=graph)
    run.instructions, run.per_op[:2]    # 1_234_567, (("input copy", 130), ("CONV_2D 'conv1'", ...))

Example:
    >>> qemu_command("qemu-system-arm", "image.elf")[1:3], TICKS_PER_INSTRUCTION
    (['-M', 'mps2-an386'], 3.2)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.export.c.build import _need, _run, _sources, arm_compiler, cortex_m4_flags
from tinykws.export.c.generate import int8_graph
from tinykws.ir import interpret
from tinykws.ir.ops import op_macs

QEMU = "qemu-system-arm"
MACHINE = "mps2-an386"
PROCESSOR_CLOCK_HZ = 25_000_000  # QEMU hw/arm/mps2.c SYSCLK_FRQ: SysTick's processor clock
ICOUNT_SHIFT = 7  # one instruction = 2**7 ns of virtual time = 3.2 SysTick ticks
TICKS_PER_INSTRUCTION = PROCESSOR_CLOCK_HZ * 2**ICOUNT_SHIFT / 1e9
LOOP_INSTRUCTIONS = 40_000  # harness.c: TK_LOOP_ITERATIONS x (subs, bne)
CALIBRATION_HOOKS = 64  # harness.c: TK_CALIBRATION_MARKS
MCU_FILE = "mcu.json"  # in a C export folder; read by tinykws.measure.metrics
TEMPLATES = ("startup.c", "harness.c", "mcu.h", "mcu.ld")


@dataclass(frozen=True)
class EmulatorRun:
    """What one emulator run measured.

    Attributes:
        scores: int8 (runs, output size): the network's output of each inference.
        features: int8 (runs, input size): the network's input (the front end's output when
            samples were given).
        instructions: instructions per inference (front end included when samples were given),
            the median over runs.
        run_instructions: the count of each inference.
        per_op: (label, instructions) of each step of the first inference in order: "front end"
            (with samples), "input copy", one entry per graph op ("CONV_2D 'conv1'", ...,
            "SOFTMAX ..."), "output copy".
        macs: multiply-accumulates of the network when the graph was given, else None.
        per_op_macs: the MACs of each step of `per_op` (0 for copies and the front end) when
            the graph was given, else None.
        optimization: the optimisation flags of the build.
        hook_instructions: the measured cost of one profiling hook (subtracted).
    """

    scores: np.ndarray
    features: np.ndarray
    instructions: int
    run_instructions: tuple[int, ...]
    per_op: tuple[tuple[str, int], ...]
    macs: int | None
    per_op_macs: tuple[int, ...] | None
    optimization: str
    hook_instructions: float

    @property
    def frontend_instructions(self) -> int:
        """Instructions of the front end (0 without one)."""
        return sum(n for label, n in self.per_op if label == "front end")

    @property
    def network_instructions(self) -> int:
        """Instructions per inference without the front end."""
        return self.instructions - self.frontend_instructions

    @property
    def instructions_per_mac(self) -> float | None:
        """Network instructions per multiply-accumulate (None without MACs)."""
        return self.network_instructions / self.macs if self.macs else None

    def to_dict(self) -> dict:
        """The figures as JSON-ready data (what mcu.json holds)."""
        return {
            "target": "cortex-m4",
            "emulator": f"{QEMU} -M {MACHINE} -icount shift={ICOUNT_SHIFT}",
            "optimization": self.optimization,
            "instructions": self.instructions,
            "frontend_instructions": self.frontend_instructions,
            "network_instructions": self.network_instructions,
            "macs": self.macs,
            "instructions_per_mac": self.instructions_per_mac,
            "hook_instructions": self.hook_instructions,
            "per_op": [
                {"label": label, "instructions": n, "macs": macs}
                for (label, n), macs in zip(
                    self.per_op, self.per_op_macs or [None] * len(self.per_op)
                )
            ],
        }


def qemu_binary() -> str | None:
    """Path of qemu-system-arm, or None (Debian package qemu-system-arm)."""
    return shutil.which(QEMU)


def can_emulate() -> bool:
    """Whether arm-none-eabi-gcc and qemu-system-arm are both installed (what
    `emulate_cortex_m4` needs)."""
    return arm_compiler() is not None and qemu_binary() is not None


def emulate_cortex_m4(
    src_dir,
    features: np.ndarray | None = None,
    *,
    samples: np.ndarray | None = None,
    optimization: str = "-Os",
    timeout_s: float = 120.0,
    runs: int = 1,
    graph=None,
) -> EmulatorRun:
    """Run a C export on the emulated Cortex-M4 and count its instructions.

    Args:
        src_dir: a folder written by `tinykws.export.c.export_c`.
        features: int8 network inputs, (runs, ...) or one input (...); default: zeros.
        samples: float32 clips (runs, clip samples) or one clip, run through frontend.c first
            (the folder must have one); replaces `features`.
        optimization: the optimisation flags of the build ("-Os", "-O2", ...).
        timeout_s: the emulator is killed after this many seconds (a hang is an error).
        runs: inferences when neither features nor samples give a count.
        graph: the Graph the folder was exported from: the scores are then checked against
            `tinykws.ir.interpret` (exactly) and the MACs counted.

    Raises:
        TinyKWSError: arm-none-eabi-gcc or qemu-system-arm missing (the Debian package named),
            a build failure, a hang past `timeout_s`, a fault, a clock that does not count
            instructions as expected, or scores that differ from the interpreter's.
    """
    src_dir = Path(src_dir).resolve()
    gcc = _need(arm_compiler(), "gcc-arm-none-eabi")
    qemu = _need(qemu_binary(), QEMU)
    inputs = _inputs(src_dir, features, samples, runs)
    with tempfile.TemporaryDirectory(prefix="tinykws-mcu-") as tmp:
        elf = _build_image(gcc, src_dir, Path(tmp), inputs, optimization)
        output = _run_qemu(qemu, elf, timeout_s)
    run = _parse(output, optimization, _op_macs(graph))
    if graph is not None:
        check_scores(run, graph)
    return run


def default_inputs(src_dir) -> dict:
    """{"samples": a seeded noise clip} for a folder with a front end, else {"features":
    seeded random int8 features}: the inputs of the measurement `export_c` records."""
    src_dir = Path(src_dir)
    rng = np.random.default_rng(0)
    if (src_dir / "frontend.h").is_file():
        clip = _define(src_dir / "frontend.h", "TINYKWS_CLIP_SAMPLES")
        return {"samples": (rng.normal(size=clip) * 0.1).astype(np.float32)}
    size = _define(src_dir / "model.h", "TINYKWS_INPUT_SIZE")
    return {"features": rng.integers(-128, 128, size).astype(np.int8)}


def _inputs(src_dir: Path, features, samples, runs: int) -> tuple[np.ndarray, bool]:
    """(rows, front end?): the clips (float32) or network inputs (int8) the image embeds."""
    if samples is not None:
        if not (src_dir / "frontend.h").is_file():
            raise TinyKWSError(f"{src_dir}: no front end (frontend.c); pass features instead")
        clip = _define(src_dir / "frontend.h", "TINYKWS_CLIP_SAMPLES")
        return np.asarray(samples, np.float32).reshape(-1, clip), True
    size = _define(src_dir / "model.h", "TINYKWS_INPUT_SIZE")
    rows = np.zeros((runs, size), np.int8) if features is None else np.asarray(features)
    if rows.dtype != np.int8:
        raise TinyKWSError(f"features must be int8 (quantized network inputs); got {rows.dtype}")
    if rows.size % size:
        raise TinyKWSError(f"{src_dir}: features have {rows.size} values; the model takes {size}")
    return rows.reshape(-1, size), False


def _define(header: Path, name: str) -> int:
    if not header.is_file():
        raise TinyKWSError(f"{header.parent}: no {header.name}; export the model with --format c")
    match = re.search(rf"#define {name} (\d+)", header.read_text())
    if match is None:
        raise TinyKWSError(f"{header}: no {name}; export the model again")
    return int(match.group(1))


def _input_sources(rows: np.ndarray, frontend: bool, max_marks: int) -> tuple[str, str]:
    """mcu_input.h and mcu_input.c: the embedded inputs and the harness's sizes."""
    ctype, name, width = (
        ("float", "tk_samples", "TINYKWS_CLIP_SAMPLES")
        if frontend
        else ("int8_t", "tk_features", "TINYKWS_INPUT_SIZE")
    )
    declaration = f"const {ctype} {name}[TK_RUNS][{width}]"
    header = (
        "#ifndef TINYKWS_MCU_INPUT_H\n#define TINYKWS_MCU_INPUT_H\n#include <stdint.h>\n"
        '#include "model.h"\n'
        + ('#include "frontend.h"\n' if frontend else "")
        + f"#define TK_RUNS {len(rows)}\n#define TK_WITH_FRONTEND {int(frontend)}\n"
        f"#define TK_MAX_MARKS {max_marks}\nextern {declaration};\n#endif\n"
    )
    literal = (lambda v: float(v).hex() + "f") if frontend else str  # hex: exact float32
    body = ",\n".join("{" + ",".join(literal(v) for v in row) + "}" for row in rows)
    return header, f'#include "mcu_input.h"\n{declaration} = {{\n{body}\n}};\n'


def _build_image(gcc: str, src_dir: Path, build: Path, inputs, optimization: str) -> Path:
    """Write the harness into `build` and link image.elf for mps2-an386."""
    rows, frontend = inputs
    hooks = (src_dir / "model.c").read_text().count("TK_PROFILE_OP(") + 4
    header, source = _input_sources(rows, frontend, max(hooks, CALIBRATION_HOOKS + 1))
    (build / "mcu_input.h").write_text(header)
    (build / "mcu_input.c").write_text(source)
    for name in TEMPLATES:
        (build / name).write_text(mcu_template(name))
    harness = [str(build / n) for n in ("startup.c", "harness.c", "mcu_input.c")]
    sources = [str(src_dir / n) for n in _sources(src_dir, frontend)]
    elf = build / "image.elf"
    flags = [*cortex_m4_flags(optimization), "-DTINYKWS_PROFILE", f"-I{build}", f"-I{src_dir}"]
    link = ["-nostartfiles", "-T", str(build / "mcu.ld"), "-Wl,--gc-sections", "--specs=nano.specs"]
    _run([gcc, *flags, *link, "-o", str(elf), *harness, *sources, "-lm"], build)
    return elf


def mcu_template(name: str) -> str:
    """Text of a file in `tinykws/export/c/templates/mcu`."""
    return resources.files("tinykws.export.c").joinpath("templates", "mcu", name).read_text()


def qemu_command(qemu: str, elf) -> list[str]:
    """The emulator's command line for an image."""
    options = f"-M {MACHINE} -nographic -monitor none -icount shift={ICOUNT_SHIFT}"
    semihosting = ["-semihosting-config", "enable=on,target=native"]
    return [qemu, *options.split(), *semihosting, "-kernel", str(elf)]


def _run_qemu(qemu: str, elf: Path, timeout_s: float) -> str:
    command = qemu_command(qemu, elf)
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=elf.parent,
        )
    except subprocess.TimeoutExpired:
        raise TinyKWSError(
            f"{QEMU}: the emulated Cortex-M4 did not finish within {timeout_s:g} s (killed); "
            "a hang in the generated C, or raise timeout_s for a larger network"
        ) from None
    output = done.stdout + done.stderr
    if done.returncode != 0 or "done\n" not in output:
        tail = " | ".join(output.strip().splitlines()[-4:]) or "no output"
        raise TinyKWSError(
            f"{QEMU} -M {MACHINE}: the image failed (status {done.returncode}): {tail}"
        )
    return output


_LINE = re.compile(r'^(\w+) (\d+)(?: "(.*)")? (\S+)$')


def _parse(output: str, optimization: str, op_macs: list[int] | None) -> EmulatorRun:
    """An EmulatorRun from the harness's lines (see templates/mcu/harness.c)."""
    facts: dict[str, dict[int, object]] = {}
    ops: dict[int, list[tuple[str, int]]] = {}
    for line in output.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        kind, run, label, value = (
            match.group(1),
            int(match.group(2)),
            match.group(3),
            match.group(4),
        )
        if kind == "op":
            ops.setdefault(run, []).append((label, int(value)))
        else:
            facts.setdefault(kind, {})[run] = value
    _check_clock(int(facts["clock"][0]))
    hook = int(facts["hooks"][0]) / TICKS_PER_INSTRUCTION / CALIBRATION_HOOKS
    n = len(facts["run"])
    counts = tuple(
        round(int(facts["run"][i]) / TICKS_PER_INSTRUCTION - int(facts["marks"][i]) * hook)
        for i in range(n)
    )
    per_op = tuple(
        (label, max(round(ticks / TICKS_PER_INSTRUCTION - hook), 0)) for label, ticks in ops[0]
    )
    steps = None
    if op_macs is not None:
        steps = tuple([0] * (len(per_op) - len(op_macs) - 1) + op_macs + [0])
        steps = steps if len(steps) == len(per_op) else None
    return EmulatorRun(
        scores=_bytes([facts["scores"][i] for i in range(n)]),
        features=_bytes([facts["features"][i] for i in range(n)]),
        instructions=int(np.median(counts)),
        run_instructions=counts,
        per_op=per_op,
        macs=None if op_macs is None else sum(op_macs),
        per_op_macs=steps,
        optimization=optimization,
        hook_instructions=round(hook, 2),
    )


def _bytes(rows: list) -> np.ndarray:
    return np.stack([np.frombuffer(bytes.fromhex(r), np.int8) for r in rows])


def _check_clock(loop_ticks: int) -> None:
    measured = loop_ticks / TICKS_PER_INSTRUCTION
    if not LOOP_INSTRUCTIONS <= measured <= LOOP_INSTRUCTIONS * 1.01:
        raise TinyKWSError(
            f"{QEMU} -M {MACHINE}: a loop of {LOOP_INSTRUCTIONS} instructions read "
            f"{loop_ticks} SysTick ticks, not {LOOP_INSTRUCTIONS * TICKS_PER_INSTRUCTION:g}: "
            f"this QEMU's SysTick clock is not {PROCESSOR_CLOCK_HZ / 1e6:g} MHz; counts would "
            "be wrong"
        )


def _op_macs(graph) -> list[int] | None:
    """MACs of each op of the graph as the C runs it (int8 boundary), or None."""
    if graph is None:
        return None
    int8 = int8_graph(graph)
    return [int(op_macs(int8, op)) for op in int8.ops]


def check_scores(run: EmulatorRun, graph) -> None:
    """Raise unless the emulated scores equal `tinykws.ir.interpret` on the same inputs."""
    int8 = int8_graph(graph)
    shape = int8.tensor(int8.inputs[0]).shape
    x = run.features.reshape(len(run.features), *shape[1:])
    expected = interpret(int8, x)[int8.outputs[0]].reshape(len(x), -1)
    wrong = np.flatnonzero((expected != run.scores).any(axis=1))
    if wrong.size:
        raise TinyKWSError(
            f"graph {graph.name}: the emulated Cortex-M4 scores of inference {wrong[0]} differ "
            f"from the integer interpreter's: {run.scores[wrong[0]].tolist()} vs "
            f"{expected[wrong[0]].tolist()}"
        )
