"""The fake-quantized model: a float model run step by step (see `tinykws.models.trace`), with
every tensor the integer graph holds rounded onto its grid.

`QuantModel.mode` says what a forward pass does:
- ``float``: the float network (BatchNorm folded or not), no rounding;
- ``calibrate`` / ``histogram``: float, and the activation observers see every tensor (first and
  second calibration pass);
- ``fakequant``: weights, biases and activations quantized as the integer graph will hold them.
  In training mode (QAT) the activation ranges follow the observers until they are frozen, and
  a conv whose BatchNorm is not frozen yet runs the BatchNorm on batch statistics around a
  fake-quantized folded weight (as PyTorch's QAT ConvBn does).

A depthwise conv with a SubSpectralNorm after it (`Step.ssn`, BC-ResNet) is quantized as the
graph computes it: one set of folded weights (scales, int32 bias) per sub-band, each giving its
band's bins, all onto one output grid. Its SubSpectralNorm is always folded with its running
statistics (QAT does not update them). SiLU rounds through the int8 LOGISTIC table and the
int8 MUL (`requant.fake_silu`).

Which tensor has its own quantization parameters: the input, and the outputs of conv,
depthwise, linear, mean, add and silu. Pools, flatten, dropout and padding keep their input's
(TFLite requires it for pools and reshape); an average pool rounds back onto that grid.

Example:
    >>> import torch
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig
    >>> qm = QuantModel.prepare(build_model(model_config("tinyconv", 4, (49, 40))), QuantConfig())
    >>> sorted(qm.act), sorted(qm.weight)
    (['classifier', 'conv_conv', 'input'], ['classifier', 'conv_conv'])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models.fold import band_select, bn_factor, fold_steps, layer_weight_bias
from tinykws.models.trace import WEIGHTED, Step, Trace, trace_steps
from tinykws.quant import requant
from tinykws.quant.equalize import equalizable_pairs, equalize
from tinykws.quant.fake import (
    activation_qrange,
    affine_qparams,
    bias_scale,
    channel_view,
    fake_quantize,
    fake_quantize_bias,
    quantize_bias,
)
from tinykws.quant.observers import make_activation_observer
from tinykws.quant.weight_quant import WeightQuant

OWN_QPARAMS = (*WEIGHTED, "mean", "add", "silu")
ASYMMETRIC_WEIGHTS = (
    "the integer graph, TFLite and C hold symmetric weights (zero point 0, TFLite's int8 "
    "spec); this model's weights are asymmetric (weight_mode asym): evaluate it in fake "
    "quantization (--backend fakequant), or quantize with --weight-mode sym"
)
MODES = ("float", "calibrate", "histogram", "fakequant")
ACTIVATIONS = {"NONE": lambda y: y, "RELU": F.relu, "RELU6": F.relu6}


class ActQuant(nn.Module):
    """Per-tensor activation quantizer with its range observer."""

    def __init__(self, config) -> None:
        super().__init__()
        self.bits, self.symmetric = config.activation_bits, config.symmetric_activations
        self.power_of_two = config.power_of_two
        self.qmin, self.qmax = activation_qrange(self.bits)
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.observer = make_activation_observer(
            config.activation_observer, self.bits, self.symmetric, config.percentile
        )

    def set_range(self, low: float, high: float) -> None:
        scale, zero_point = affine_qparams(low, high, self.bits, self.symmetric, self.power_of_two)
        self.scale.fill_(scale)
        self.zero_point.fill_(zero_point)

    def finish(self) -> None:
        """Quantization parameters from what the observer has seen."""
        self.set_range(*self.observer.final_range())

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, steps)

    def qparams(self) -> tuple[float, int]:
        return float(self.scale), int(self.zero_point)


class QuantModel(nn.Module):
    """A traced float network with fake quantization; see the module docstring."""

    def __init__(self, net: nn.Module, trace: Trace, config) -> None:
        super().__init__()
        self.net, self.trace, self.config = net, trace, config
        self.mode = "float"
        self.bn_frozen = self.observers_frozen = False
        self.act = nn.ModuleDict({"input": ActQuant(config)})
        self.weight = nn.ModuleDict()
        self.source = {"input": "input"}  # tensor -> the tensor whose qparams it uses
        for step in trace.steps:
            own = step.kind in OWN_QPARAMS
            self.source[step.name] = step.name if own else self.source[step.inputs[0]]
            if own:
                self.act[step.name] = ActQuant(config)
            if step.kind in WEIGHTED:
                channels = net.get_submodule(step.module).weight.shape[0]
                if step.ssn:  # one set of weights per sub-band
                    channels *= net.get_submodule(step.ssn).num_subbands
                depthwise = step.kind == "depthwise"
                self.weight[step.name] = WeightQuant(channels, config, depthwise)

    @classmethod
    def prepare(cls, model: nn.Module, config, input_shape=None) -> QuantModel:
        """Trace a copy of `model` (the original is not touched) and add the quantizers."""
        net = copy.deepcopy(model).eval()
        return cls(net, trace_steps(net, input_shape), config).eval()

    # --- state changes ---------------------------------------------------------------------

    def set_mode(self, mode: str) -> QuantModel:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        return self

    def fold(self) -> None:
        """Fold every BatchNorm into its layer for good (the BatchNorm becomes Identity)."""
        fold_steps(self.net, self.trace.steps)

    def equalize(self) -> int:
        """Fold, then cross-layer equalize the network in place (`tinykws.quant.equalize`);
        returns how many layer pairs were rescaled."""
        self.fold()
        pairs = equalizable_pairs(self.trace, self.net)
        equalize(self.net, pairs)
        return len(pairs)

    def freeze_bn(self) -> None:
        """BatchNorms use (and stop updating) their running statistics from now on."""
        self.bn_frozen = True
        self.train(self.training)

    def freeze_observers(self) -> None:
        self.observers_frozen = True

    def freeze_weights(self) -> None:
        """Fix the weight scales to those of the current (folded) weights."""
        for step in self.weighted_steps():
            weight, _ = self.layer_weight_bias(step)
            self.weight[step.name].update(weight)
            self.weight[step.name].frozen = True

    def train(self, mode: bool = True) -> QuantModel:
        super().train(mode)
        if self.bn_frozen:
            for step in self.trace.steps:
                if step.bn:
                    self.net.get_submodule(step.bn).eval()
        return self

    # --- calibration -----------------------------------------------------------------------

    @torch.no_grad()
    def calibrate(self, batches) -> None:
        """Run the calibration batches (model inputs) through the observers and set qparams."""
        batches = list(batches)
        if not batches:
            raise TinyKWSError(
                "quantize: the calibration set is empty; give at least one clip "
                "per class (calibration_per_class >= 1, a split with clips)"
            )
        was_training, mode = self.training, self.mode
        self.eval()
        self.set_mode("calibrate")
        for batch in batches:
            self(batch)
        if any(q.observer.needs_histogram for q in self.act.values()):
            self.set_mode("histogram")
            for batch in batches:
                self(batch)
        for quantizer in self.act.values():
            quantizer.finish()
        self.set_mode(mode).train(was_training)

    # --- reading ---------------------------------------------------------------------------

    def weighted_steps(self) -> list[Step]:
        return [s for s in self.trace.steps if s.kind in WEIGHTED]

    def qparams(self, tensor: str) -> tuple[float, int]:
        """(scale, zero point) of a tensor of the graph."""
        return self.act[self.source[tensor]].qparams()

    def layer_weight_bias(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's (folded) float weight and bias (`tinykws.models.fold.layer_weight_bias`)."""
        return layer_weight_bias(self.net, step)

    def weight_scale(self, step: Step) -> torch.Tensor:
        """The weight scales of a weighted step as the graph holds them: after a fused bin
        average (`Step.bins`), the temporal weights repeat over the bins at 1/bins of their
        scale (float32)."""
        scale = self.weight[step.name].scale
        return (scale / step.bins).float() if step.bins else scale

    @torch.no_grad()
    def integer_layer(self, step: Step) -> IntegerLayer:
        """The int weights, weight scales and int32 bias a weighted step holds (as fake-quant).

        Raises:
            TinyKWSError: the weights are asymmetric, which the integer graph cannot hold.
        """
        quantizer = self.weight[step.name]
        if not quantizer.symmetric:
            raise TinyKWSError(ASYMMETRIC_WEIGHTS)
        weight, bias = self.layer_weight_bias(step)
        weight_scale = self.weight_scale(step)
        scale = bias_scale(self.act[self.source[step.inputs[0]]].scale, weight_scale)
        integers = quantizer.integers(weight)
        if step.bins:
            integers = integers.repeat(1, 1, 1, step.bins)
        return IntegerLayer(
            integers, weight_scale.clone(), quantize_bias(bias, scale), quantizer.bits
        )

    # --- forward ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {"input": self._quantize("input", x)}
        for step in self.trace.steps:
            args = [values[n] for n in step.inputs]
            y = ACTIVATIONS[step.activation](RUNNERS[step.kind](self, step, args))
            values[step.name] = self._quantize(step.name, y, step, args)
        return values[self.trace.output]

    def _quantize(
        self, name: str, y: torch.Tensor, step: Step | None = None, args=()
    ) -> torch.Tensor:
        quantizer = self.act[name] if name in self.act else None
        if self.mode == "fakequant":
            if quantizer is not None:
                if self.training and not self.observers_frozen:
                    quantizer.observer.update(y)
                    quantizer.finish()
                if step is not None and step.kind == "mean":
                    return requant.fake_mean(self, step, y, quantizer)
                if step is not None and step.kind == "silu":
                    return requant.fake_silu(self, step, args[0], y, quantizer)
                steps = None
                if step is not None and step.kind in (*WEIGHTED, "add"):
                    steps = requant.output_steps(self, step, y.dim())
                return quantizer(y, steps)
            if step is not None and step.kind == "avg_pool":
                return requant.fake_avg_pool(self, step, y)
        elif quantizer is not None and self.mode == "calibrate":
            quantizer.observer.update(y)
        elif quantizer is not None and self.mode == "histogram":
            if quantizer.observer.needs_histogram:
                quantizer.observer.update_histogram(y)
        return y


