"""Unstructured and gradual magnitude pruning: exact mask counts, pruned weights stay exactly
zero through fine-tuning, finalize leaves an ordinary model, and the gradual schedule is TF-MOT's
PolynomialDecay."""

import math

import pytest
import torch
import torch.nn.functional as F
from prune_helpers import one_thread, quick_train_config, random_inputs, tiny_model  # noqa: F401

from tinykws.errors import TinyKWSError
from tinykws.prune import PruneConfig, prune
from tinykws.prune.config import GradualConfig
from tinykws.prune.gradual import GradualPruner, PolynomialDecay, schedule_for
from tinykws.prune.retrain import retrain
from tinykws.prune.unstructured import (
    apply_magnitude_masks,
    finalize,
    magnitude_masks,
    sparsity,
    weight_layers,
)


def test_layer_scope_removes_the_smallest_weights_of_each_layer():
    model = tiny_model("dscnn")
    masks = magnitude_masks(model, 0.3, "layer")
    for name, layer in weight_layers(model).items():
        weight, mask = layer.weight.detach().abs(), masks[name]
        assert int((mask == 0).sum()) == int(0.3 * weight.numel())
        if (mask == 0).any():
            assert weight[mask == 0].max() <= weight[mask == 1].min()


def test_global_scope_uses_one_threshold():
    model = tiny_model("dscnn")
    masks = magnitude_masks(model, 0.6, "global")
    weights = torch.cat([m.weight.detach().abs().flatten() for m in weight_layers(model).values()])
    flat = torch.cat([masks[n].flatten() for n in weight_layers(model)])
    assert int((flat == 0).sum()) == int(0.6 * weights.numel())
    assert weights[flat == 0].max() <= weights[flat == 1].min()


def test_pruned_weights_stay_exactly_zero_while_training():
    model = tiny_model("dscnn").train()
    apply_magnitude_masks(model, 0.5)
    zero = {n: m.weight.detach() == 0 for n, m in weight_layers(model).items()}
    before = {n: m.weight.detach().clone() for n, m in weight_layers(model).items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    inputs, labels = random_inputs(model, batch=8), torch.arange(8) % 5
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    for name, layer in weight_layers(model).items():
        weight = layer.weight.detach()
        assert torch.all(weight[zero[name]] == 0)
        assert not torch.equal(weight[~zero[name]], before[name][~zero[name]])
    finalize(model)
    assert set(model.state_dict()) == set(tiny_model("dscnn").state_dict())
    assert all(torch.all(m.weight[zero[n]] == 0) for n, m in weight_layers(model).items())


def test_magnitude_prune_returns_a_finalized_sparse_model():
    model = tiny_model("commandnet")
    pruned, report = prune(model, PruneConfig(method="magnitude", amount=0.7, scope="global"))
    assert abs(sparsity(pruned)["total"] - 0.7) < 1e-3
    assert report["after"]["nonzero_params"] < 0.5 * report["before"]["nonzero_params"]
    assert report["after"]["macs"] == report["before"]["macs"]  # same dense shape
    assert set(pruned.state_dict()) == set(model.state_dict())
    assert sparsity(model)["total"] == 0.0  # the input model is untouched


def polynomial_decay_reference(step, initial, final, begin, end, power):
    # TF-MOT PolynomialDecay: p = min(1, max(0, (step - begin) / (end - begin)))
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return (initial - final) * (1 - p) ** power + final


def test_schedule_matches_polynomial_decay():
    schedule = PolynomialDecay(0.5, 0.85, begin_step=100, end_step=1100, power=3, frequency=50)
    for step in (0, 99, 100, 150, 333, 600, 1099, 1100, 5000):
        expected = polynomial_decay_reference(step, 0.5, 0.85, 100, 1100, 3)
        assert math.isclose(schedule.sparsity(step), expected, rel_tol=0, abs_tol=1e-12)
    assert schedule.sparsity(600) == pytest.approx(0.85 - 0.35 / 8)  # half way: (1/2)^3
    assert [s for s in range(0, 1300) if schedule.should_prune(s)] == list(range(100, 1101, 50))


def test_default_end_step_is_three_quarters_of_training():
    schedule = schedule_for(GradualConfig(frequency=10), total_steps=200)
    assert (schedule.begin_step, schedule.end_step) == (0, 150)


def test_gradual_pruner_follows_the_schedule_in_training_only():
    model = tiny_model("tinyconv").train()
    pruner = GradualPruner(model, PolynomialDecay(0.2, 0.8, 0, 4, frequency=2))
    inputs = random_inputs(model)
    seen = []
    for _ in range(6):
        model(inputs)
        seen.append(round(sparsity(model)["total"], 3))
    model.eval()(inputs)  # evaluation passes do not advance the schedule
    assert pruner.step == 6
    assert seen[0] == pytest.approx(0.2, abs=1e-3) and seen[-1] == pytest.approx(0.8, abs=1e-3)
    assert seen == sorted(seen)


def test_gradual_pruning_reaches_its_final_sparsity_through_fit(tone_corpus):
    from prune_helpers import tone_data

    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    cfg = PruneConfig(
        method="gradual",
        retrain=quick_train_config(epochs=2),
        gradual=GradualConfig(initial_sparsity=0.3, final_sparsity=0.6, frequency=2),
    )
    pruned, report = prune(model, cfg, data)
    sizes = [m.weight.numel() for m in weight_layers(model).values()]
    expected = sum(int(0.6 * n) for n in sizes) / sum(sizes)  # floor(0.6 n) per layer
    assert report["sparsity"]["total"] == pytest.approx(expected, abs=1e-9)
    assert sparsity(pruned)["total"] == pytest.approx(expected, abs=1e-9)
    assert set(pruned.state_dict()) == set(model.state_dict())


def test_retrain_keeps_masks(tone_corpus):
    from prune_helpers import tone_data

    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    apply_magnitude_masks(model, 0.5)
    zero = {n: m.weight.detach() == 0 for n, m in weight_layers(model).items()}
    retrain(model, data, quick_train_config(epochs=1))
    assert all(torch.all(m.weight[zero[n]] == 0) for n, m in weight_layers(model).items())


def test_gradual_needs_data():
    with pytest.raises(TinyKWSError, match="give it data"):
        prune(tiny_model("dscnn"), PruneConfig(method="gradual"))


@pytest.mark.parametrize("family", ["dscnn", "commandnet"])
def test_masked_layers_keep_their_macs_in_the_summary(family):
    from tinykws.models import count_macs, summary

    model = tiny_model(family)
    dense_rows = summary(model)
    apply_magnitude_masks(model, 0.5)
    masked_rows = summary(model)
    assert [(r.name, r.macs) for r in masked_rows] == [(r.name, r.macs) for r in dense_rows]
    assert count_macs(model) == sum(r.macs for r in dense_rows) > 0
