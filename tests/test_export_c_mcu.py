"""Cortex-M4 build of DS-CNN-S (arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard
-mfpu=fpv4-sp-d16 -Os, linked with --gc-sections): measured flash and static RAM against the
targets. Flash (.text + .rodata) <= weight payload + 12 KB; static RAM (.data + .bss) within
10 % of the arena planner's figure; 4-bit weights take half the bytes of int8 ones. BC-ResNet-1,
whose graph has SLICE, CONCATENATION, LOGISTIC and MUL, builds too, its RAM exactly the arena."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from c_support import needs_arm_gcc

from tinykws.export.c import SIZES_FILE, export_c
from tinykws.export.c.build import SectionSizes, build_cortex_m4, parse_size_sysv
from tinykws.export.c.emit import scratch_bytes
from tinykws.features.frontend import Normalization
from tinykws.ir.plan import plan_arena
from tinykws.ir.transform import with_io_dtype
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

OVERHEAD_BUDGET_BYTES = 12 * 1024
RAM_TOLERANCE = 0.10
PER_OP_BYTES = 128  # a kernel's parameter struct takes 8 to 108 bytes on Cortex-M4


def dscnn_s_graph(weight_bits: int):
    torch.manual_seed(0)
    model = build_model(model_config("dscnn_s", 12, (49, 10))).eval()
    features = np.random.default_rng(0).normal(size=(16, 49, 10)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * 10, std=(1.0,) * 10)
    graph = lower(quantize(model, QuantConfig(weight_bits=weight_bits), QuantData(features, norm)))
    graph.metadata.update(frontend="mfcc", normalization=norm.to_dict())
    return graph


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """{bits: (graph, export report, section sizes)} for int8 and 4-bit DS-CNN-S."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    torch.set_num_threads(1)
    out = {}
    for bits in (8, 4):
        graph = dscnn_s_graph(bits)
        folder = export_c(graph, tmp_path_factory.mktemp(f"dscnn{bits}"), cortex_m4="on")
        report = json.loads((folder / "export.json").read_text())
        sizes = json.loads((folder / SIZES_FILE).read_text())
        measured = SectionSizes(*(sizes[k] for k in ("text", "rodata", "data", "bss")))
        out[bits] = (graph, report, measured, folder)
    return out


@needs_arm_gcc
def test_dscnn_s_int8_flash_and_ram_targets(builds):
    graph, report, sizes, _ = builds[8]
    payload = report["weight_bytes"] + report["bias_bytes"]
    assert report["weight_bytes"] == 22016  # 64 x 10 x 4 + 4 x (9 x 64 + 64 x 64) + 64 x 12
    assert sizes.text + sizes.rodata <= payload + OVERHEAD_BUDGET_BYTES
    int8 = with_io_dtype(graph, "int8")
    exact = plan_arena(int8, scratch=scratch_bytes).size_bytes
    assert sizes.data + sizes.bss == -(-exact // 4) * 4  # the static arena is all the RAM
    with_cmsis_scratch = plan_arena(int8).size_bytes
    assert abs(sizes.ram_bytes - with_cmsis_scratch) <= RAM_TOLERANCE * with_cmsis_scratch


@needs_arm_gcc
def test_dscnn_s_4bit_weights_take_half_the_flash(builds):
    report8, report4 = builds[8][1], builds[4][1]
    assert report4["weight_bytes"] * 2 == report8["weight_bytes"]
    saved = builds[8][2].rodata - builds[4][2].rodata
    assert saved == report8["weight_bytes"] - report4["weight_bytes"]
    # tk_config.h compiles the unpacking paths in for 4-bit weights only: 1,096 B measured
    assert 0 < builds[4][2].text - builds[8][2].text <= 1_300


@needs_arm_gcc
def test_front_end_builds_for_cortex_m4(builds):
    folder = builds[8][3]
    network, whole = builds[8][2], build_cortex_m4(folder, frontend=True)
    assert whole.text > network.text and whole.rodata > network.rodata
    recorded = json.loads((folder / SIZES_FILE).read_text())["with_frontend"]
    assert recorded["flash_bytes"] == whole.flash_bytes
    # mfcc: window 640 + twiddles 2 x 512 + filterbank + DCT, all float32 in flash
    assert whole.rodata - network.rodata > 4 * (640 + 1024)
    if shutil.which("make"):
        done = subprocess.run(
            ["make", "-s", "cortex-m4"], cwd=folder, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert (folder / "build-cortex-m4" / "libtinykws.a").is_file()
        assert parse_size_sysv(done.stdout).rodata > report_bytes(builds[8][1])


@needs_arm_gcc
def test_relative_folder_builds(builds, tmp_path, monkeypatch):
    """The build runs in a temporary folder; a relative source folder must still be found."""
    shutil.copytree(builds[8][3], tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    assert build_cortex_m4("c").flash_bytes == builds[8][2].flash_bytes


@needs_arm_gcc
def test_bcresnet_builds_for_cortex_m4(tmp_path):
    """BC-ResNet-1 (98 x 40; SLICE, CONCATENATION, LOGISTIC, MUL among its 234 ops) cross-builds;
    its static RAM is exactly the planner's arena. Its flash holds, besides the payload and the
    per-channel multipliers and shifts, one parameter struct per op (and a 256-byte table per
    LOGISTIC): at most PER_OP_BYTES each on average."""
    from quant_support import randomize_batchnorm

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(model_config("bcresnet1", 12, (98, 40)))
    randomize_batchnorm(model)
    features = np.random.default_rng(0).normal(size=(16, 98, 40)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * 40, std=(1.0,) * 40)
    graph = lower(quantize(model.eval(), QuantConfig(), QuantData(features, norm)))
    folder = export_c(graph, tmp_path, cortex_m4="on")
    report = json.loads((folder / "export.json").read_text())
    sizes = json.loads((folder / SIZES_FILE).read_text())
    int8 = with_io_dtype(graph, "int8")
    assert {"SLICE", "CONCATENATION", "LOGISTIC", "MUL"} <= {op.type for op in int8.ops}
    arena = plan_arena(int8, scratch=scratch_bytes).size_bytes
    assert sizes["data"] + sizes["bss"] == -(-arena // 4) * 4
    constants = report_bytes(report) + report["quant_bytes"]
    assert sizes["rodata"] <= constants + PER_OP_BYTES * len(int8.ops)
    assert sizes["text"] <= OVERHEAD_BUDGET_BYTES


def report_bytes(report: dict) -> int:
    return report["weight_bytes"] + report["bias_bytes"]


def test_sizes_file_is_removed_when_not_measured(tmp_path):
    from c_support import every_op_graph

    (tmp_path / SIZES_FILE).write_text("{}")
    export_c(every_op_graph(np.random.default_rng(0)), tmp_path, cortex_m4="off")
    assert not (tmp_path / SIZES_FILE).exists()


def test_size_output_parsing():
    text = """tinykws.elf  :
section            size        addr
.text              1942     32768
.rodata.op0_weights 2560    34710
.rodata           25824     37270
.ARM.exidx            8     63094
.data                 4    536870912
.bss              16000    536870916
.comment             38          0
Total             46376
"""
    sizes = parse_size_sysv(text)
    assert (sizes.text, sizes.rodata, sizes.data, sizes.bss) == (1942, 28392, 4, 16000)
    assert sizes.flash_bytes == 1942 + 28392 + 4 and sizes.ram_bytes == 16004