@dataclass
class IntegerLayer:
    """A weighted layer as integers: weights int64 (PyTorch layout), scales (C,) or (1,),
    bias int64 (C,) holding int32 values at s_in * s_w, and the weight bit width."""

    weight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor
    bits: int


# --- step runners -----------------------------------------------------------------------------


def _apply(layer: nn.Module, x, weight, bias):
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, layer.stride, 0, layer.dilation, layer.groups)


def _weighted(qm: QuantModel, step: Step, args):
    x = args[0]
    if step.bins:  # a fused bin average (Step.bins)
        x = x.mean(dim=3, keepdim=True)
    if step.kind != "linear" and any(step.pads):
        top, bottom, left, right = step.pads
        x = F.pad(x, (left, right, top, bottom))
    layer = qm.net.get_submodule(step.module)
    norm = qm.net.get_submodule(step.bn or step.ssn) if (step.bn or step.ssn) else None
    if qm.mode != "fakequant":
        y = _apply(layer, x, layer.weight, layer.bias)
        return norm(y) if norm is not None else y
    if step.bn and norm.training:
        return _bn_training(qm, step, layer, norm, x)
    weight, bias = qm.layer_weight_bias(step)  # one set per sub-band after a SubSpectralNorm
    quantizer = qm.weight[step.name]
    weight_q = quantizer(weight)
    scale = bias_scale(qm.act[qm.source[step.inputs[0]]].scale, qm.weight_scale(step))
    y = _apply(layer, x, weight_q, fake_quantize_bias(bias, scale))
    return band_select(y, norm.num_subbands) if step.ssn else y


