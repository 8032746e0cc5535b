"""Lowering to the Graph: the interpreter reproduces the fake-quant model.

The fake-quant model rounds as the integer kernels do (twice where TFLite's requantization
does, MEAN and AVERAGE_POOL on the integer sums), so its values are normally bit-identical to
the interpreter's. It accumulates in float32, though, so a value within float rounding of a .5
boundary may land one step away: per layer, fed the interpreter's own input, the tolerance is
1 LSB of the output scale with at most 0.1 % of the values off; whole networks must agree on
the top-1 class and stay within 2 LSB on the logits (two off-by-one steps may add up).
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from quant_support import randomize_batchnorm
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.features.frontend import Normalization
from tinykws.ir import interpret
from tinykws.ir.graph import Graph
from tinykws.models import build_model, model_config
from tinykws.models.bcresnet import SubSpectralNorm
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower
from tinykws.quant.model import ACTIVATIONS, RUNNERS, QuantModel

LSB_TOLERANCE = 1.0 + 1e-4  # 1 LSB; the slack absorbs float32 rounding of the dequantized value


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(x + self.conv(x))


def quantized_module(model, input_shape, config=None, seed=0, n=48):
    """Fold, calibrate on random inputs, freeze: a fake-quant QuantModel."""
    torch.manual_seed(seed)
    module = QuantModel.prepare(model, config or QuantConfig(), input_shape)
    module.fold()
    module.calibrate([torch.randn(n, 1, *input_shape)])
    module.freeze_weights()
    module.freeze_observers()
    return module.set_mode("fakequant")


def compare(module, input_shape, n=32, seed=1):
    """(fake-quant output, interpreter output, output scale) on fresh random inputs."""
    x = torch.randn(n, 1, *input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = module(x).numpy()
    graph = lower(module)
    got = interpret(graph, x.numpy().transpose(0, 2, 3, 1))["logits"]
    if got.ndim == 4:
        got = got.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    scale, _ = module.qparams(module.trace.output)
    return expected.reshape(len(x), -1), got.reshape(len(x), -1), scale


def per_step_lsb(module, input_shape, n=32, seed=1) -> dict[str, tuple[float, float]]:
    """Each step's (largest |fake-quant - interpreter| in output LSBs, fraction of values that
    differ), given the interpreter's input to that step."""
    x = torch.randn(n, 1, *input_shape, generator=torch.Generator().manual_seed(seed))
    graph = lower(module)
    values = interpret(graph, x.numpy().transpose(0, 2, 3, 1), return_all=True)

    def dequantized(graph_name):
        tensor = graph.tensor(graph_name)
        real = (values[graph_name].astype(np.float32) - tensor.zero_point[0]) * np.float32(
            tensor.scale[0]
        )
        return torch.from_numpy(real.transpose(0, 3, 1, 2) if real.ndim == 4 else real)

    inputs = {"input": dequantized("input_q")}  # model tensor -> the interpreter's, NCHW
    result = {}
    for step in module.trace.steps:
        if step.kind in ("dropout", "flatten"):
            inputs[step.name] = RUNNERS[step.kind](module, step, [inputs[step.inputs[0]]])
            continue
        with torch.no_grad():
            y = RUNNERS[step.kind](module, step, [inputs[i] for i in step.inputs])
            args = [inputs[i] for i in step.inputs]
            y = module._quantize(step.name, ACTIVATIONS[step.activation](y), step, args)
        inputs[step.name] = dequantized(step.name)
        scale, _ = module.qparams(step.name)
        lsb = (y - inputs[step.name]).abs() / scale
        result[step.name] = (float(lsb.max()), float((lsb > 0.5).double().mean()))
    return result


def assert_within_one_lsb(lsb: dict) -> None:
    assert lsb, "no step was checked"
    for name, (largest, off) in lsb.items():
        assert largest <= LSB_TOLERANCE and off <= 0.001, (name, largest, off)


