"""Cross-layer equalization: the float network is unchanged, the ranges of the channels two
layers share meet, and per-tensor weights then quantize a network with uneven channels far
more closely; equalized models lower, save and reload exactly."""

import numpy as np
import pytest
import torch
from quant_support import (
    SMALL_COMMANDNET,
    SMALL_DSCNN,
    model_meta,
    randomize_batchnorm,
    tone_data,
    train_small,
)
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models import build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.data import feature_batches
from tinykws.quant.equalize import equalizable_pairs, equalize, input_ranges, scale_channels
from tinykws.quant.model import QuantModel
from tinykws.quant.scoring import lower_if_possible, score_backends
from tinykws.train.loop import predict_logits

FAMILIES = {
    "dscnn": (SMALL_DSCNN, (49, 10), 5),  # first->dw, then dw->pw, pw->dw, ..., pw->linear
    "tinyconv": ("tinyconv", (49, 40), 1),  # conv -> dropout -> flatten -> linear
    "commandnet": (SMALL_COMMANDNET, (98, 50), 5),  # conv -> max pool -> conv, ...
    "cnn3": ({"preset": "cnn3", "filters": [4, 6, 8], "dense_units": 8}, (128, 64), 4),
    "bcresnet": ("bcresnet1", (98, 40), None),  # SiLU and residual adds: few pairs if any
}


def _folded(family: str, seed: int = 0) -> tuple[nn.Module, QuantModel]:
    spec, shape, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_model(model_config(spec, 12, shape)), seed)
    module = QuantModel.prepare(model, QuantConfig(weight_scheme="per_tensor"))
    return model, module


@pytest.mark.parametrize("family", list(FAMILIES))
def test_equalization_leaves_the_float_network_unchanged(family):
    model, module = _folded(family)
    x = torch.randn(4, 1, *FAMILIES[family][1])
    with torch.no_grad():
        expected = model(x)
        pairs = module.equalize()
        got = module.set_mode("float")(x)
    if FAMILIES[family][2] is not None:
        assert pairs == FAMILIES[family][2]
    # float32 rescaling reorders rounding: relative to the logits' size
    torch.testing.assert_close(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4)


def test_shared_channels_end_with_equal_ranges():
    _, module = _folded("dscnn")
    module.fold()
    pairs = equalizable_pairs(module.trace, module.net)
    depthwise = module.net.get_submodule(pairs[1].first)  # first -> dw, dw -> pw
    spread = depthwise.weight.abs().flatten(1).amax(1)
    rounds = equalize(module.net, pairs)
    assert 1 < rounds < 100  # converged before the limit
    for pair in pairs:
        first, second = module.net.get_submodule(pair.first), module.net.get_submodule(pair.second)
        r1 = first.weight.abs().flatten(1).amax(1)
        torch.testing.assert_close(r1, input_ranges(second, pair), rtol=1e-3, atol=0)
    after = depthwise.weight.abs().flatten(1).amax(1)
    assert after.max() / after.min() < spread.max() / spread.min()


def test_pruned_channels_keep_their_zeros():
    _, module = _folded("dscnn")
    module.fold()
    first = module.net.get_submodule("first.conv")
    with torch.no_grad():
        first.weight[3].zero_()
        first.bias[3] = 0.0
    equalize(module.net, equalizable_pairs(module.trace, module.net))
    assert torch.isfinite(module.net.get_submodule("blocks.0.depthwise.conv").weight).all()
    assert float(first.weight[3].detach().abs().max()) == 0.0


def test_relu6_is_not_paired_and_flatten_reads_spatial_slices():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU6(),
        nn.Conv2d(4, 4, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(2),
    )
    model(torch.zeros(1, 1, 6, 6))
    model.config = type("Config", (), {"input_shape": (6, 6)})()
    module = QuantModel.prepare(model, QuantConfig())
    pairs = equalizable_pairs(module.trace, module.net)
    assert [(p.first, p.second, p.spatial) for p in pairs] == [("2", "5", 16)]


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    data = tone_data(tone_corpus)
    return train_small(data, SMALL_DSCNN, tmp_path_factory.mktemp("equalize")), data


