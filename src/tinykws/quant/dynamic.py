"""Dynamic-range quantization: int weights (per channel, symmetric), float activations.

TFLite's dynamic-range mode stores int8 weights and computes in float, quantizing activations on
the fly; here the float model runs with its (BatchNorm-folded) conv and linear weights rounded to
their integer grid. No calibration data is needed, and any model works, BC-ResNet included. The
integer graph needs quantized activations, so a dynamic-range model does not lower to it.

Example:
    >>> import torch
    >>> from tinykws.models import build_model, model_config
    >>> from tinykws.quant import QuantConfig
    >>> model = build_model(model_config("bcresnet1", 12, (98, 40))).eval()
    >>> quantized = quantize_dynamic(model, QuantConfig(method="dynamic"), None)
    >>> quantized.module(torch.zeros(1, 1, 98, 40)).shape
    torch.Size([1, 12])
"""

from __future__ import annotations

import torch
from torch import nn

from tinykws.models.fold import fold_batchnorm
from tinykws.quant.model import QuantizedModel, WeightQuant

QUANTIZED_LAYERS = (nn.Conv2d, nn.Linear)


def _key(path: str) -> str:
    return path.replace(".", "__")


class DynamicModel(nn.Module):
    """A float model whose conv/linear weights are fake-quantized in "fakequant" mode."""

    def __init__(self, net: nn.Module, config) -> None:
        super().__init__()
        self.net, self.config, self.mode = net, config, "fakequant"
        self.paths = [p for p, m in net.named_modules() if isinstance(m, QUANTIZED_LAYERS)]
        self.weight = nn.ModuleDict()
        for path in self.paths:
            layer = net.get_submodule(path)
            depthwise = isinstance(layer, nn.Conv2d) and layer.groups > 1
            self.weight[_key(path)] = WeightQuant(layer.weight.shape[0], config, depthwise)

    @classmethod
    def prepare(cls, model: nn.Module, config) -> DynamicModel:
        """BatchNorm folded into a copy of `model`, weight quantizers attached and frozen."""
        module = cls(fold_batchnorm(model), config).eval()
        module.freeze_weights()
        return module

    def set_mode(self, mode: str) -> DynamicModel:
        self.mode = mode
        return self

    def freeze_weights(self) -> None:
        for path in self.paths:
            quantizer = self.weight[_key(path)]
            quantizer.update(self.net.get_submodule(path).weight)
            quantizer.frozen = True

    def quantized_weights(self) -> dict[str, torch.Tensor]:
        """Layer weight name -> its fake-quantized value."""
        return {
            f"{p}.weight": self.weight[_key(p)](self.net.get_submodule(p).weight)
            for p in self.paths
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "fakequant":
            return self.net(x)
        return torch.func.functional_call(self.net, self.quantized_weights(), (x,))


def quantize_dynamic(model, config, data=None) -> QuantizedModel:
    """Weights rounded per output channel; `data` is not used."""
    return QuantizedModel(DynamicModel.prepare(model, config), config, {})
