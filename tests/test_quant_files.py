"""Quantized model files: save and load with every backend, the quantize and compare verbs,
`evaluate --backend int`, and one-line errors that leave nothing behind."""

import json

import numpy as np
import pytest
import torch
from quant_support import SMALL_DSCNN, model_meta, tone_data, train_small

from tinykws.checkpoint import load_checkpoint, save_checkpoint
from tinykws.cli import main
from tinykws.errors import TinyKWSError
from tinykws.ir.graph import Graph
from tinykws.measure.predictors import load_predictor
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.files import save_quantized
from tinykws.quant.scoring import lower_if_possible


@pytest.fixture(scope="module")
def float_model(tone_corpus, tmp_path_factory):
    """(checkpoint path, model, data) of a small DS-CNN trained on the tone corpus."""
    out = tmp_path_factory.mktemp("float")
    data = tone_data(tone_corpus)
    model = train_small(data, SMALL_DSCNN, out, with_meta=True)
    return out / "best.safetensors", model, data


def quantize_verb(checkpoint, data, out, *options) -> int:
    """`tinykws quantize CHECKPOINT --data DATA --out OUT OPTIONS...`; its exit status."""
    return main(["quantize", str(checkpoint), "--data", str(data), "--out", str(out), *options])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("method", ["ptq", "dynamic"])
def test_saved_model_loads_with_every_backend(float_model, tmp_path, method):
    _, model, data = float_model
    quantized = quantize(
        model,
        QuantConfig(method=method, weight_bits=4),
        QuantData(data.train_features[:24], data.normalization),
    )
    graph = lower_if_possible(quantized)
    path = save_quantized(tmp_path / "q.safetensors", quantized, model_meta(data, model), graph)
    module = quantized.module
    with torch.no_grad():
        x = next(
            iter(
                [
                    data.normalization.apply_torch(
                        torch.from_numpy(np.asarray(data.val_features))
                    ).unsqueeze(1)
                ]
            )
        )
        expected = {
            "fakequant": module.set_mode("fakequant")(x).numpy(),
            "torch": module.set_mode("float")(x).numpy(),
        }
    module.set_mode("fakequant")
    for backend in ("torch", "fakequant"):
        loaded = load_predictor(path, backend)
        assert np.array_equal(loaded.logits(data.val_features), expected[backend]), backend
    if method == "ptq":
        assert np.array_equal(
            load_predictor(path, "int").logits(data.val_features), expected["fakequant"]
        )  # bit-exact on these clips
        graph_only = load_predictor(tmp_path / "q.json", "int")
        assert graph_only.labels == load_predictor(path, "int").labels
    else:
        with pytest.raises(TinyKWSError, match="has no integer graph"):
            load_predictor(path, "int")


