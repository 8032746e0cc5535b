"""Taylor pruning: scores equal |sum_hw a * dL/da| averaged over the batch, the loop removes at
most max_to_prune filters per iteration and never empties a layer, and the pruned network is
physically smaller."""

import json

import pytest
import torch
import torch.nn.functional as F
from prune_helpers import one_thread, random_inputs, tiny_model, tone_data  # noqa: F401

from tinykws.errors import TinyKWSError
from tinykws.models import build_model, model_config
from tinykws.prune import PruneConfig, TaylorConfig, TaylorPrunable, prune
from tinykws.prune.taylor import plot_taylor_progress


def tinyconv_without_dropout(filters=6):
    torch.manual_seed(0)
    return build_model(
        model_config({"family": "tinyconv", "filters": filters, "dropout": 0.0}, 5, (49, 40))
    )


def test_scores_match_a_hand_computed_taylor_expansion():
    model = tinyconv_without_dropout()
    inputs, labels = random_inputs(model, batch=6), torch.tensor([0, 1, 2, 3, 4, 0])
    prunable = TaylorPrunable(model)
    for _ in range(2):  # scores accumulate over mini-batches
        F.cross_entropy(prunable(inputs), labels).backward()
        prunable.update_score()
    # Reference: the conv output a, its gradient from autograd, no hooks involved.
    a = model.conv.conv(model.conv.pad(inputs) if hasattr(model.conv, "pad") else inputs)
    logits = model.classifier(model.flatten(model.conv.act(a)))
    (g,) = torch.autograd.grad(F.cross_entropy(logits, labels), a)
    expected = 2 * (a * g).sum(dim=(2, 3)).abs().mean(0)
    torch.testing.assert_close(prunable.score(0), expected.detach(), rtol=1e-5, atol=1e-9)


def test_update_prunables_masks_the_lowest_and_keeps_one_per_layer():
    prunable = TaylorPrunable(tinyconv_without_dropout())
    prunable.score(0).copy_(torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0, 0.3]))
    assert prunable.update_prunables(max_to_prune=2) == 2
    assert prunable.masks.removed() == {"conv.conv": [1, 3]}
    assert prunable.num_prunables == 4
    assert float(prunable.score(0).abs().sum()) == 0.0  # scores restart after each round
    assert prunable.update_prunables(max_to_prune=10) == 3  # the last filter stays
    assert prunable.num_prunables == 1
    assert prunable.to_network().config.filters == 1


def test_masked_filters_are_zero_in_the_network_output():
    model = tinyconv_without_dropout().eval()
    prunable = TaylorPrunable(model)
    prunable.masks.set_removed({"conv.conv": [0, 4]})
    inputs = random_inputs(model)
    network = prunable.to_network().eval()
    torch.testing.assert_close(network(inputs), prunable.predict(inputs), atol=1e-5, rtol=1e-5)
    assert network.config.filters == 4


def test_nothing_prunable_is_an_error():
    with pytest.raises(TinyKWSError, match="nothing prunable"):
        TaylorPrunable(tinyconv_without_dropout(filters=1))


def test_taylor_needs_data():
    with pytest.raises(TinyKWSError, match="give it data"):
        prune(tiny_model("dscnn"), PruneConfig(method="taylor"))


@pytest.mark.slow
def test_taylor_loop_on_tones(tone_corpus, tmp_path):
    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    cfg = PruneConfig(
        method="taylor",
        taylor=TaylorConfig(
            max_iterations=3, max_to_prune=4, minibatches=4, batch_size=16, device="cpu"
        ),
        retrain_enabled=False,
    )
    pruned, report = prune(model, cfg, data)
    history = report["history"]
    assert len(history["loss"]) == 3 * 4
    assert history["prunables"] == [8 + 8 + 6, 18, 14, 10]
    assert len(history["val_accuracy"]) == 4
    assert sum(report["removed"].values()) == 12
    widths = (pruned.config.first_filters, *pruned.config.block_filters)
    assert sum(widths) == 10 and min(widths) >= 1
    assert report["after"]["macs"] < report["before"]["macs"]
    plot_taylor_progress(history, tmp_path / "p.png", 4)
    assert (tmp_path / "p.png").stat().st_size > 1000
    json.dumps(report)  # the report is plain data


@pytest.mark.slow
def test_taylor_stops_at_the_macs_target(tone_corpus):
    data = tone_data(tone_corpus, "mfcc")
    model = tiny_model("dscnn", n_classes=12)
    cfg = PruneConfig(
        method="taylor",
        taylor=TaylorConfig(
            max_iterations=10,
            max_to_prune=2,
            minibatches=2,
            batch_size=16,
            target_macs=0.3,
            device="cpu",
        ),
        retrain_enabled=False,
    )
    pruned, report = prune(model, cfg, data)
    removed = report["history"]["macs_removed"]
    assert removed[0] == 0.0 and all(a <= b for a, b in zip(removed, removed[1:]))
    assert removed[-1] >= 0.3 and (len(removed) == 2 or removed[-2] < 0.3)
    assert report["iterations"] < 10
    assert removed[-1] == pytest.approx(1 - report["after"]["macs"] / report["before"]["macs"])
