"""The emulated Cortex-M4 (QEMU mps2-an386): the generated C runs there with scores equal to the
integer interpreter's, instruction counts are exact (a loop of known length reads its length),
per op, deterministic and guarded against regressions; a missing emulator, a hang and a failing
emulator end in one clear error, and a C export still succeeds without one."""

from __future__ import annotations

import json
import shutil
import stat

import numpy as np
import pytest
from c_support import every_op_graph, needs_arm_gcc

from tinykws.errors import TinyKWSError
from tinykws.export.c import export_c
from tinykws.export.c.generate import op_label
from tinykws.export.c.mcu import MCU_FILE, emulate_cortex_m4, qemu_binary
from tinykws.ir import GraphBuilder, QuantParams, interpret
from tinykws.ir.transform import with_io_dtype

needs_qemu = pytest.mark.skipif(
    qemu_binary() is None, reason="qemu-system-arm is not installed (Debian: qemu-system-arm)"
)
# every_op_graph(rng 0) on the first row of inputs(), -Os, when this guard was set: 518,170
# instructions; kernels may get faster, not slower.
EVERY_OP_INSTRUCTIONS_LIMIT = int(1.2 * 518_170)


def inputs(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, (n, 12 * 8)).astype(np.int8)


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    """(graph, folder, run) of every_op_graph on the emulator."""
    if qemu_binary() is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc is not installed")
    graph = every_op_graph(np.random.default_rng(0))
    folder = export_c(graph, tmp_path_factory.mktemp("every_op"), cortex_m4="off")
    return graph, folder, emulate_cortex_m4(folder, inputs(), graph=graph)


@needs_qemu
@needs_arm_gcc
def test_scores_equal_the_interpreter(every_op):
    graph, _, run = every_op
    int8 = with_io_dtype(graph, "int8")
    x = inputs().reshape(3, 12, 8, 1)
    expected = interpret(int8, x)[int8.outputs[0]].reshape(3, -1)
    assert run.scores.dtype == np.int8
    np.testing.assert_array_equal(run.scores, expected)
    np.testing.assert_array_equal(run.features, inputs())


@needs_qemu
@needs_arm_gcc
def test_per_op_counts_cover_the_graph_in_order(every_op):
    graph, _, run = every_op
    int8 = with_io_dtype(graph, "int8")
    labels = [label for label, _ in run.per_op]
    assert labels == ["input copy", *(op_label(op) for op in int8.ops), "output copy"]
    assert labels[-2].startswith("SOFTMAX")
    counted = sum(n for _, n in run.per_op)  # of the first inference
    # the rest is the return from tinykws_invoke and one clock read: a few dozen instructions
    assert 0 <= run.run_instructions[0] - counted <= 100
    weighted = {op_label(op) for op in int8.ops if op.type in ("CONV_2D", "FULLY_CONNECTED")}
    assert all(n > 0 for label, n in run.per_op if label in weighted)
    assert run.macs == sum(run.per_op_macs) > 0
    assert run.instructions_per_mac == pytest.approx(run.instructions / run.macs)


@needs_qemu
@needs_arm_gcc
def test_counts_are_deterministic_and_guarded(every_op):
    graph, folder, run = every_op
    again = emulate_cortex_m4(folder, inputs(), graph=graph)
    assert again.run_instructions == run.run_instructions and again.per_op == run.per_op
    assert run.run_instructions[0] <= EVERY_OP_INSTRUCTIONS_LIMIT


def softmax_graph(n: int = 8):
    b = GraphBuilder("softmax")
    x = b.input("x", (1, n), QuantParams(0.1, 0))
    return b.build([b.softmax(x)])


@needs_qemu
@needs_arm_gcc
def test_export_writes_the_counts(tmp_path):
    graph = softmax_graph()
    folder = export_c(graph, tmp_path, emulate="on")
    figures = json.loads((folder / MCU_FILE).read_text())
    assert figures["instructions"] > 0 and figures["target"] == "cortex-m4"
    labels = [s["label"] for s in figures["per_op"]]
    assert labels[0] == "input copy" and labels[1].startswith("SOFTMAX") and len(labels) == 3
    export_c(graph, tmp_path, cortex_m4="off")  # not measured: the stale file goes
    assert not (folder / MCU_FILE).exists()


