"""Channel surgery: the physically pruned network equals the masked one, for every family."""

import pytest
import torch
from prune_helpers import TINY_MODELS, one_thread, random_inputs, tiny_model  # noqa: F401

from tinykws.errors import TinyKWSError
from tinykws.models import build_model, config_from_dict, config_to_dict, count_params
from tinykws.prune.surgery import find_channel_groups, masked_copy, remove_channels


def random_removal(groups, fraction: float, seed: int) -> dict[str, list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return {
        g.name: torch.randperm(g.size, generator=gen)[: max(1, int(fraction * g.size))].tolist()
        for g in groups
    }


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_pruned_network_equals_masked_network(name):
    model = tiny_model(name)
    groups = find_channel_groups(model)
    assert groups, "every family has prunable channels"
    removed = random_removal(groups, 0.5, seed=3)
    pruned = remove_channels(model, removed).eval()
    masked = masked_copy(model, removed).eval()
    inputs = random_inputs(model, batch=4)
    with torch.no_grad():
        expected, got = masked(inputs), pruned(inputs)
        unmasked = model(inputs)
    # The removal must matter (else the comparison proves nothing) and must equal masking.
    assert (expected - unmasked).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert count_params(pruned) < count_params(model)
    # Architecture is data: the pruned model is rebuilt from its own (new) config.
    rebuilt = build_model(config_from_dict(config_to_dict(pruned.config)))
    rebuilt.load_state_dict(pruned.state_dict())


def test_original_model_is_left_unchanged():
    model = tiny_model("dscnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    remove_channels(model, {"first.conv": [0, 1]})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_depthwise_channels_follow_the_layer_before():
    model = tiny_model("dscnn")
    pruned = remove_channels(model, {"first.conv": [0, 2, 5]})
    depthwise = pruned.blocks[0].depthwise.conv
    assert pruned.config.first_filters == 5
    assert depthwise.in_channels == depthwise.out_channels == depthwise.groups == 5
    kept = [1, 3, 4, 6, 7]
    original = model.blocks[0].depthwise.conv.weight
    assert torch.equal(depthwise.weight, original[kept])


def test_residual_stage_is_one_group():
    model = tiny_model("bcresnet")
    groups = {g.name: g for g in find_channel_groups(model)}
    stage = next(g for name, g in groups.items() if name.startswith("stages.3."))
    names = {p.name for p in stage.points}
    # Both blocks of the last stage (transition + residual) carry the same channels.
    assert {"stages.3.0.f1.pointwise", "stages.3.1.f1.pointwise", "stages.3.1.f2.ssn"} <= names
    pruned = remove_channels(model, {stage.name: [0, 3]})
    assert pruned.config.stage_channels == (4, 4, 6, 4)


def test_emptying_a_layer_is_an_error():
    model = tiny_model("tinyconv")
    with pytest.raises(TinyKWSError, match="leave the layer empty"):
        remove_channels(model, {"conv.conv": range(6)})


@pytest.mark.parametrize(
    "removed, message",
    [
        ({"conv.conv": [6]}, "must be in 0..5"),
        ({"nope": [0]}, "no such layer"),
    ],
)
def test_bad_requests_are_one_line_errors(removed, message):
    with pytest.raises(TinyKWSError, match=message) as info:
        remove_channels(tiny_model("tinyconv"), removed)
    assert "\n" not in str(info.value)


def test_classifier_outputs_are_never_pruned():
    model = tiny_model("cnn3")
    names = [g.name for g in find_channel_groups(model)]
    assert "classifier" not in names and "dense" in names