def _bn_training(qm: QuantModel, step: Step, layer, bn, x):
    """Fake-quantized folded weight, un-scaled, then BatchNorm on batch statistics."""
    factor = bn_factor(bn)
    weight_q = qm.weight[step.name](layer.weight * channel_view(factor, layer.weight))
    shape = (1, -1, *([1] * (x.dim() - 2)))
    y = _apply(layer, x, weight_q, None) / factor.reshape(shape)
    if layer.bias is not None:
        y = y + layer.bias.reshape(shape)
    return bn(y)


def _module(qm: QuantModel, step: Step, args):
    return qm.net.get_submodule(step.module)(args[0])


def _pad(qm: QuantModel, step: Step, args):
    top, bottom, left, right = step.pads
    return F.pad(args[0], (left, right, top, bottom))


RUNNERS = {
    "conv": _weighted,
    "depthwise": _weighted,
    "linear": _weighted,
    "max_pool": _module,
    "avg_pool": _module,
    "mean": _module,
    "dropout": _module,
    "flatten": lambda qm, step, args: torch.flatten(args[0], 1),
    "add": lambda qm, step, args: args[0] + args[1],
    "silu": lambda qm, step, args: F.silu(args[0]),
    "pad": _pad,
}


@dataclass
class QuantizedModel:
    """The result of `tinykws.quant.quantize`.

    Attributes:
        module: a `QuantModel` (ptq, qat) or `tinykws.quant.dynamic.DynamicModel` (dynamic), in
            "fakequant" mode; `module.set_mode("float")` runs the float weights it came from.
        config: the `QuantConfig` used.
        history: what quantization recorded (calibration clips, QAT epochs and accuracies).
    """

    module: nn.Module
    config: object
    history: dict = field(default_factory=dict)

    @property
    def lowerable(self) -> bool:
        """True when `tinykws.quant.lower.lower` accepts this model."""
        return (
            isinstance(self.module, QuantModel)
            and self.config.activation_bits == 8
            and self.config.symmetric_weights
        )
