"""Norm-based channel pruning: the channels with the smallest L1 / L2 / Linf filter norms go,
per layer or globally, and the kept weights are copied exactly; sweeps record both curves."""

import json

import pytest
import torch
from prune_helpers import one_thread, quick_train_config, tiny_model, tone_data  # noqa: F401

from tinykws.config import from_dict
from tinykws.errors import TinyKWSError
from tinykws.prune import PruneConfig, PruneSweepConfig, prune, sweep

REFERENCE_NORMS = {
    "l1": lambda w: w.abs().sum(1),
    "l2": lambda w: (w**2).sum(1).sqrt(),
    "linf": lambda w: w.abs().max(1).values,
}


@pytest.mark.parametrize("method", ["l1", "l2", "linf"])
def test_lowest_norm_filters_are_removed_and_kept_weights_copied(method):
    model = tiny_model("tinyconv")  # one conv, 6 filters, then an FC over the flattened map
    weight = model.conv.conv.weight.detach().flatten(1)
    kept = sorted(torch.argsort(REFERENCE_NORMS[method](weight))[3:].tolist())
    cfg = PruneConfig(method=method, amount=0.5, retrain_enabled=False)
    pruned, report = prune(model, cfg)
    assert pruned.config.filters == 3 and report["removed"] == {"conv.conv": 3}
    assert torch.equal(pruned.conv.conv.weight, model.conv.conv.weight[kept])
    assert torch.equal(pruned.conv.conv.bias, model.conv.conv.bias[kept])
    # The FC keeps the columns of the kept channels (flatten order: channel, frame, bin).
    columns = model.classifier.weight.view(5, 6, -1)[:, kept].flatten(1)
    assert torch.equal(pruned.classifier.weight, columns)


def test_layer_scope_prunes_every_layer_by_the_amount():
    model = tiny_model("dscnn")  # widths 8, 8, 6
    pruned, _ = prune(model, PruneConfig(method="l2", amount=0.5, retrain_enabled=False))
    assert (pruned.config.first_filters, pruned.config.block_filters) == (4, (4, 3))


@torch.no_grad()
def weaken_first_block(model):
    # Channel c of this group is made by the pointwise filter and the next depthwise kernel.
    model.blocks[0].pointwise.conv.weight.mul_(1e-3)
    model.blocks[1].depthwise.conv.weight.mul_(1e-3)


def test_global_scope_ranks_across_layers():
    model = tiny_model("dscnn")
    weaken_first_block(model)
    pruned, report = prune(
        model, PruneConfig(method="l1", amount=0.3, scope="global", retrain_enabled=False)
    )
    # floor(0.3 * 22) = 6 channels, all from the weak layer (8 -> 2).
    assert report["removed"]["blocks.0.pointwise.conv"] == 6
    assert pruned.config.block_filters == (2, 6)


def test_global_request_that_empties_a_layer_is_an_error():
    model = tiny_model("dscnn")
    weaken_first_block(model)
    with pytest.raises(TinyKWSError, match="would remove all 8"):
        prune(model, PruneConfig(method="l1", amount=0.5, scope="global", retrain_enabled=False))


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5])
def test_amount_outside_zero_one_is_an_error(amount):
    with pytest.raises(TinyKWSError, match=r"prune.amount must be in \[0.0, 1.0\)"):
        from_dict(PruneConfig, {"method": "l1", "amount": amount})


def test_nothing_prunable_is_an_error():
    model = tiny_model("tinyconv")
    single = type(model)(type(model.config)(**{**model.config.__dict__, "filters": 1}))
    with pytest.raises(TinyKWSError, match="nothing prunable"):
        prune(single, PruneConfig(method="l1", retrain_enabled=False))


@pytest.mark.slow
def test_sweep_records_accuracy_with_and_without_fine_tuning(tone_corpus, tmp_path):
    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    cfg = PruneSweepConfig(
        method="l1", amounts=(0.25, 0.5), fine_tune=quick_train_config(1), latency_runs=3
    )
    result = sweep(model, cfg, data, tmp_path)
    assert [r["amount"] for r in result["rows"]] == [0.25, 0.5]
    macs = [result["baseline"]["macs"]] + [r["macs"] for r in result["rows"]]
    assert macs == sorted(macs, reverse=True) and len(set(macs)) == 3
    for row in result["rows"]:
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["val_accuracy_fine_tuned"] <= 1
        assert row["latency_ms"] > 0
    assert json.loads((tmp_path / "sweep.json").read_text())["method"] == "l1"
    assert (tmp_path / "sweep.png").stat().st_size > 1000
