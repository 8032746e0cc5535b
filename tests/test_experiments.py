"""Several experiments of one kind in a recipe: `[[prune.sweep]]` and `[[quantize.sweep]]`
parse (one table still means one sweep), round-trip through the run's recipe.toml, reject a
duplicate name, and each sweep writes its own files and gets its own report section."""

import json
import shutil
from dataclasses import replace

import pytest
import tomllib
from support import tone_run

from tinykws.config import dump_toml, from_dict, labelled_stem
from tinykws.errors import TinyKWSError
from tinykws.export.c.mcu import can_emulate
from tinykws.prune.config import PruneConfig, PruneSweepConfig
from tinykws.report.sections import prune_section, quantize_section
from tinykws.run.pipeline import run_recipe
from tinykws.run.recipe import parse
from tinykws.run.stages.quantize import parse_table

RECIPE = """
name = "experiments"
[model]
preset = "tinyconv"
[prune]
method = "l1"
amount = 0.25
[[prune.sweep]]
name = "structured"
method = "l1"
amounts = [0.3]
[prune.sweep.fine_tune]
epochs = 1
[[prune.sweep]]
method = "magnitude"
amounts = [0.5, 0.7]
[quantize]
[[quantize.sweep]]
bits = [8]
methods = ["ptq"]
[[quantize.sweep]]
name = "sym4"
bits = [4]
schemes = ["sym"]
methods = ["ptq"]
"""


def test_arrays_of_tables_parse_and_round_trip():
    recipe = parse(tomllib.loads(RECIPE))
    prune = from_dict(PruneConfig, recipe.extra["prune"], "prune")
    assert [s.label for s in prune.sweep] == ["structured", "magnitude"]
    assert prune.sweep[0].fine_tune.epochs == 1 and prune.sweep[1].amounts == (0.5, 0.7)
    assert [labelled_stem(prune.sweep, s) for s in prune.sweep] == [
        "sweep-structured",
        "sweep-magnitude",
    ]
    _, quant = parse_table(recipe.extra["quantize"])
    assert [s.label for s in quant] == ["ptq", "sym4"] and quant[1].schemes == ("sym",)
    again = parse(tomllib.loads(dump_toml(recipe.to_dict())))  # recipe.toml of the run
    assert again == recipe


def test_one_table_is_a_list_of_one_with_todays_file_names():
    single = from_dict(PruneConfig, {"sweep": {"amounts": [0.2]}}, "prune")
    assert single.sweep == (PruneSweepConfig(amounts=(0.2,)),)
    assert labelled_stem(single.sweep, single.sweep[0]) == "sweep"
    named = from_dict(PruneConfig, {"sweep": {"name": "cliff"}}, "prune")
    assert labelled_stem(named.sweep, named.sweep[0]) == "sweep-cliff"
    assert from_dict(PruneConfig, {}, "prune").sweep == ()
    _, quant = parse_table({"sweep": {"bits": [4]}})
    assert len(quant) == 1 and quant[0].bits == (4,)
    assert parse_table({})[1] == ()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"prune": {"sweep": [{"method": "l1"}, {"method": "l1"}]}}, "two sweeps are named 'l1'"),
        (
            {"prune": {"sweep": [{"name": "a", "method": "l1"}, {"name": "a"}]}},
            "two sweeps are named 'a'",
        ),
        ({"quantize": {"sweep": [{"bits": [4]}, {"bits": [8]}]}}, "named 'ptq-qat'"),
        ({"prune": {"sweep": {"name": "../x"}}}, "prune.sweep.name '../x'"),
        ({"quantize": {"sweep": [{"name": "a b"}]}}, "quantize.sweep.name 'a b'"),
        ({"prune": {"sweep": [{"amounts": [1.5]}]}}, "prune.sweep.amounts must be in"),
    ],
)
def test_bad_sweeps_are_one_clear_error(table, message):
    with pytest.raises(TinyKWSError, match=message):
        parse({"model": {"preset": "tinyconv"}, **table})


MODEL = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    train = {"epochs": 3, "batch_size": 16, "augment": {"enabled": False}}
    return tone_run(tone_corpus, tmp_path_factory.mktemp("experiments"), "mfcc", MODEL, train)


