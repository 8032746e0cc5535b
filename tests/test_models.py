"""Model families: presets build and run, sizes match the published models, configs round-trip,
pruned networks rebuild from their configs, and bad specs fail with one clear line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models import (
    FAMILIES,
    MODEL_PRESETS,
    build_model,
    config_from_dict,
    config_of,
    config_to_dict,
    count_macs,
    count_params,
    format_summary,
    model_config,
    summary,
)
from tinykws.models.layers import max_pool_same, same_padding


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared machine: one thread is faster than contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Small widths so every family trains and prunes in well under a second.
SMALL = {
    "tinyconv": {"family": "tinyconv", "filters": 4, "dropout": 0.0},
    "dscnn": {
        "family": "dscnn",
        "first_filters": 8,
        "block_filters": [8, 6],
        "dropout": 0.0,
        "final_dropout": 0.0,
    },
    "commandnet": {"family": "commandnet", "filters": [4, 6, 8, 8, 8], "dropout": 0.0},
    "cnn3": {
        "family": "cnn3",
        "filters": [4, 6, 8],
        "dense_units": 8,
        "dropout": 0.0,
        "input_shape": [96, 48],
    },
    "bcresnet": {
        "family": "bcresnet",
        "head_channels": 6,
        "stage_channels": [4, 6, 6, 8],
        "classifier_channels": 8,
        "stage_blocks": [1, 2, 1, 2],
        "dropout": 0.0,
        "input_shape": [24, 40],
    },
}


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode outputs depend on them."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


def features(config, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, *config.input_shape, generator=gen)


@pytest.mark.parametrize("name", list(MODEL_PRESETS))
def test_every_preset_builds_and_gives_logits(name):
    config = model_config(name)
    model = build_model(config).eval()
    with torch.no_grad():
        logits = model(features(config))
    assert model.config == config
    assert logits.shape == (2, config.n_classes)
    assert torch.isfinite(logits).all()
    rows = summary(model)
    assert sum(r.params for r in rows) == count_params(model)  # no parameter outside a row


# (preset, n_classes, input_shape, published parameter count, allowed relative difference)
REFERENCE_PARAMS = [
    # TensorFlow tiny_conv on micro_speech: conv 8*(10*8*1)+8 = 648, FC 25*20*8*4+4 = 16,004.
    ("tinyconv", 4, (49, 40), 16_652, 0.0),
    # MLPerf Tiny DS-CNN (Keras): 23,756 trainable, of which 576 are conv biases made redundant
    # by the BatchNorm after each conv; this model leaves them out.
    ("dscnn_s", 12, (49, 10), 23_756 - 576, 0.0),
    # BC-ResNet paper / reference code: 9.2k, 27.3k, 54.2k, 188k, 321k (rounded figures).
    ("bcresnet1", 12, (98, 40), 9_200, 0.005),
    ("bcresnet2", 12, (98, 40), 27_300, 0.005),
    ("bcresnet3", 12, (98, 40), 54_200, 0.005),
    ("bcresnet6", 12, (98, 40), 188_000, 0.005),
    ("bcresnet8", 12, (98, 40), 321_000, 0.005),
    # The CNN3 study's ~1.2 M parameters at 36 classes on 128x64 (flatten head).
    ("cnn3", 36, (128, 64), 1_200_000, 0.05),
]


@pytest.mark.parametrize(("name", "n_classes", "shape", "expected", "rel"), REFERENCE_PARAMS)
def test_parameter_counts_match_published_models(name, n_classes, shape, expected, rel):
    params = count_params(build_model(model_config(name, n_classes, shape)))
    assert params == pytest.approx(expected, rel=rel, abs=0)


def test_dscnn_s_macs_match_hand_count():
    rows = {r.name: r for r in summary(build_model("dscnn_s"))}
    # First conv: 64 x 25 x 5 outputs, each 1 x 10 x 4 multiplies.
    assert rows["first.conv"].macs == 64 * 25 * 5 * 10 * 4
    # Depthwise 3x3: one input channel per output (in_channels / groups = 1).
    assert rows["blocks.0.depthwise.conv"].macs == 64 * 25 * 5 * 9
    assert rows["blocks.0.pointwise.conv"].macs == 64 * 25 * 5 * 64
    assert rows["classifier"].macs == 64 * 12
    assert rows["first.bn"].macs == 0 and rows["pool"].macs == 0
    # 2.66 M MACs; Hello Edge quotes 5.4 M operations (2 per MAC) for DS-CNN-S.
    assert count_macs(build_model("dscnn_s")) == 320_000 + 4 * (72_000 + 512_000) + 768


def test_tinyconv_summary_rows():
    rows = summary(build_model("tinyconv"))
    conv = next(r for r in rows if r.name == "conv.conv")
    assert conv.output_shape == (8, 25, 20)  # SAME, stride 2: ceil(49/2) x ceil(40/2)
    assert conv.macs == 8 * 25 * 20 * 10 * 8
    assert conv.params == 8 * 10 * 8 + 8
    text = format_summary(rows)
    assert "conv.conv" in text and text.splitlines()[-1].split()[-2:] == ["16,652", "336,000"]


def test_summary_leaves_training_mode_and_statistics_alone():
    model = build_model("dscnn_s").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (49, 10, 2, (4, 5)),
        (40, 8, 2, (3, 3)),
        (10, 4, 2, (1, 1)),
        (98, 3, 2, (0, 1)),
        (49, 3, 2, (1, 1)),
        (25, 3, 1, (1, 1)),
        (7, 1, 1, (0, 0)),
        (5, 9, 4, (4, 4)),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    # TensorFlow: out = ceil(size / stride); pad = max((out-1)*stride + kernel - size, 0), the
    # odd one at the end. Values checked by hand.
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("hw", [(98, 50), (49, 25), (25, 13), (13, 7), (8, 3)])
def test_max_pool_same_equals_padding_with_minus_infinity(hw):
    x = torch.randn(2, 3, *hw)
    pool, out_hw = max_pool_same(3, 2, hw)
    (top, bottom), (left, right) = same_padding(hw[0], 3, 2), same_padding(hw[1], 3, 2)
    reference = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-torch.inf), 3, 2)
    assert pool(x).shape[2:] == out_hw == reference.shape[2:]
    assert torch.equal(pool(x), reference)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_config_round_trips_through_json(family):
    config = model_config(SMALL[family], n_classes=5)
    data = json.loads(json.dumps(config_to_dict(config)))
    assert data["family"] == family
    again = config_from_dict(data)
    assert again == config
    shapes = {k: v.shape for k, v in build_model(config).state_dict().items()}
    assert {k: v.shape for k, v in build_model(again).state_dict().items()} == shapes


def test_dscnn_rebuilds_with_independent_block_widths():
    config = model_config({"preset": "dscnn_s", "block_filters": [32, 16, 48, 8]})
    model = build_model(config)
    assert model(features(config)).shape == (2, 12)
    assert model.blocks[1].depthwise.conv.weight.shape == (32, 1, 3, 3)  # = previous pointwise
    assert model.blocks[1].pointwise.conv.weight.shape == (16, 32, 1, 1)
    assert model.classifier.in_features == 8
    assert config_of(model) == config


def test_width_multiplier_scales_every_width():
    config = model_config({"preset": "dscnn_gostop", "width_multiplier": 0.5}, 4, (31, 13))
    assert (config.first_filters, config.block_filters) == (45, (22, 22))
    bc = model_config({"preset": "bcresnet2", "width_multiplier": 0.5})
    assert bc == model_config("bcresnet1")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_fits_a_repeated_batch(family):
    torch.manual_seed(0)
    config = model_config(SMALL[family], n_classes=3)
    model = build_model(config).train()
    x, y = features(config, batch=6), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_pruning_removes_channels_like_a_mask(family):
    """Torch-Pruning's DependencyGraph couples every layer right (BN, depthwise groups, FC after
    flatten, residual adds, SubSpectralNorm's C*S features): removing channels gives the same
    outputs as zeroing them, and the pruned model rebuilds from `config_of`."""
    import torch_pruning as tp

    model = build_model(model_config(SMALL[family], n_classes=3)).eval()
    randomize_batchnorm(model)
    x = features(model.config, batch=3)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    groups = graph.get_all_groups(ignored_layers=[last], root_module_types=(nn.Conv2d, nn.Linear))
    plans = [(g[0].dep.target.module, g[0].dep.handler) for g in groups]
    masked, names = copy.deepcopy(model), {m: n for n, m in model.named_modules()}
    masked_modules = dict(masked.named_modules())
    for i, (root, handler) in enumerate(plans):
        width = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        idxs = list(range(i % 2, width, 2))  # about half of every group's channels
        group = graph.get_pruning_group(root, handler, idxs=idxs)
        for dep, dep_idxs in group:
            layer = dep.target.module
            if "out_channels" in dep.handler.__name__ and hasattr(layer, "weight"):
                twin = masked_modules[names[layer]]
                with torch.no_grad():
                    twin.weight[dep_idxs] = 0
                    if twin.bias is not None:
                        twin.bias[dep_idxs] = 0
        group.prune()
    with torch.no_grad():
        expected, pruned = masked(x), model(x)
        rebuilt = build_model(config_of(model)).eval()
        rebuilt.load_state_dict(model.state_dict())
        again = rebuilt(x)
    assert count_params(model) < count_params(masked)
    torch.testing.assert_close(pruned, expected, atol=1e-5, rtol=0)  # float32 summation order
    assert torch.equal(again, pruned)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_traces_with_torch_fx(family):
    model = build_model(model_config(SMALL[family])).eval()
    traced = torch.fx.symbolic_trace(model)
    x = features(model.config)
    assert torch.equal(traced(x), model(x))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_exports_to_onnx(family, tmp_path):
    """Only standard, statically shaped layers: ONNX Runtime gives the same logits."""
    import warnings

    import onnxruntime

    model = build_model(model_config(SMALL[family])).eval()
    randomize_batchnorm(model)
    x = features(model.config, batch=1)
    path = tmp_path / f"{family}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(logits - expected).max() < 1e-5  # float32, different summation order


def one_line_error(fn, *args) -> str:
    with pytest.raises(TinyKWSError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_names_list_the_valid_ones():
    message = one_line_error(model_config, "dscnn_x")
    assert "dscnn_s" in message and "bcresnet8" in message and "did you mean" in message
    assert "commandnet" in one_line_error(model_config, {"family": "resnet"})
    message = one_line_error(model_config, {"preset": "dscnn_s", "blok_filters": [8]})
    assert "block_filters" in message and "first_filters" in message
    assert "family" in one_line_error(config_from_dict, {"filters": 8})
    assert "preset" in one_line_error(model_config, {})
    assert "not a" in one_line_error(model_config, {"preset": "dscnn_s", "family": "cnn3"})


@pytest.mark.parametrize(
    "spec",
    [
        {"preset": "tinyconv", "filters": 0},
        {"preset": "dscnn_s", "block_filters": [64, 0, 64]},
        {"preset": "dscnn_s", "first_filters": -4},
        {"preset": "commandnet", "filters": []},
        {"preset": "cnn3", "dense_units": 0},
        {"preset": "bcresnet1", "stage_channels": [8, 12, 0, 20]},
    ],
)
def test_non_positive_widths_are_rejected(spec):
    assert "positive" in one_line_error(model_config, spec)


@pytest.mark.parametrize(
    ("spec", "n_classes", "shape", "words"),
    [
        ("dscnn_s", 1, None, "n_classes"),
        ({"preset": "dscnn_s", "width_multiplier": 0}, None, None, "width_multiplier"),
        ("cnn3", None, (16, 16), "too small"),
        ("bcresnet1", None, (98, 30), "sub-bands"),
        ("dscnn_s", None, (0, 10), "input_shape"),
        ({"preset": "dscnn_s", "dropout": 1.0}, None, None, "dropout"),
        ({"preset": "dscnn_s", "padding": "full"}, None, None, "padding"),
        ({"preset": "cnn3", "head": "max"}, None, None, "head"),
    ],
)
def test_bad_values_are_one_line_errors(spec, n_classes, shape, words):
    assert words in one_line_error(model_config, spec, n_classes, shape)
