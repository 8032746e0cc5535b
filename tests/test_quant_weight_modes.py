"""Symmetric and asymmetric weights, and calibration sets of a total size.

Asymmetric weights are checked against a numpy reference written from the definition (float32
arithmetic, rounding half away from zero): the full range [-2^(b-1), 2^(b-1) - 1] over each
channel's [min, max], a zero point per channel. Models with them are scored in fake
quantization; lowering and every export refuse them in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import tone_data, trained_model

from tinykws.errors import TinyKWSError
from tinykws.quant import QATConfig, QuantConfig, QuantData, quantize
from tinykws.quant.data import calibration_clips, stratified_counts
from tinykws.quant.weight_quant import WeightQuant


@pytest.fixture(scope="module")
def tone(tone_corpus):
    return tone_data(tone_corpus)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def reference_asymmetric(weight: np.ndarray, bits: int):
    """(integers, scales, zero points) per output channel (axis 0), from the definition."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w = weight.reshape(len(weight), -1).astype(np.float32)
    low = np.minimum(w.min(axis=1), np.float32(0))
    high = np.maximum(w.max(axis=1), np.float32(0))
    scale = ((high - low) / np.float32(qmax - qmin)).astype(np.float32)
    zero = np.clip(qmin - _round_half_away(low / scale), qmin, qmax)
    q = np.clip(_round_half_away(w / scale[:, None]) + zero[:, None], qmin, qmax)
    return q.reshape(weight.shape).astype(np.int64), scale, zero


@pytest.mark.parametrize("bits", [8, 6, 4, 3, 2])
def test_asymmetric_weights_match_the_numpy_reference(bits):
    weight = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(bits)) + 0.3
    quantizer = WeightQuant(6, QuantConfig(weight_bits=bits, weight_mode="asym"))
    fake = quantizer(weight)
    expected, scale, zero = reference_asymmetric(weight.numpy(), bits)
    integers = quantizer.integers(weight).numpy()
    np.testing.assert_array_equal(integers, expected)
    np.testing.assert_array_equal(quantizer.scale.numpy(), scale)
    np.testing.assert_array_equal(quantizer.zero_point.numpy(), zero)
    dequantized = (expected - zero[:, None, None, None]) * scale[:, None, None, None]
    np.testing.assert_array_equal(fake.detach().numpy(), dequantized.astype(np.float32))
    # every channel's smallest weight lands on qmin: the full range is used, from the bottom
    flat = integers.reshape(6, -1)
    assert (flat.min(axis=1) == -(2 ** (bits - 1))).all()
    assert (flat.max(axis=1) >= 2 ** (bits - 1) - 2).all()


def test_symmetric_weights_keep_zero_point_zero_and_the_narrow_range():
    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    quantizer = WeightQuant(4, QuantConfig(weight_bits=4))
    quantizer.update(weight)
    integers = quantizer.integers(weight)
    assert not hasattr(quantizer, "zero_point") and "zero_point" not in quantizer.state_dict()
    assert integers.abs().max() == 7
    scale = weight.abs().amax(dim=1) / 7
    np.testing.assert_array_equal(quantizer.scale.numpy(), scale.numpy())


def test_asymmetric_mse_weights_are_no_worse_than_minmax():
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) ** 3  # heavy tails
    errors = {}
    for observer in ("minmax", "mse"):
        config = QuantConfig(weight_bits=3, weight_mode="asym", weight_observer=observer)
        errors[observer] = ((WeightQuant(8, config)(weight) - weight) ** 2).sum(dim=1)
    assert (errors["mse"] <= errors["minmax"] + 1e-12).all()
    assert errors["mse"].sum() < errors["minmax"].sum()


@pytest.fixture(scope="module")
def asymmetric(tone, tone_corpus):
    model = trained_model(tone_corpus, "tinyconv")
    config = QuantConfig(weight_bits=4, weight_mode="asym")
    return model, quantize(model, config, QuantData(tone.train, tone.normalization))


def test_asymmetric_model_is_scored_in_fake_quantization(asymmetric, tone):
    from tinykws.quant.scoring import lower_if_possible, score_backends

    _, quantized = asymmetric
    assert not quantized.lowerable and lower_if_possible(quantized) is None
    scores = score_backends(quantized, None, tone.validation, tone.validation_y, tone.normalization)
    assert set(scores["accuracy"]) == {"torch", "fakequant"}
    assert scores["accuracy"]["fakequant"] >= scores["accuracy"]["torch"] - 0.25
    weights = quantized.module.weight.values()
    assert all(not q.symmetric and q.zero_point.abs().sum() > 0 for q in weights)


def test_asymmetric_model_is_not_lowered_or_exported(asymmetric, tone, tone_corpus, tmp_path):
    from export_helpers import checkpoint_meta

    from tinykws.quant.files import load_quantized, save_quantized
    from tinykws.quant.lower import lower
    from tinykws.run.exporting import export_model

    model, quantized = asymmetric
    with pytest.raises(TinyKWSError, match="symmetric weights") as info:
        lower(quantized)
    assert "\n" not in str(info.value)
    path = save_quantized(tmp_path / "a.safetensors", quantized, checkpoint_meta(model, tone))
    loaded, _ = load_quantized(path)
    x = torch.from_numpy(tone.inputs("validation"))
    with torch.no_grad():
        assert torch.equal(loaded.module(x), quantized.module(x))
    for fmt, name in (("tflite", "a.tflite"), ("onnx", "a.onnx"), ("c", "c")):
        with pytest.raises(TinyKWSError, match="asymmetric") as info:
            export_model(path, fmt, tmp_path / name)
        assert "\n" not in str(info.value) and "weight-mode sym" in str(info.value)
        assert not (tmp_path / name).exists()