def fake_bin(tmp_path, script: str | None):
    """A PATH folder with the arm-none-eabi tools and, unless None, a fake qemu-system-arm
    (`script`, with absolute paths: nothing else is on PATH)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size"):
        if shutil.which(tool):
            (folder / tool).symlink_to(shutil.which(tool))
    if script is not None:
        qemu = folder / "qemu-system-arm"
        qemu.write_text("#!/bin/sh\n" + script + "\n")
        qemu.chmod(qemu.stat().st_mode | stat.S_IEXEC)
    return str(folder)


@needs_arm_gcc
def test_missing_qemu_is_one_clear_error(tmp_path, monkeypatch):
    folder = export_c(softmax_graph(), tmp_path / "c", cortex_m4="off")
    monkeypatch.setenv("PATH", fake_bin(tmp_path, None))
    with pytest.raises(TinyKWSError, match="apt-get install qemu-system-arm"):
        emulate_cortex_m4(folder)
    export_c(softmax_graph(), folder, emulate="auto")  # the export itself still succeeds
    assert not (folder / MCU_FILE).exists()


@needs_arm_gcc
def test_a_hang_is_killed_at_the_timeout(tmp_path, monkeypatch):
    folder = export_c(softmax_graph(), tmp_path / "c", cortex_m4="off")
    monkeypatch.setenv("PATH", fake_bin(tmp_path, f"exec {shutil.which('sleep')} 30"))
    with pytest.raises(TinyKWSError, match=r"did not finish within 1 s \(killed\)"):
        emulate_cortex_m4(folder, timeout_s=1)


@needs_arm_gcc
def test_a_failing_emulator_does_not_fail_the_export(tmp_path, monkeypatch):
    folder = export_c(softmax_graph(), tmp_path / "c", cortex_m4="off")
    monkeypatch.setenv("PATH", fake_bin(tmp_path, "echo 'no such machine' >&2; exit 1"))
    with pytest.raises(TinyKWSError, match="no such machine"):
        emulate_cortex_m4(folder)
    export_c(softmax_graph(), folder, cortex_m4="on", emulate="auto")
    assert (folder / "sizes.json").exists() and not (folder / MCU_FILE).exists()
    with pytest.raises(TinyKWSError, match="no such machine"):
        export_c(softmax_graph(), folder, cortex_m4="off", emulate="on")


@needs_qemu
@needs_arm_gcc
def test_front_end_runs_first(tmp_path):
    """A graph on MFCC features (49 x 10): the C front end runs on the emulator first, then the
    network on its output; the scores equal the interpreter's on those features, which match
    the host build of the same front end to within one quantization step."""
    from c_support import random_weights

    from tinykws.export.c.build import CModel, build_shared_library

    rng = np.random.default_rng(0)
    b = GraphBuilder("mfcc_net")
    x = b.input("features", (1, 49, 10, 1), QuantParams(0.3, 0))
    y = b.conv2d(x, random_weights(rng, (4, 3, 3, 1), 0), QuantParams(0.2, 0), stride=(4, 2))
    y = b.mean(y, QuantParams(0.1, 0), keep_dims=False)
    y = b.fully_connected(y, random_weights(rng, (3, 4), 0), QuantParams(0.2, 0))
    graph = b.build([b.softmax(y)])
    folder = export_c(graph, tmp_path, frontend_config="mfcc", cortex_m4="off")
    clip = (rng.normal(size=16000) * 0.1).astype(np.float32)
    run = emulate_cortex_m4(folder, samples=clip, graph=graph)
    assert run.per_op[0][0] == "front end" and run.frontend_instructions > 10 * 49 * 512
    assert run.network_instructions == run.instructions - run.frontend_instructions
    host = CModel(build_shared_library(folder)).frontend_input(clip).reshape(-1)
    differ = np.abs(host.astype(int) - run.features[0].astype(int))
    assert differ.max() <= 1 and np.mean(differ > 0) <= 0.02


def test_hooks_are_empty_outside_a_profiling_build(tmp_path):
    graph = every_op_graph(np.random.default_rng(0))
    model_c = (export_c(graph, tmp_path, cortex_m4="off") / "model.c").read_text()
    int8 = with_io_dtype(graph, "int8")
    assert model_c.count("\n    TK_PROFILE_OP(") == len(int8.ops) + 2  # + the two copies
    assert "#define TK_PROFILE_OP(index, label) ((void)0)" in model_c