LAYERS = {
    "conv_relu": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
    "conv_strided_asymmetric_pad": lambda: nn.Sequential(
        nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(1, 5, (2, 3), stride=2, bias=False), nn.BatchNorm2d(5)
    ),
    "depthwise_bn_relu6": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 1),
        nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU6(),
    ),
    "depthwise_multiplier_2_dilated": lambda: nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2)
    ),
    "flatten_linear": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)
    ),
    "max_pool_same_ceil": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), nn.ReLU()
    ),
    "avg_pool": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AvgPool2d(2)),
    "avg_pool_over_bins": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AvgPool2d((1, 7))),
    "mean_linear": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ),
    "add_relu": lambda: nn.Sequential(nn.Conv2d(1, 4, 1), Residual(4)),
    "silu": lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.SiLU()),
    "depthwise_subspectral": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 1),
        nn.Conv2d(4, 4, (1, 3), padding=(0, 1), groups=4, bias=False),
        SubSpectralNorm(4, 3),
    ),
    "depthwise_subspectral_strided": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 1),
        nn.Conv2d(4, 4, (3, 3), stride=(1, 2), padding=1, groups=4),
        SubSpectralNorm(4, 5),
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_single_layer_matches_the_interpreter_within_one_lsb(name):
    torch.manual_seed(0)
    model = randomize_batchnorm(LAYERS[name]())
    module = quantized_module(model, (10, 9))
    assert_within_one_lsb(per_step_lsb(module, (10, 9)))
    expected, got, scale = compare(module, (10, 9))
    assert expected.shape == got.shape
    assert np.abs(expected - got).max() <= 2 * LSB_TOLERANCE * scale


@pytest.mark.parametrize("bits", [2, 4])
def test_narrow_weights_lower_with_their_range(bits):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 7, 3))
    module = quantized_module(model, (10, 9), QuantConfig(weight_bits=bits))
    expected, got, scale = compare(module, (10, 9))
    assert np.abs(expected - got).max() <= LSB_TOLERANCE * scale
    weights = [t for t in lower(module).tensors.values() if t.is_constant and t.dtype == "int8"]
    limit = 2 ** (bits - 1) - 1
    assert all(t.bits == bits and np.abs(t.data).max() <= limit for t in weights)


FAMILIES = [
    ("tinyconv", {"preset": "tinyconv"}, (49, 40)),
    ("dscnn", {"preset": "dscnn_s", "first_filters": 16, "block_filters": [16, 24]}, (49, 10)),
    ("commandnet", {"preset": "commandnet", "filters": [6, 8, 8, 8, 8]}, (98, 50)),
    ("cnn3", {"preset": "cnn3", "filters": [8, 12, 16], "dense_units": 24}, (128, 64)),
    ("cnn3_gap", {"preset": "cnn3_gap", "filters": [8, 12, 16], "dense_units": 24}, (64, 40)),
    ("bcresnet", {"preset": "bcresnet1", "stage_blocks": [1, 2, 1, 2]}, (49, 40)),
]


@pytest.mark.parametrize("name, spec, shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_lowers_and_agrees_with_fake_quant(name, spec, shape):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(model_config(spec, 12, shape)))
    module = quantized_module(model, shape)
    assert_within_one_lsb(per_step_lsb(module, shape, n=8))
    expected, got, scale = compare(module, shape)
    assert (expected.argmax(1) == got.argmax(1)).mean() >= 0.995
    assert np.abs(expected - got).max() <= 2 * LSB_TOLERANCE * scale


def test_graph_round_trips_through_json_and_npz(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_config("tinyconv", 4, (49, 40)))
    data = QuantData(
        np.random.default_rng(0).normal(size=(16, 49, 40)).astype(np.float32),
        Normalization(mean=(0.0,) * 40, std=(1.0,) * 40),
    )
    graph = lower(quantize(model, QuantConfig(), data), softmax=True)
    loaded = Graph.load(graph.save(tmp_path / "g.json"))
    x = np.random.default_rng(1).normal(size=(5, 49, 40, 1)).astype(np.float32)
    a, b = interpret(graph, x)["logits"], interpret(loaded, x)["logits"]
    assert np.array_equal(a, b) and np.allclose(a.sum(1), 1.0, atol=0.05)  # softmax output


def test_an_average_over_every_bin_lowers_to_mean_over_bins():
    model = LAYERS["avg_pool_over_bins"]()
    graph = lower(quantized_module(model, (10, 9)))
    means = [op for op in graph.ops if op.type == "MEAN"]
    assert len(means) == 1 and means[0].options["axes"] == [2]
    assert graph.tensor(means[0].outputs[0]).shape == (1, 8, 1, 3)
    strided = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AvgPool2d((1, 7), stride=(2, 7)))
    assert "AVERAGE_POOL_2D" in [op.type for op in lower(quantized_module(strided, (10, 9))).ops]


