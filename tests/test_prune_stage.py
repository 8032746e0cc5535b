"""The prune stage of a run and the `tinykws prune` verb, end to end on the tone corpus."""

import dataclasses
import json
import re
import shutil

import pytest
import torch
from prune_helpers import one_thread  # noqa: F401
from support import tone_run

from tinykws.cli import main
from tinykws.measure.predictors import load_predictor
from tinykws.run.pipeline import Run

MODEL = {"family": "dscnn", "first_filters": 12, "block_filters": [12, 12]}
TRAIN = {"epochs": 3, "batch_size": 32, "augment": {"enabled": False}, "device": "cpu"}

PRUNE = {
    "method": "taylor",
    "taylor": {"max_iterations": 2, "max_to_prune": 6, "minibatches": 3, "batch_size": 16},
    "retrain": {"epochs": 1, "batch_size": 32, "augment": {"enabled": False}, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained_run(tone_corpus, tmp_path_factory):
    recipe, run_dir = tone_run(
        tone_corpus, tmp_path_factory.mktemp("prune-run"), "mfcc", MODEL, TRAIN
    )
    return Run(recipe=recipe, dir=run_dir)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_stage_prunes_retrains_and_reports(trained_run, tmp_path):
    from tinykws.report.sections import prune_section as report_section
    from tinykws.run.stages.prune import stage_prune

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.dir, run_dir)
    recipe = dataclasses.replace(trained_run.recipe, extra={"prune": PRUNE})
    run = Run(recipe=recipe, dir=run_dir)
    metrics = stage_prune(run)
    assert metrics["macs_after"] < metrics["macs_before"]
    assert 0 <= metrics["val_accuracy_after"] <= 1
    assert json.loads((run_dir / "final.json").read_text()) == {"model": "prune/pruned.safetensors"}
    assert json.loads((run_dir / "metrics.json").read_text())["prune"] == json.loads(
        json.dumps(metrics)
    )
    for name in ("learnables.png", "param_memory.png", "taylor_progress.png", "summary.json"):
        assert (run_dir / "prune" / name).is_file(), name
    predictor = load_predictor(run_dir)  # rebuilt from the pruned config alone
    widths = (predictor.module.config.first_filters, *predictor.module.config.block_filters)
    assert sum(widths) == 36 - 12
    logits = predictor.logits(torch.randn(2, 49, 10).numpy())
    assert logits.shape == (2, 12)
    html = report_section(run_dir)
    assert "Pruning" in html and html.count("data:image/png") == 3


def test_cli_prunes_a_checkpoint_without_data(trained_run, tmp_path, capsys):
    source = trained_run.dir / "train" / "best.safetensors"
    out = tmp_path / "small.safetensors"
    rc = main(["prune", str(source), "--method", "linf", "--amount", "0.5", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    predictor = load_predictor(out)
    assert predictor.module.config.block_filters == (6, 6)
    assert json.loads(out.with_suffix(".json").read_text())["method"] == "linf"


def test_cli_fine_tunes_with_data(trained_run, tone_corpus, tmp_path, capsys):
    source = trained_run.dir / "train" / "best.safetensors"
    out = tmp_path / "sparse.safetensors"
    rc = main(
        [
            "prune",
            str(source),
            "--method",
            "magnitude",
            "--amount",
            "0.6",
            "--data",
            str(tone_corpus),
            "--fine-tune-epochs",
            "1",
            "--unknown-weight",
            "2",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["after"]["nonzero_params"] < 0.5 * summary["before"]["nonzero_params"]
    assert "retrain" in summary and "val_accuracy" in summary["after"]
    from tinykws.checkpoint import load_checkpoint

    meta = load_checkpoint(out)[1]  # how the pruned network was fine-tuned, for QAT later
    assert meta["train"]["augment"]["enabled"] is False and meta["train"]["unknown_weight"] == 2
    assert load_checkpoint(source)[1]["train"]["unknown_weight"] == 1
    assert meta["pruned"]["method"] == "magnitude"


@pytest.mark.parametrize(
    ("options", "augmented", "unknown_weight"),
    [([], True, 2.5), (["--no-augment", "--unknown-weight", "1.5"], False, 1.5)],
)
def test_cli_fine_tuning_defaults_to_the_models_training(options, augmented, unknown_weight):
    from tinykws.cli import build_parser
    from tinykws.cli.prune import prune_config

    meta = {"train": {"augment": {"enabled": True, "time_shift_ms": 50.0}, "unknown_weight": 2.5}}
    args = build_parser().parse_args(["prune", "m", "--method", "taylor", "--out", "o", *options])
    cfg = prune_config(args, False, meta)
    assert cfg.retrain.augment.enabled is augmented
    assert cfg.retrain.unknown_weight == cfg.taylor.unknown_weight == unknown_weight
    if augmented:
        assert cfg.retrain.augment.time_shift_ms == 50.0
    assert prune_config(args, False, {}).retrain.augment.enabled is False  # no record


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "l1", "--amount", "1.0"], r"prune.amount must be in \[0.0, 1.0\)"),
        (["--method", "taylor"], "needs --data"),
        (["--method", "l1", "--amounts", "0.2,1.2", "--data", "x"], "prune.sweep.amounts"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    trained_run, tmp_path, capsys, extra, message
):
    out = tmp_path / "new.safetensors"
    source = trained_run.dir / "train" / "best.safetensors"
    assert main(["prune", str(source), *extra, "--out", str(out)]) == 2
    assert re.search(message, one_error_line(capsys))
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    rc = main(
        [
            "prune",
            str(tmp_path / "nope.safetensors"),
            "--method",
            "l1",
            "--out",
            str(tmp_path / "o.safetensors"),
        ]
    )
    assert rc == 2 and "no such model file" in one_error_line(capsys)


def test_cli_sweep_times_each_point_on_the_microcontroller(
    trained_run, tone_corpus, tmp_path, capsys
):
    from tinykws.export.c.mcu import can_emulate

    source = trained_run.dir / "train" / "best.safetensors"
    out = tmp_path / "sweep"
    args = ["prune", str(source), "--method", "l1", "--amounts", "0.5", "--data", str(tone_corpus)]
    assert main([*args, "--fine-tune-epochs", "1", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    (row,) = result["rows"]
    expected = "Cortex-M4 emulated" if can_emulate() else "estimate"
    assert row["mcu_ms"] > 0 and row["mcu_source"].startswith(expected)
    printed = capsys.readouterr().out
    assert "MCU ms" in printed and f"MCU ms: {row['mcu_source']}" in printed.replace("\n", "")
    assert (out / "sweep.png").stat().st_size > 1000
