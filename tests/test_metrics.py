"""Arena planning and network metrics: sizes, MACs, FLOPs, RAM, latency rows, the metrics verb."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from export_helpers import (
    LOWERABLE,
    int8_graph,
    save_float,
    save_quantized,
    trained_model,
)

from tinykws.cli import main
from tinykws.ir import GraphBuilder, QuantParams, Weights
from tinykws.ir.plan import no_scratch, plan_arena, tensor_bytes
from tinykws.measure.metrics import graph_metrics, model_metrics
from tinykws.measure.metrics_report import summary_rows


def _residual_graph():
    """x -> conv a -> conv b -> add(a, b) -> reshape -> fc: `a` stays alive across `b`."""
    rng = np.random.default_rng(0)

    def w(shape, axis):
        return Weights(
            rng.integers(-127, 128, shape).astype(np.int8),
            scales=np.full(shape[axis], 0.01, np.float32),
        )

    b = GraphBuilder("residual")
    x = b.input("x", (1, 6, 5, 3), QuantParams(0.1, 0))
    a = b.conv2d(x, w((4, 3, 3, 3), 0), QuantParams(0.1, 0))
    c = b.conv2d(a, w((4, 1, 1, 4), 0), QuantParams(0.1, 0))
    s = b.add(a, c, QuantParams(0.2, 0), activation="RELU")
    flat = b.reshape(s, (1, 120))
    return b.build([b.fully_connected(flat, w((2, 120), 0), QuantParams(0.5, 0))])


def _assert_no_overlap(plan) -> None:
    placed = [(plan.offsets[b.name], b) for b in plan.buffers]
    for i, (start, one) in enumerate(placed):
        assert start % plan.alignment == 0
        assert start + one.size_bytes <= plan.size_bytes
        for other_start, other in placed[i + 1 :]:
            alive_together = one.first <= other.last and other.first <= one.last
            disjoint = (
                start + one.size_bytes <= other_start or other_start + other.size_bytes <= start
            )
            assert disjoint or not alive_together, (one.name, other.name)


def test_plan_keeps_live_tensors_apart_and_reuses_dead_ones():
    graph = _residual_graph()
    plan = plan_arena(graph, scratch=no_scratch)
    _assert_no_overlap(plan)
    # while b runs, x is dead; a, b live; the add needs a, c and s at once: 3 x 120 bytes
    assert plan.size_bytes >= max(plan.live_bytes(i) for i in range(len(graph.ops)))
    assert plan.size_bytes == 2 * 128 + 120  # 120-byte tensors on 16-byte boundaries
    assert plan.aliases == {"reshape_3": "add_2"}
    assert plan.offsets["reshape_3"] == plan.offsets["add_2"]
    with_scratch = plan_arena(graph)
    _assert_no_overlap(with_scratch)
    assert with_scratch.scratch == {0: 2 * 3 * 3 * 3 * 2}  # the 3x3 conv's im2col rows
    assert tensor_bytes(graph, "x") == 90


@pytest.mark.parametrize("family", LOWERABLE)
def test_plans_of_every_family(tone_corpus, family):
    plan = plan_arena(int8_graph(tone_corpus, family))
    _assert_no_overlap(plan)


@pytest.mark.parametrize("family", LOWERABLE)
def test_float_and_int8_figures_agree_with_the_model(tone_corpus, family):
    from tinykws.export.float_graph import lower_float
    from tinykws.models import count_macs

    model = trained_model(tone_corpus, family)
    floats = graph_metrics(lower_float(model))
    graph = int8_graph(tone_corpus, family)
    ints = graph_metrics(graph)
    # BC-ResNet's bin averages are fused into the temporal convs after them (in the float
    # graph a MEAN, then the conv): their weights repeat over the W bins, W times the MACs
    float_rows = {r["name"]: r for r in floats["layers"]}
    fused = [
        (graph.tensor(op.inputs[1]).shape[2], row, float_rows[row["name"]])
        for op, row in zip(graph.ops, ints["layers"])
        if op.type == "DEPTHWISE_CONV_2D" and f"{row['name']}/bin_average" in float_rows
    ]
    assert bool(fused) == (family == "bcresnet")
    weights = lambda row: row["params"] - row["bias_bytes"] // 4  # noqa: E731
    for width, row, float_row in fused:
        assert row["macs"] == width * float_row["macs"]
        assert weights(row) == width * weights(float_row)
    means = sum(float_rows[f"{r['name']}/bin_average"]["macs"] for _, r, _ in fused)
    extra_macs = sum(r["macs"] - f["macs"] for _, r, f in fused) - means
    extra_params = sum(r["params"] - f["params"] for _, r, f in fused)
    assert floats["total"]["macs"] == ints["total"]["macs"] - extra_macs == count_macs(model)
    assert floats["total"]["params"] == ints["total"]["params"] - extra_params
    assert floats["total"]["param_bytes"] == 4 * floats["total"]["params"]
    int8_weights = sum(r["params"] - r["bias_bytes"] // 4 for r in ints["layers"])
    assert ints["flash"]["weight_bytes"] == int8_weights
    flash = ints["flash"]
    assert (
        flash["total_bytes"] == flash["weight_bytes"] + flash["bias_bytes"] + flash["qparam_bytes"]
    )
    assert ints["total"]["ram_bytes"] < floats["total"]["ram_bytes"]
    # the shown peak is the arena as planned: scratch shares it, so no sum is claimed
    ram = ints["ram"]
    assert ram["arena_bytes"] <= ram["total_bytes"] <= ram["arena_bytes"] + ram["scratch_bytes"]
    rows = summary_rows(ints | {"precision": "int8", "weight_bits": 8})
    (shown,) = [v for k, v in rows if k.startswith("peak RAM")]
    assert shown.startswith(f"{ram['total_bytes']:,} B (tensors alone {ram['arena_bytes']:,} B")
    for rows in (floats["layers"], ints["layers"]):
        assert all(r["flops"] >= 2 * r["macs"] for r in rows)


def test_narrow_weights_are_counted_packed(tone_corpus):
    figures = graph_metrics(int8_graph(tone_corpus, "tinyconv", weight_bits=4))
    conv = next(r for r in figures["layers"] if r["type"] == "CONV_2D")
    assert conv["param_bits"] == 4
    assert conv["weight_bytes"] == -(-(conv["params"] - conv["bias_bytes"] // 4) // 2)


def test_model_metrics_with_latency(tone_corpus, tmp_path):
    from tinykws.measure.latency import LatencyConfig

    path = save_quantized(tone_corpus, "dscnn", tmp_path / "q.safetensors")
    result = model_metrics(path, LatencyConfig(runs=3, warmup=1))
    assert {"layers", "total", "flash", "ram", "cortex_m", "latency"} <= set(result)
    assert {"macs", "flash_bytes", "ram_bytes"} <= set(result["total"])
    rows = {(r["runtime"], r["precision"]) for r in result["latency"]["rows"]}
    assert rows == {
        ("pytorch", "float32"),
        ("litert", "float32"),
        ("litert", "int8"),
        ("onnxruntime", "float32"),
        ("onnxruntime", "int8"),
    }
    front = result["latency"]["frontend_ms"]
    for row in result["latency"]["rows"]:
        assert row["network_ms"] > 0 and row["total_ms"] == pytest.approx(front + row["network_ms"])
    m4 = result["cortex_m"][0]
    assert m4["cycles"] == 2 * result["total"]["macs"]


def test_model_without_graph_ops_gets_float_figures(tone_corpus, tmp_path, no_subspectral_op):
    result = model_metrics(save_float(tone_corpus, "bcresnet", tmp_path / "b.safetensors"))
    assert result["ram"]["arena_bytes"] is None
    assert result["total"]["ram_bytes"] == result["ram"]["io_estimate_bytes"] > 0
    assert result["total"]["macs"] > 0 and result["precision"] == "float32"


def test_metrics_verb_writes_json(tone_corpus, tmp_path, capsys):
    path = save_float(tone_corpus, "tinyconv", tmp_path / "f.safetensors")
    out = tmp_path / "metrics.json"
    assert main(["metrics", str(path), "--json", str(out), "--runs", "3"]) == 0
    result = json.loads(out.read_text())
    assert {"macs", "flash_bytes", "ram_bytes"} <= set(result["total"])
    assert len(result["layers"]) == 3 and result["latency"]["runs"] == 3
    assert "MACs" in capsys.readouterr().out
    assert main(["metrics", str(tmp_path / "nothing.safetensors")]) == 2


needs_emulator = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)


@needs_emulator
def test_metrics_show_the_emulated_cortex_m4_count(tone_corpus, tmp_path, capsys):
    """The C export records the count (mcu.json); metrics read it from --c-dir, or run the
    emulator on a temporary export with --mcu: the same count, shown beside the estimate."""
    from tinykws.measure.metrics_report import cortex_rows, mcu_op_rows

    path = int8_graph(tone_corpus, "tinyconv").save(tmp_path / "graph.json")
    folder = tmp_path / "c"
    assert main(["export", str(path), "--format", "c", "--out", str(folder)]) == 0
    recorded = json.loads((folder / "mcu.json").read_text())
    result = model_metrics(path, c_dir=folder)
    mcu = result["mcu"]
    assert mcu["instructions"] == recorded["instructions"] > mcu["network_instructions"] > 0
    assert mcu["ms"] == pytest.approx(mcu["instructions"] / 80e6 * 1e3)
    assert mcu["macs"] == result["total"]["macs"]
    assert mcu["per_op"][0]["label"] == "front end"
    assert model_metrics(path, mcu=True)["mcu"]["instructions"] == recorded["instructions"]
    measured = cortex_rows(result)[-1]
    assert "emulated" in measured[0] and measured[3] == f"{mcu['instructions']:,}"
    assert len(mcu_op_rows(mcu)) == len(mcu["per_op"])
    capsys.readouterr()
    assert main(["metrics", str(path), "--no-latency", "--c-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "step (emulated Cortex-M4)" in out and f"{mcu['per_op'][0]['instructions']:,}" in out


def test_metrics_without_the_emulator_say_which_package(tone_corpus, tmp_path, capsys):
    path = int8_graph(tone_corpus, "tinyconv").save(tmp_path / "graph.json")
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(empty))
        assert main(["metrics", str(path), "--no-latency", "--mcu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "(Debian: apt-get install" in errors[0], errors
