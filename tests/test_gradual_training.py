"""Gradual magnitude pruning during the train stage ([train.prune]): schedule, recipe parsing,
an unchanged train key without it, and a tiny run whose trained model comes out sparse."""

import json

import pytest
import torch
from support import tone_run, tone_training_data

from tinykws.cache import content_key
from tinykws.checkpoint import load_checkpoint
from tinykws.data.augment import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.models import build_model, config_from_dict, model_config
from tinykws.prune.gradual import PolynomialDecay, TrainPruneConfig, fit_pruned
from tinykws.report.html import training_section
from tinykws.run.pipeline import stage_config
from tinykws.run.recipe import parse
from tinykws.train.loop import TrainConfig

MODEL = {"preset": "dscnn_s", "first_filters": 8, "block_filters": [12, 12]}
TRAIN = {"epochs": 3, "batch_size": 16, "augment": {"enabled": False}, "device": "cpu"}
PRUNE = {"initial_sparsity": 0.3, "final_sparsity": 0.7, "begin": 0.0, "end": 0.5, "frequency": 2}
BASE = {"model": {"preset": "tinyconv"}, "train": {"epochs": 4}}


def test_schedule_in_fractions_of_training():
    schedule = TrainPruneConfig(0.5, 0.85, begin=0.25, end=0.75, frequency=5).schedule(10, 8)
    # 80 steps: the ramp runs from step 20 to step 60
    assert schedule == PolynomialDecay(0.5, 0.85, 20, 60, 3.0, 5)
    assert schedule(20) == (True, 0.5) and schedule(60) == (True, 0.85)
    assert schedule(61) == (False, 0.85)


def test_schedule_in_epochs():
    config = TrainPruneConfig(begin=1, end=3, unit="epoch", frequency=4)
    assert config.schedule(steps_per_epoch=10, epochs=5) == PolynomialDecay(
        0.5, 0.85, 10, 30, 3.0, 4
    )


@pytest.mark.parametrize(
    "table, words",
    [
        ({"end": 2.0}, 'unit = "epoch"'),
        ({"begin": 0.6, "end": 0.5}, "before end"),
        ({"final_sparsity": 1.0}, "final_sparsity"),
        ({"unit": "steps"}, "train.prune.unit"),
        ({"frequncy": 10}, "frequency"),
    ],
)
def test_bad_train_prune_table_is_one_clear_error(table, words):
    with pytest.raises(TinyKWSError, match=words):
        parse({**BASE, "train": {"epochs": 4, "prune": table}})


def test_recipe_round_trips_train_prune():
    recipe = parse({**BASE, "train": {"epochs": 4, "prune": PRUNE}})
    assert recipe.train_prune == TrainPruneConfig(**PRUNE)
    again = parse({**BASE, "train": recipe.to_dict()["train"]})
    assert again.train_prune == recipe.train_prune and again.train == recipe.train


def test_train_key_unchanged_without_train_prune():
    plain = parse(BASE)
    assert plain.train_prune is None
    assert stage_config(plain, "train") == (plain.frontend, plain.model, plain.train)
    pruned = parse({**BASE, "train": {"epochs": 4, "prune": PRUNE}})
    key = content_key("train", stage_config(pruned, "train"), "")
    assert key != content_key("train", stage_config(plain, "train"), "")


@pytest.fixture(scope="module")
def pruned_run(tone_corpus, tmp_path_factory):
    train = TRAIN | {"prune": PRUNE}
    return tone_run(tone_corpus, tmp_path_factory.mktemp("gradual"), "mfcc", MODEL, train)


def test_trained_model_comes_out_sparse(pruned_run):
    _, run_dir = pruned_run
    tensors, meta = load_checkpoint(run_dir / "train" / "best.safetensors")
    assert not any("parametrizations" in k for k in tensors)  # masks made permanent
    model = build_model(config_from_dict(meta["model"]))
    model.load_state_dict(tensors)  # loads as a plain model
    weights = [
        m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    # per-layer magnitude pruning at 70 % (rounding per layer: within 2 %)
    assert zeros / total == pytest.approx(0.7, abs=0.02)
    metrics = json.loads((run_dir / "metrics.json").read_text())["train"]
    assert metrics["sparsity"] == pytest.approx(zeros / total, abs=1e-4)
    assert metrics["prune_schedule"]["final_sparsity"] == 0.7
    assert metrics["best_epoch"] == TRAIN["epochs"]  # the last, sparsest epoch is kept


def test_fit_pruned_resumes_a_finished_run(tone_corpus, tmp_path):
    data = tone_training_data(tone_corpus)
    cfg = TrainConfig(epochs=2, batch_size=32, augment=AugmentConfig(enabled=False), device="cpu")
    prune = TrainPruneConfig(0.3, 0.6, end=0.5, frequency=2)
    weights = []
    for _ in range(2):  # the second call finds the finished run and resumes it: same weights
        torch.manual_seed(0)
        model = build_model(model_config(MODEL, 12, data.val_features.shape[1:]))
        history, report = fit_pruned(model, data, cfg, prune, tmp_path, {})
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        assert report["sparsity"]["total"] == pytest.approx(0.6, abs=0.03)
        assert len(history["val_accuracy"]) == 2
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_report_says_how_sparse_the_trained_model_is(pruned_run):
    _, run_dir = pruned_run
    sparsity = json.loads((run_dir / "metrics.json").read_text())["train"]["sparsity"]
    assert f"{100 * sparsity:.1f}% of the weights are zero" in training_section(run_dir)
