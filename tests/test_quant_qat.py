"""Quantization-aware training: BatchNorm and observer freezing, conversion, exactness."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from quant_support import SMALL_COMMANDNET, randomize_batchnorm, tone_data, train_small
from torch import nn

from tinykws.data.augment import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.models import build_model, model_config
from tinykws.quant import QATConfig, QuantConfig, QuantData, quantize
from tinykws.quant.model import QuantModel
from tinykws.quant.observers import MovingAverageObserver
from tinykws.quant.scoring import lower_if_possible, score_backends

SHAPE = (98, 50)
CLEAN = AugmentConfig(enabled=False)


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    data = tone_data(tone_corpus, "logmel")
    model = train_small(data, SMALL_COMMANDNET, tmp_path_factory.mktemp("qat"), epochs=8)
    return model, data


def qat_module():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(model_config(SMALL_COMMANDNET, 12, SHAPE)))
    module = QuantModel.prepare(model, QuantConfig(weight_bits=4))
    module.calibrate([torch.randn(8, 1, *SHAPE)])
    for quantizer in module.act.values():
        quantizer.observer = MovingAverageObserver(0.5, quantizer.observer.final_range())
    return module.set_mode("fakequant")


def test_batchnorm_statistics_move_until_frozen():
    module = qat_module().train()
    bn = module.net.get_submodule("conv0.bn")
    before = bn.running_mean.clone()
    module(torch.randn(4, 1, *SHAPE))
    assert not torch.equal(bn.running_mean, before)
    module.freeze_bn()
    module.train()  # an epoch starts: frozen BatchNorms stay in eval mode
    frozen = bn.running_mean.clone()
    module(torch.randn(4, 1, *SHAPE))
    assert not bn.training and torch.equal(bn.running_mean, frozen)


def test_activation_ranges_move_until_the_observers_are_frozen():
    module = qat_module().train()
    scale = module.act["conv0_conv"].scale.clone()
    module(3 * torch.randn(4, 1, *SHAPE))
    assert not torch.equal(module.act["conv0_conv"].scale, scale)
    module.freeze_observers()
    scale = module.act["conv0_conv"].scale.clone()
    module(5 * torch.randn(4, 1, *SHAPE))
    assert torch.equal(module.act["conv0_conv"].scale, scale)


def test_unfolded_evaluation_equals_the_folded_model_exactly():
    module = qat_module().eval()
    x = torch.randn(4, 1, *SHAPE)
    with torch.no_grad():
        unfolded = module(x)
        module.fold()
        folded = module(x)
    assert torch.equal(unfolded, folded)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.net.modules())


def test_gradients_reach_weights_and_batchnorm_through_the_rounding():
    module = qat_module().train()
    module(torch.randn(4, 1, *SHAPE)).sum().backward()
    assert module.net.get_submodule("conv0.conv").weight.grad.abs().sum() > 0
    assert module.net.get_submodule("conv0.bn").weight.grad.abs().sum() > 0


def test_bcresnet_trains_through_its_sub_band_weights_and_keeps_their_statistics():
    from tinykws.ir import interpret
    from tinykws.quant.lower import lower

    torch.manual_seed(0)
    spec = {"preset": "bcresnet1", "stage_blocks": [1, 1, 1, 1]}
    model = randomize_batchnorm(build_model(model_config(spec, 4, (49, 40))))
    module = QuantModel.prepare(model, QuantConfig(method="qat"))
    module.calibrate([torch.randn(8, 1, 49, 40)])
    module.set_mode("fakequant").train()
    ssn = module.net.get_submodule("stages.0.0.f2.ssn.bn")
    before = ssn.running_var.clone()
    x = torch.randn(4, 1, 49, 40)
    module(x).sum().backward()
    assert ssn.weight.grad.abs().sum() > 0 and ssn.bias.grad.abs().sum() > 0
    assert torch.equal(ssn.running_var, before)  # folded with its running statistics
    module.eval().fold()
    with torch.no_grad():
        expected = module(x).numpy()
    got = interpret(lower(module), x.numpy().transpose(0, 2, 3, 1))["logits"]
    step = module.qparams(module.trace.output)[0]  # float32 sums may land a tie one step off
    assert np.abs(expected - got).max() <= 2 * step * (1 + 1e-4)


@pytest.mark.slow
def test_two_bit_qat_converts_to_an_exact_integer_graph_and_beats_ptq(trained):
    model, data = trained
    calibration = QuantData(data.train_features[:48], data.normalization, data)
    qat = QATConfig(
        epochs=3, lr=1e-3, batch_size=16, freeze_bn_epoch=1, freeze_observer_epoch=2, augment=CLEAN
    )
    ptq = quantize(model, QuantConfig(weight_bits=2), calibration)
    quantized = quantize(model, QuantConfig(method="qat", weight_bits=2, qat=qat), calibration)
    history = quantized.history
    assert len(history["val_accuracy"]) == 4 and len(history["train_loss"]) == 3
    features = np.concatenate([data.train_features, data.val_features])
    labels = np.concatenate([data.train_labels, data.val_labels])
    graph = lower_if_possible(quantized)
    scores = score_backends(quantized, graph, features, labels, data.normalization)
    assert scores["agreement"]["fakequant_int"] >= 0.995
    assert scores["int_vs_fakequant_lsb"]["max"] <= 1.0 + 1e-4
    ptq_scores = score_backends(ptq, None, data.val_features, data.val_labels, data.normalization)
    kept = history["val_accuracy"][history["best_epoch"]]
    assert kept >= ptq_scores["accuracy"]["fakequant"]  # the calibrated start counts as epoch 0


def test_qat_needs_training_data(trained):
    model, data = trained
    with pytest.raises(TinyKWSError, match="needs training data"):
        quantize(
            model, QuantConfig(method="qat"), QuantData(data.train_features[:4], data.normalization)
        )


def test_qat_starts_from_the_calibrated_model_and_keeps_its_batchnorm_statistics(
    trained, monkeypatch
):
    # With the training statistics frozen from epoch 0 and the ranges fixed, a vanishing
    # learning rate leaves the network exactly as calibrated.
    from tinykws.train import loop as qat_module

    model, data = trained
    calibration = QuantData(data.train_features[:48], data.normalization, data)
    qat = QATConfig(epochs=1, lr=1e-12, batch_size=16, freeze_observer_epoch=0)
    history = quantize(model, QuantConfig(method="qat", qat=qat), calibration).history
    start, after = history["val_accuracy"]
    assert after == start
    # when each epoch starts, the BatchNorms are frozen from freeze_bn_epoch on
    train_epoch, frozen = qat_module._train_epoch, []

    def recording(module, *args):
        frozen.append(module.bn_frozen)
        return train_epoch(module, *args)

    monkeypatch.setattr(qat_module, "_train_epoch", recording)
    for freeze_at, expected in ((0, [True, True]), (1, [False, True])):
        frozen.clear()
        schedule = replace(qat, epochs=2, freeze_bn_epoch=freeze_at)
        quantize(model, QuantConfig(method="qat", qat=schedule), calibration)
        assert frozen == expected


def test_qat_fine_tunes_as_the_model_was_trained():
    from tinykws.quant.qat import as_trained

    recorded = {
        "train": {"augment": {"snr_db": [10.0, 30.0], "time_masks": 1}, "unknown_weight": 2.5}
    }
    resolved = as_trained(QATConfig(), recorded)
    assert resolved.augment == AugmentConfig(snr_db=(10.0, 30.0), time_masks=1)
    assert resolved.unknown_weight == 2.5
    bare = as_trained(QATConfig(), {})  # a checkpoint that does not say: clean batches
    assert bare.augment == AugmentConfig(enabled=False) and bare.unknown_weight == 1.0
    chosen = QATConfig(augment=AugmentConfig(enabled=False), unknown_weight=4.0)
    assert as_trained(chosen, recorded) == chosen


def test_batchnorm_statistics_follow_narrow_weights_for_half_the_epochs_by_default():
    assert QATConfig(epochs=6).bn_freeze_epoch(8) == 0
    assert QATConfig(epochs=6).bn_freeze_epoch(4) == QATConfig(epochs=6).bn_freeze_epoch(2) == 3
    assert QATConfig(epochs=6, freeze_bn_epoch=5).bn_freeze_epoch(8) == 5