def test_each_sweep_writes_its_own_files_and_report_section(trained, tmp_path):
    recipe, run_dir = trained
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    fine_tune = {"epochs": 1, "batch_size": 16, "augment": {"enabled": False}}
    extra = {
        "prune": {
            "method": "l1",
            "amount": 0.25,
            "retrain_enabled": False,
            "sweep": [
                {"name": "structured", "amounts": [0.3], "fine_tune": fine_tune, "latency_runs": 2},
                {
                    "method": "magnitude",
                    "amounts": [0.5],
                    "fine_tune": fine_tune,
                    "latency_runs": 2,
                },
            ],
        },
        "quantize": {
            "calibration_per_class": 2,
            "sweep": [
                {"bits": [8], "methods": ["ptq"]},
                {"name": "sym4", "bits": [4], "schemes": ["sym"], "methods": ["ptq"]},
            ],
        },
    }
    run_recipe(replace(recipe, stages=("data", "train", "prune", "quantize"), extra=extra), run)

    summary = json.loads((run / "prune" / "summary.json").read_text())
    assert [s["name"] for s in summary["sweeps"]] == ["structured", "magnitude"]
    assert "sweep" not in summary and not (run / "prune" / "sweep.json").exists()
    for name, method in (("structured", "l1"), ("magnitude", "magnitude")):
        result = json.loads((run / "prune" / f"sweep-{name}.json").read_text())
        assert result["name"] == name and result["method"] == method
        assert (run / "prune" / f"sweep-{name}.png").stat().st_size > 1000
    structured = json.loads((run / "prune" / "sweep-structured.json").read_text())
    magnitude = json.loads((run / "prune" / "sweep-magnitude.json").read_text())
    # channels removed shrink the MACs; zeroed weights keep them
    assert structured["rows"][0]["macs"] < structured["baseline"]["macs"]
    assert magnitude["rows"][0]["macs"] == magnitude["baseline"]["macs"]
    # every point timed as deployed on the microcontroller: emulated when the toolchain is here
    emulated = can_emulate()
    source = "Cortex-M4 emulated" if emulated else "estimate"
    for result in (structured, magnitude):
        for figures in (result["baseline"], *result["rows"]):
            assert figures["mcu_ms"] > 0 and figures["mcu_source"].startswith(source)
    point, base = structured["rows"][0], structured["baseline"]
    if emulated:  # an exact count of another network (fewer channels are not always faster)
        assert point["mcu_ms"] != base["mcu_ms"]
    else:  # the estimate follows the MACs
        assert point["mcu_ms"] / base["mcu_ms"] == pytest.approx(point["macs"] / base["macs"])
    html = prune_section(run)
    assert "<h3>Sweep: structured</h3>" in html and "<h3>Sweep: magnitude</h3>" in html
    assert f"MCU: {source}" in html and f"<td>{point['mcu_ms']:.3f}</td>" in html

    quant = json.loads((run / "quantize" / "summary.json").read_text())
    assert [(s["name"], s["file"]) for s in quant["sweeps"]] == [
        ("ptq", "sweep-ptq.json"),
        ("sym4", "sweep-sym4.json"),
    ]
    rows = json.loads((run / "quantize" / "sweep-sym4.json").read_text())["rows"]
    assert [(r["scheme"], r["weight_bits"]) for r in rows] == [("sym", 4)]
    for stem in ("sweep-ptq", "sweep-sym4"):
        for suffix in (".csv", ".png"):
            assert (run / "quantize" / f"{stem}{suffix}").is_file()
    html = quantize_section(run)
    assert "<h3>Sweep: ptq</h3>" in html and "<h3>Sweep: sym4</h3>" in html
    assert html.count("data:image/png") == 4  # learnables, memory, one plot per sweep


def test_one_unnamed_sweep_keeps_todays_files(trained, tmp_path):
    from tinykws.run.pipeline import Run
    from tinykws.run.stages.prune import stage_prune

    recipe, run_dir = trained
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    fine_tune = {"epochs": 1, "batch_size": 16, "augment": {"enabled": False}}
    table = {"method": "l1", "amount": 0.25, "retrain_enabled": False}
    table["sweep"] = {"amounts": [0.3], "fine_tune": fine_tune, "latency_runs": 2}
    stage_prune(Run(recipe=replace(recipe, extra={"prune": table}), dir=run))
    summary = json.loads((run / "prune" / "summary.json").read_text())
    assert summary["sweep"]["rows"] == summary["sweeps"][0]["rows"]
    assert json.loads((run / "prune" / "sweep.json").read_text())["name"] == "l1"
    assert not list((run / "prune").glob("sweep-*"))
    html = prune_section(run)
    assert "<h3>Sweep: l1</h3>" in html and html.count("data:image/png") == 3


def test_sweep_mcu_time_without_the_toolchain_is_the_labelled_estimate(monkeypatch):
    from tinykws.models import build_model, count_macs
    from tinykws.run import pruning

    monkeypatch.setattr(pruning, "can_emulate", lambda: False)
    model = build_model({"family": "dscnn", "first_filters": 8, "block_filters": [8]})
    figures = pruning.sweep_mcu_time({}, None)(model)
    assert figures["source"] == "estimate: network only, 2 cycles per MAC, 80 MHz"
    assert figures["ms"] == pytest.approx(2 * count_macs(model) / 80e6 * 1e3)
