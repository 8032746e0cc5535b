"""Post-training and dynamic-range quantization of a trained model on the tone corpus: the
fake-quant model and the integer graph agree; every observer and scheme works; bad input is a
one-line error."""

import numpy as np
import pytest
import torch
from quant_support import SMALL_DSCNN, tone_data, train_small

from tinykws.config import from_dict
from tinykws.errors import TinyKWSError
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.scoring import lower_if_possible, score_backends


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    data = tone_data(tone_corpus)
    model = train_small(data, SMALL_DSCNN, tmp_path_factory.mktemp("ptq"))
    return model, data


def all_clips(data):
    """Training and validation features and labels together (more clips to agree on)."""
    features = np.concatenate([np.asarray(data.train_features), np.asarray(data.val_features)])
    return features, np.concatenate([data.train_labels, data.val_labels])


def quantize_and_score(model, data, config, clips=None):
    quantized = quantize(model, config, QuantData(data.train_features[:48], data.normalization))
    graph = lower_if_possible(quantized)
    features, labels = clips or (data.val_features, data.val_labels)
    return quantized, score_backends(quantized, graph, features, labels, data.normalization)


def assert_lowered_exactly(scores: dict) -> None:
    """The integer graph computes what the fake-quant model computes, up to rounding ties.

    Both quantize every activation to the same int8 grid; the fake-quant model requantizes in
    float32, the integer graph with TFLite's Q31 multiplier and shift. The two round differently
    only where a value lands within float32's error of a half step, so a logit may be one step
    off (measured on the tone model, 15 configurations x validation or all clips: none in 25
    of 30 cases, otherwise 1 to 3 of 1,872 logits, or 1 of 156 on the 13 validation clips).
    Asserted: no logit more than one step off, at most 2 % of logits one step off, and the
    same top-1 on every clip.
    """
    lsb = scores["int_vs_fakequant_lsb"]
    assert lsb["max"] <= 1 + 1e-5  # float32 division by the output scale
    assert lsb["mean"] <= 0.02
    assert scores["agreement"]["fakequant_int"] == 1.0


def test_int8_ptq_agrees_with_the_integer_graph(trained):
    model, data = trained
    _, scores = quantize_and_score(model, data, QuantConfig())
    assert scores["agreement"]["fakequant_int"] >= 0.995  # validation clips
    _, scores = quantize_and_score(model, data, QuantConfig(), all_clips(data))
    assert scores["agreement"]["fakequant_int"] >= 0.995  # all 156 clips
    assert scores["int_vs_fakequant_lsb"]["max"] <= 2.0 + 1e-4
    assert scores["agreement"]["torch_fakequant"] >= 0.95  # int8 barely changes predictions
    assert abs(scores["accuracy"]["int"] - scores["accuracy"]["torch"]) <= 0.03


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile", "mse", "entropy"])
@pytest.mark.parametrize("scheme", ["asym", "sym"])
def test_every_activation_observer_and_scheme_lowers_exactly(trained, observer, scheme):
    model, data = trained
    config = QuantConfig(activation_observer=observer, activation_scheme=scheme)
    quantized, scores = quantize_and_score(model, data, config, all_clips(data))
    assert_lowered_exactly(scores)
    zero_points = [q.qparams()[1] for q in quantized.module.act.values()]
    assert scheme == "asym" or all(z == 0 for z in zero_points)


@pytest.mark.parametrize(
    "config",
    [
        QuantConfig(weight_bits=4),
        QuantConfig(weight_bits=2, weight_observer="mse"),
        QuantConfig(weight_scheme="per_tensor", power_of_two=True),
        QuantConfig(weight_scheme="per_channel_depthwise"),
    ],
    ids=["4bit", "2bit-mse", "per-tensor-pow2", "per-channel-depthwise"],
)
def test_narrow_and_per_tensor_weights_lower_exactly(trained, config):
    model, data = trained
    quantized, scores = quantize_and_score(model, data, config, all_clips(data))
    assert_lowered_exactly(scores)
    if config.power_of_two:
        scales = [float(q.scale) for q in quantized.module.act.values()]
        assert all(np.log2(s) == round(np.log2(s)) for s in scales)
    if config.weight_scheme == "per_channel_depthwise":
        graph = lower_if_possible(quantized)
        for op in graph.ops:
            if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                weights = graph.tensor(op.inputs[1])
                depthwise = op.type == "DEPTHWISE_CONV_2D"
                assert len(weights.scale) == (weights.shape[3] if depthwise else 1)


def test_narrow_activations_are_fake_quant_only(trained):
    model, data = trained
    quantized, scores = quantize_and_score(model, data, QuantConfig(activation_bits=4))
    assert not quantized.lowerable and "int" not in scores["accuracy"]
    assert all(q.qmax == 7 for q in quantized.module.act.values())


def test_dynamic_quantizes_weights_only(trained):
    model, data = trained
    quantized, scores = quantize_and_score(model, data, QuantConfig(method="dynamic"))
    assert not quantized.lowerable and scores["agreement"]["torch_fakequant"] >= 0.9
    first = quantized.module.quantized_weights()["first.conv.weight"]
    steps = first / quantized.module.weight["first__conv"].scale.reshape(-1, 1, 1, 1)
    assert torch.allclose(steps, torch.round(steps), atol=1e-3)  # weights on the int grid


def test_quantize_leaves_the_float_model_alone(trained):
    model, data = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize(model, QuantConfig(), QuantData(data.train_features[:8], data.normalization))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_empty_calibration_set_is_one_line(trained):
    model, data = trained
    empty = QuantData(data.train_features[:0], data.normalization)
    with pytest.raises(TinyKWSError, match="calibration set is empty"):
        quantize(model, QuantConfig(), empty)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"weight_bits": 1}, r"quantize.weight_bits must be in \[2, 8\]; got 1"),
        ({"activation_bits": 9}, r"quantize.activation_bits must be in \[2, 8\]"),
        ({"method": "awq"}, "quantize.method must be one of ptq, dynamic, qat"),
        ({"activation_observer": "kl"}, "quantize.activation_observer must be one of"),
        ({"bits": 4}, "unknown key 'bits' in \\[quantize\\]"),
    ],
)
def test_bad_config_is_one_line(table, message):
    with pytest.raises(TinyKWSError, match=message) as info:
        from_dict(QuantConfig, table, "quantize")
    assert "\n" not in str(info.value)