def test_bcresnet_lowers_to_slices_per_sub_band_and_logistic_mul():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(model_config("bcresnet1", 12, (98, 40))))
    graph = lower(quantized_module(model, (98, 40), n=8))
    types = [op.type for op in graph.ops]
    blocks = sum(model.config.stage_blocks)
    assert types.count("CONCATENATION") == blocks and types.count("SLICE") == 5 * blocks
    assert types.count("LOGISTIC") == types.count("MUL") == blocks
    # each block's bin average is fused into its temporal conv: weights across every bin at
    # 1/bins of the temporal weights' scale, one requantization (no MEAN over the bins)
    assert [op.options["axes"] for op in graph.ops if op.type == "MEAN"] == [[1, 2]]
    temporal = [op for op in graph.ops if (op.name or "").endswith("temporal_conv")]
    assert len(temporal) == blocks
    for op in temporal:
        weights, x = graph.tensor(op.inputs[1]), graph.tensor(op.inputs[0])
        assert weights.shape[2] == x.shape[2] > 1 and graph.tensor(op.outputs[0]).shape[2] == 1
        assert np.all(weights.data == weights.data[:, :, :1])  # the same weight in every bin


@pytest.mark.parametrize(
    "layer, pattern",
    [
        (SubSpectralNorm(4, 7), r"layer 1 \(SubSpectralNorm\).*depthwise conv right before"),
        (nn.GELU(), r"layer 1 \(GELU\)"),
        (nn.Conv2d(4, 4, 3, groups=2), r"layer 1 \(Conv2d\).*grouped"),
        (nn.Upsample(scale_factor=2), r"layer 1 \(Upsample\)"),
    ],
)
def test_unlowerable_layers_are_named(layer, pattern):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), layer)
    with pytest.raises(TinyKWSError, match=pattern):
        QuantModel.prepare(model, QuantConfig(), (10, 9))


def test_models_that_keep_float_or_narrow_activations_do_not_lower():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    model.config = SimpleNamespace(input_shape=(10, 9))
    data = QuantData(np.zeros((4, 10, 9), np.float32), Normalization((0.0,) * 9, (1.0,) * 9))
    with pytest.raises(TinyKWSError, match="dynamic-range"):
        lower(quantize(model, QuantConfig(method="dynamic"), data))
    with pytest.raises(TinyKWSError, match="4-bit activations"):
        lower(quantize(model, QuantConfig(activation_bits=4), data))


def test_an_already_folded_model_traces_to_the_same_steps():
    from tinykws.models.fold import fold_batchnorm
    from tinykws.models.trace import trace_steps

    model = build_model(model_config("dscnn_s", 12, (49, 10)))
    plain = [(s.kind, s.activation) for s in trace_steps(model).steps]
    folded = [(s.kind, s.activation, s.bn) for s in trace_steps(fold_batchnorm(model)).steps]
    assert [(k, a) for k, a, _ in folded] == plain and not any(bn for *_, bn in folded)


def test_a_bin_average_before_a_depthwise_conv_of_width_one_is_fused_into_it():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.AvgPool2d((1, 9)),
        nn.Conv2d(4, 4, (3, 1), padding=(1, 0), groups=4),
    )
    module = quantized_module(model, (10, 9))
    (step,) = [s for s in module.trace.steps if s.kind == "depthwise"]
    assert step.bins == 9 and "mean" not in [s.kind for s in module.trace.steps]
    expected, got, scale = compare(module, (10, 9))
    assert np.abs(expected - got).max() <= LSB_TOLERANCE * scale
