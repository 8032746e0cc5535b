"""The evaluate stage scores every model a run produced (trained, pruned, quantized) on the
train and validation splits, each checked against an independent scoring; the report shows
them side by side; `[evaluate] models` limits them; chunked scoring equals one pass."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from support import tone_run

from tinykws.errors import TinyKWSError
from tinykws.measure.predictors import load_predictor
from tinykws.plots import confusion_summaries, plot_confusion
from tinykws.report.html import models_section, write_report
from tinykws.run.pipeline import Run, run_recipe
from tinykws.run.recipe import EvaluateConfig, parse
from tinykws.run.stages.data import split_arrays
from tinykws.train import evaluate as evaluation

MODEL = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}
LATER = {
    "prune": {"method": "l1", "amount": 0.25, "retrain_enabled": False},
    "quantize": {"calibration_per_class": 2},
}
STAGES = ("data", "train", "prune", "quantize", "evaluate", "report")


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    train = {"epochs": 3, "batch_size": 16, "augment": {"enabled": False}}
    return tone_run(tone_corpus, tmp_path_factory.mktemp("models"), "mfcc", MODEL, train)


def run_with(trained, tmp_path, evaluate: EvaluateConfig, stages=STAGES):
    recipe, run_dir = trained
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    full = replace(recipe, stages=stages, extra=LATER, evaluate=evaluate)
    run_recipe(full, out)
    return full, out


def parse_run(run_dir):
    """The recipe a run directory recorded (recipe.toml)."""
    from tinykws.run.recipe import load_recipe

    return load_recipe(run_dir / "recipe.toml")


def independent_accuracy(recipe, run_dir, model: str, split: str) -> float:
    """Top-1 accuracy of a model file on a split, scored directly (not by the stage)."""
    _, _, features, labels = split_arrays(Run(recipe=recipe, dir=run_dir), split)
    return evaluation.top1_accuracy(load_predictor(run_dir / model).logits(features), labels)


def test_every_model_is_scored_on_train_and_validation(trained, tmp_path):
    recipe, run_dir = run_with(trained, tmp_path, EvaluateConfig())
    out = run_dir / "evaluate" / "models"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == ["train", "validation"]
    assert list(summary["models"]) == ["original", "pruned", "quantized"]
    files = {
        "original": "train/best.safetensors",
        "pruned": "prune/pruned.safetensors",
        "quantized": "quantize/model.safetensors",
    }
    for name, path in files.items():
        for split in ("train", "validation"):
            result = json.loads((out / name / f"{split}.json").read_text())
            expected = independent_accuracy(recipe, run_dir, path, split)
            assert result["accuracy"] == summary["models"][name][split] == expected
            assert sum(map(sum, result["confusion"])) == result["n"]
            assert result["file"] == path and "predictions" not in result
            assert (out / name / f"confusion_{split}.png").stat().st_size > 1000
    # the final model's own files are still there, and agree with the comparison
    final = json.loads((run_dir / "evaluate" / "validation.json").read_text())
    assert final["accuracy"] == summary["models"]["quantized"]["validation"]
    assert "predictions" in final and (run_dir / "evaluate" / "confusion_validation.png").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())["evaluate"]
    assert metrics["models"] == summary["models"]
    assert metrics["validation"]["accuracy"] == final["accuracy"]
    section = models_section(run_dir)
    assert section.count("<figure>") == 3 and section.count("data:image/png") == 3
    for name in files:
        assert f"<td>{name}</td>" in section
    assert "Every model of the run" in write_report(run_dir).read_text()


def test_models_limits_what_is_scored(trained, tmp_path):
    _, run_dir = run_with(trained, tmp_path, EvaluateConfig(models=("final",)))
    summary = json.loads((run_dir / "evaluate" / "models" / "summary.json").read_text())
    assert list(summary["models"]) == ["quantized"]  # the final model, under its own name
    assert not (run_dir / "evaluate" / "models" / "original").exists()

    # the same run directory with no models: the earlier comparison goes
    recorded = parse_run(run_dir)
    assert recorded.evaluate.models == ("final",)
    run_recipe(replace(recorded, evaluate=EvaluateConfig(models=())), run_dir)
    assert not (run_dir / "evaluate" / "models").exists()
    assert "models" not in json.loads((run_dir / "metrics.json").read_text())["evaluate"]
    assert models_section(run_dir) == ""
    assert "<h2>Evaluation</h2>" in write_report(run_dir).read_text()


def test_models_without_their_stage_are_left_out(trained, tmp_path, monkeypatch):
    from tinykws import progress

    monkeypatch.setattr(progress, "enabled", lambda: True)  # the bar is drawn, as on a terminal
    stages = ("data", "train", "evaluate")
    _, run_dir = run_with(trained, tmp_path, EvaluateConfig(splits=("validation",)), stages)
    summary = json.loads((run_dir / "evaluate" / "models" / "summary.json").read_text())
    assert list(summary["models"]) == ["original"]


@pytest.mark.parametrize(
    "evaluate, message",
    [
        ({"models": ["pruned"]}, "names 'pruned', but the recipe has no 'prune' stage"),
        ({"models": ["teacher"]}, "evaluate.models must be one of all, original, pruned"),
    ],
)
def test_bad_models_are_one_clear_error(evaluate, message):
    with pytest.raises(TinyKWSError, match=message):
        parse({"evaluate": evaluate, "model": {"preset": "tinyconv"}})


class Halves:
    """A predictor whose logits depend on each clip alone (a fixed linear map)."""

    labels = ("a", "b")

    def logits(self, features):
        return features.reshape(len(features), -1)[:, :2] * np.array([1.0, -1.0])


def test_chunked_scoring_equals_one_pass_and_counts_every_clip(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 3, 2)).astype(np.float32)
    one_pass = Halves().logits(features)
    monkeypatch.setattr(evaluation, "CHUNK_CLIPS", 4)
    counted = []
    chunked = evaluation.split_logits(Halves(), features, counted.append)
    np.testing.assert_array_equal(chunked, one_pass)
    assert counted == [4, 4, 2]


def test_confusion_summaries_are_recall_and_precision(tmp_path):
    confusion = [[5, 1, 0], [2, 3, 0], [0, 0, 0]]
    recall, precision = confusion_summaries(confusion)
    np.testing.assert_allclose(recall, [5 / 6, 3 / 5, 0.0])
    np.testing.assert_allclose(precision, [5 / 7, 3 / 4, 0.0])
    report = evaluation.classification_report(
        ["a", "b", "c"],
        np.array([0] * 6 + [1] * 5),
        np.eye(3)[[0] * 5 + [1] + [0] * 2 + [1] * 3],
    )
    assert report["confusion"] == confusion
    assert [report["per_class"][c]["recall"] for c in "ab"] == pytest.approx(recall[:2])
    result = {"labels": ["a", "b", "c"], "confusion": confusion, "accuracy": 8 / 11}
    plot_confusion(result, tmp_path / "c.png", "pruned")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_the_default_round_trips_through_recipe_toml_without_later_stages():
    import tomllib

    from tinykws.config import dump_toml

    recipe = parse({"model": {"preset": "tinyconv"}})
    assert recipe.evaluate.models == ("all",)
    assert parse(tomllib.loads(dump_toml(recipe.to_dict()))) == recipe