def _ptq(model, data, unbalance: bool, equalized: bool) -> QuantModel:
    """Per-tensor int8 PTQ as `quantize` does it; with `unbalance`, the shared channels of every
    pair are first rescaled by 10^U(-1.5, 1.5) (the float network stays the same): more uneven than
    BatchNorm folding leaves real DS-CNN-S channels (up to 42x), so the effect is clear."""
    module = QuantModel.prepare(model, QuantConfig(weight_scheme="per_tensor"))
    module.fold()
    if unbalance:
        gen = torch.Generator().manual_seed(0)
        for pair in equalizable_pairs(module.trace, module.net):
            channels = module.net.get_submodule(pair.first).weight.shape[0]
            scale_channels(module.net, pair, 10 ** (torch.rand(channels, generator=gen) * 3 - 1.5))
    if equalized:
        module.equalize()
    module.calibrate(feature_batches(data.train_features[:48], data.normalization))
    module.freeze_weights()
    module.freeze_observers()
    return module.set_mode("fakequant")


def _logit_error(module: QuantModel, data) -> float:
    """RMS difference between the fake-quant and the float logits on the validation clips."""
    logits = {}
    for mode in ("float", "fakequant"):
        module.set_mode(mode)
        logits[mode] = predict_logits(module, data.val_features, data.normalization, "cpu")
    return float((logits["fakequant"] - logits["float"]).pow(2).mean().sqrt())


def test_equalization_undoes_uneven_channels_for_per_tensor_weights(trained):
    model, data = trained
    balanced = _logit_error(_ptq(model, data, unbalance=False, equalized=False), data)
    uneven = _logit_error(_ptq(model, data, unbalance=True, equalized=False), data)
    equalized = _logit_error(_ptq(model, data, unbalance=True, equalized=True), data)
    assert uneven > 2 * balanced  # the rescaling hurts per-tensor scales...
    assert equalized < 0.5 * uneven  # ...and equalization wins it back
    assert equalized < 1.25 * balanced


def test_an_equalized_model_lowers_saves_and_reloads_exactly(trained, tmp_path):
    from tinykws.quant.files import load_quantized, save_quantized
    from tinykws.quant.scoring import backend_logits

    model, data = trained
    calibration = QuantData(data.train_features[:48], data.normalization)
    quantized = quantize(model, QuantConfig(weight_scheme="per_tensor", equalize=True), calibration)
    assert quantized.history["equalized_pairs"] == 5
    graph = lower_if_possible(quantized)
    scores = score_backends(
        quantized, graph, data.val_features, data.val_labels, data.normalization
    )
    assert scores["agreement"]["fakequant_int"] >= 0.995
    path = save_quantized(tmp_path / "q.safetensors", quantized, model_meta(data, model))
    reloaded, _ = load_quantized(path)
    for backend in ("torch", "fakequant"):
        np.testing.assert_array_equal(
            backend_logits(reloaded, None, data.val_features, data.normalization, backend),
            backend_logits(quantized, None, data.val_features, data.normalization, backend),
        )


def test_qat_fine_tunes_the_equalized_network(trained):
    from tinykws.data.augment import AugmentConfig
    from tinykws.quant import QATConfig

    model, data = trained
    qat = QATConfig(epochs=1, lr=1e-4, batch_size=16, augment=AugmentConfig(enabled=False))
    config = QuantConfig(method="qat", weight_scheme="per_tensor", equalize=True, qat=qat)
    quantized = quantize(
        model, config, QuantData(data.train_features[:48], data.normalization, data)
    )
    assert quantized.history["equalized_pairs"] == 5
    assert not any(step.bn for step in quantized.module.trace.steps)  # folded before training
    graph = lower_if_possible(quantized)
    scores = score_backends(
        quantized, graph, data.val_features, data.val_labels, data.normalization
    )
    assert scores["agreement"]["fakequant_int"] >= 0.995


def test_equalize_is_refused_for_dynamic_range_quantization():
    with pytest.raises(TinyKWSError, match="equalize works with methods ptq and qat"):
        QuantConfig(method="dynamic", equalize=True)


def test_cli_option_sets_equalize():
    from tinykws.cli import build_parser
    from tinykws.cli.quant import quant_config_from_args

    line = "quantize m --data d --out o --weight-scheme per_tensor --equalize"
    args = build_parser().parse_args(line.split())
    config, _ = quant_config_from_args(args)
    assert config.equalize and config.weight_scheme == "per_tensor"