def test_quantize_verb_then_evaluate_int_and_compare(float_model, tone_corpus, tmp_path, capsys):
    checkpoint, _, _ = float_model
    out = tmp_path / "int8"
    assert quantize_verb(checkpoint, tone_corpus, out, "--calibration-per-class", "4") == 0
    for name in (
        "model.safetensors",
        "model.json",
        "model.npz",
        "summary.json",
        "learnables.png",
        "parameter_memory.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation"]["agreement"]["fakequant_int"] >= 0.995
    assert summary["compression_ratio"] > 3.0  # float32 -> int8 weights, int32 biases
    assert Graph.load(out / "model.json").metadata["labels"][-1] == "_silence_"
    capsys.readouterr()
    result = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(out / "model.safetensors"),
                "--data",
                str(tone_corpus),
                "--backend",
                "int",
                "--json",
                str(result),
            ]
        )
        == 0
    )
    accuracy = json.loads(result.read_text())["accuracy"]
    assert accuracy == pytest.approx(summary["validation"]["accuracy"]["int"])
    comparison = tmp_path / "compare.json"
    assert (
        main(
            [
                "compare",
                str(checkpoint),
                str(out / "model.safetensors"),
                "--data",
                str(tone_corpus),
                "--json",
                str(comparison),
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "accuracy drop" in shown and "sample predictions" in shown
    cmp = json.loads(comparison.read_text())
    assert cmp["backend_a"] == "torch" and cmp["backend_b"] == "int"
    assert len(cmp["samples"]) == 10 and cmp["compression_ratio"] > 3.0
    assert cmp["drop"] == pytest.approx(cmp["accuracy_a"] - cmp["accuracy_b"])


def test_bad_width_is_one_line_and_writes_nothing(float_model, tone_corpus, tmp_path, capsys):
    checkpoint, _, _ = float_model
    out = tmp_path / "never"
    assert quantize_verb(checkpoint, tone_corpus, out, "--bits", "9") == 2
    assert "quantize.weight_bits must be in [2, 8]; got 9" in one_error_line(capsys)
    assert not out.exists()


def test_unlowerable_layer_is_one_line_naming_it_and_writes_nothing(
    float_model, tone_corpus, tmp_path, capsys, no_subspectral_op
):
    _, _, data = float_model
    model = build_model(model_config("bcresnet1", 12, (98, 40)))
    norm = {"mean": [0.0] * 40, "std": [1.0] * 40}  # one per log-mel bin
    meta = model_meta(data, model) | {"frontend": "logmel", "normalization": norm}
    checkpoint = tmp_path / "bc.safetensors"
    save_checkpoint(checkpoint, model.state_dict(), meta)
    out = tmp_path / "never"
    assert quantize_verb(checkpoint, tone_corpus, out, "--calibration-per-class", "1") == 2
    assert "stages.0.0.f2.ssn (SubSpectralNorm)" in one_error_line(capsys)
    assert not out.exists()


def test_float_checkpoint_refuses_quantized_backends(float_model, capsys):
    checkpoint, _, _ = float_model
    with pytest.raises(TinyKWSError, match="needs a quantized model"):
        load_predictor(checkpoint, "int")


def test_sweep_from_the_command_line(float_model, tone_corpus, tmp_path, capsys):
    checkpoint, _, _ = float_model
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "quantize",
                str(checkpoint),
                "--data",
                str(tone_corpus),
                "--out",
                str(out),
                "--calibration-per-class",
                "2",
                "--sweep-bits",
                "4,8",
                "--methods",
                "ptq",
                "--schemes",
                "sym",
            ]
        )
        == 0
    )
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("method,scheme,weight_bits") and len(lines) == 3
    assert (out / "sweep.png").is_file() and "accuracy vs bit width" in capsys.readouterr().out


def test_float_only_steps_refuse_a_quantized_model_in_one_line(float_model, tmp_path, capsys):
    """Pruning (or re-quantizing) needs the float checkpoint; a quantized one is named as such."""
    checkpoint, model, data = float_model
    quantized = quantize(model, QuantConfig(), QuantData(data.val_features, data.normalization))
    _, meta = load_checkpoint(checkpoint)
    save_quantized(tmp_path / "q.safetensors", quantized, meta, lower_if_possible(quantized))
    out = tmp_path / "pruned.safetensors"
    args = ["prune", str(tmp_path / "q.safetensors"), "--method", "l1", "--out", str(out)]
    assert main(args) == 2
    assert "a ptq quantized model" in one_error_line(capsys) and not out.exists()
    tensors, meta = load_checkpoint(checkpoint)
    tensors.pop("classifier.weight")
    save_checkpoint(tmp_path / "broken.safetensors", tensors, meta)
    with pytest.raises(TinyKWSError, match=r"1 missing and 0 unexpected tensors"):
        load_predictor(tmp_path / "broken.safetensors")


def test_qat_from_the_command_line_fine_tunes_as_the_checkpoint_was_trained(
    float_model, tone_corpus, tmp_path
):
    tensors, meta = load_checkpoint(float_model[0])
    trained = {"augment": {**meta["train"]["augment"], "enabled": True, "time_masks": 1}}
    trained["unknown_weight"] = 2.0
    checkpoint = tmp_path / "trained.safetensors"  # as if trained with augmentation
    save_checkpoint(checkpoint, tensors, meta | {"train": trained})
    common = ["--method", "qat", "--qat-epochs", "1", "--calibration-per-class", "2"]
    assert quantize_verb(checkpoint, tone_corpus, tmp_path / "a", *common) == 0
    qat = json.loads((tmp_path / "a" / "summary.json").read_text())["config"]["qat"]
    assert qat["augment"] == trained["augment"]
    assert qat["unknown_weight"] == trained["unknown_weight"]
    options = [*common, "--qat-no-augment", "--unknown-weight", "3"]
    assert quantize_verb(checkpoint, tone_corpus, tmp_path / "b", *options) == 0
    qat = json.loads((tmp_path / "b" / "summary.json").read_text())["config"]["qat"]
    assert qat["augment"]["enabled"] is False and qat["unknown_weight"] == 3.0