def test_qat_trains_asymmetric_weights(tone, tone_corpus):
    """QAT fine-tunes with asymmetric weight quantizers, and the result rounds its final
    folded weights as the reference does."""
    from support import tone_training_data

    from tinykws.data.augment import AugmentConfig

    model = trained_model(tone_corpus, "tinyconv")
    qat = QATConfig(epochs=1, batch_size=32, augment=AugmentConfig(enabled=False))
    config = QuantConfig(method="qat", weight_bits=4, weight_mode="asym", qat=qat)
    training = tone_training_data(tone_corpus, "micro")
    quantized = quantize(model, config, QuantData(tone.train, tone.normalization, training))
    step = quantized.module.weighted_steps()[0]
    quantizer = quantized.module.weight[step.name]
    weight, _ = quantized.module.layer_weight_bias(step)
    expected, scale, zero = reference_asymmetric(weight.detach().numpy(), 4)
    np.testing.assert_array_equal(quantizer.integers(weight).numpy(), expected)
    np.testing.assert_array_equal(quantizer.zero_point.numpy(), zero)
    assert quantized.history  # the fine-tuning ran


def test_weight_mode_and_calibration_clips_from_the_command_line():
    from tinykws.cli import build_parser
    from tinykws.cli.quant import quant_config_from_args

    line = "quantize m --data d --out o --weight-mode asym --calibration-clips 30"
    config, _ = quant_config_from_args(build_parser().parse_args(line.split()))
    assert (config.weight_mode, config.calibration_clips) == ("asym", 30)
    with pytest.raises(TinyKWSError, match="weight_mode must be one of sym, asym"):
        QuantConfig(weight_mode="affine")
    with pytest.raises(TinyKWSError, match="calibration_clips"):
        QuantConfig(calibration_clips=0)


# --- calibration by total count -------------------------------------------------------------


def test_stratified_counts_follow_class_shares():
    assert stratified_counts([100, 50, 50], 20) == [10, 5, 5]
    counts = stratified_counts([7, 7, 7, 7], 10, seed=3)
    assert sum(counts) == 10 and sorted(counts) == [2, 2, 3, 3]
    assert stratified_counts([7, 7, 7, 7], 10, seed=3) == counts
    assert stratified_counts([3, 0, 2], 50) == [3, 0, 2]


def test_calibration_clips_in_total_are_stratified_and_seeded(tone_corpus):
    from dataclasses import replace

    from tinykws.data.speech_commands import DataConfig, load_dataset

    dataset = load_dataset(tone_corpus, DataConfig(preset="12", unknown_fraction=1.0))
    config = QuantConfig(calibration_clips=30, seed=1)
    clips = calibration_clips(dataset, config)
    assert len(clips) == 30 and len({c.path for c in clips}) == 30
    train = dataset.clips("train")
    per_class = {label: sum(c.label == label for c in clips) for label in dataset.labels}
    share = {label: 30 * sum(c.label == label for c in train) / len(train) for label in per_class}
    assert all(abs(per_class[k] - share[k]) < 1 for k in per_class)
    assert calibration_clips(dataset, config) == clips
    assert calibration_clips(dataset, replace(config, seed=2)) != clips
    everything = calibration_clips(dataset, replace(config, calibration_clips=10_000))
    assert sorted(c.path for c in everything) == sorted(c.path for c in train)
    per_class_config = QuantConfig(calibration_per_class=2)
    assert len(calibration_clips(dataset, per_class_config)) == 2 * len(dataset.labels)


def test_sweep_over_weight_modes(tone, tone_corpus, tmp_path):
    """Symmetric points lower to the integer graph; asymmetric ones are scored in fake
    quantization only, each with its own accuracy."""
    from tinykws.cli import build_parser
    from tinykws.cli.quant import quant_config_from_args
    from tinykws.quant.sweep import QuantSweepConfig, run_sweep, write_sweep

    line = "quantize m --data d --out o --sweep-bits 4 --weight-modes sym,asym --methods ptq"
    base, sweep = quant_config_from_args(build_parser().parse_args(line.split()))
    assert sweep == QuantSweepConfig(bits=(4,), methods=("ptq",), weight_modes=("sym", "asym"))
    model = trained_model(tone_corpus, "tinyconv")
    data = QuantData(tone.train, tone.normalization)
    rows = run_sweep(model, base, data, tone.validation, tone.validation_y, sweep)
    assert [(r["weight_mode"], r["weight_bits"]) for r in rows] == [("sym", 4), ("asym", 4)]
    assert rows[0]["int_accuracy"] is not None and rows[1]["int_accuracy"] is None
    assert all(r["accuracy"] is not None for r in rows)
    write_sweep(rows, 1.0, tmp_path)
    assert (tmp_path / "sweep.png").is_file() and "weight_mode" in (
        tmp_path / "sweep.csv"
    ).read_text()
