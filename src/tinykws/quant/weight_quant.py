"""The weight quantizer of every conv and linear layer: symmetric or asymmetric, per output
channel or per tensor.

- Symmetric (`QuantConfig.weight_mode` "sym", TFLite's int8 spec): zero point 0, range
  ±(2^(bits-1) - 1). The integer graph, TFLite and C hold these.
- Asymmetric ("asym"): a zero point per scale and the full range [-2^(bits-1), 2^(bits-1) - 1]
  spread over [min(w), max(w)] (`tinykws.quant.observers.asymmetric_weight_qparams`). Only the
  fake-quantized model computes with them (accuracy studies).

Example:
    >>> import torch
    >>> from tinykws.quant import QuantConfig
    >>> quantizer = WeightQuant(1, QuantConfig(weight_bits=2, weight_mode="asym"))
    >>> weight = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    >>> quantizer.update(weight)  # [0, 3] over [-2, 1]: scale 1, zero point -2
    >>> quantizer.integers(weight).tolist(), quantizer.zero_point.tolist()
    ([[-2, -1, 0, 1]], [-2.0])
"""

from __future__ import annotations

import torch
from torch import nn

from tinykws.ir.params import weight_qrange
from tinykws.quant.fake import activation_qrange, channel_view, fake_quantize, quantize_to_int
from tinykws.quant.observers import asymmetric_weight_qparams, weight_scales


class WeightQuant(nn.Module):
    """Weight quantizer; scales (and zero points) follow the weights until `frozen`.

    Buffers: `scale` float32 (C,) or (1,); `zero_point` (asymmetric only) integer-valued
    float32 of the same shape. Symmetric quantizers hold no zero point, so their checkpoints
    are what they always were.
    """

    def __init__(self, channels: int, config, depthwise: bool = False) -> None:
        super().__init__()
        self.bits, self.per_channel = config.weight_bits, config.per_channel(depthwise)
        self.observer, self.power_of_two = config.weight_observer, config.power_of_two
        self.symmetric = config.symmetric_weights
        qrange = weight_qrange if self.symmetric else activation_qrange
        self.qmin, self.qmax = qrange(self.bits)
        size = channels if self.per_channel else 1
        self.register_buffer("scale", torch.ones(size))
        if not self.symmetric:
            self.register_buffer("zero_point", torch.zeros(size))
        self.frozen = False

    def update(self, weight: torch.Tensor) -> None:
        with torch.no_grad():
            if self.symmetric:
                scales = weight_scales(
                    weight, self.bits, self.per_channel, self.observer, self.power_of_two
                )
            else:
                scales, zeros = asymmetric_weight_qparams(
                    weight, self.bits, self.per_channel, self.observer, self.power_of_two
                )
                self.zero_point.copy_(zeros.to(self.zero_point))
            self.scale.copy_(scales.to(self.scale))

    def _zero(self, weight: torch.Tensor):
        return 0.0 if self.symmetric else channel_view(self.zero_point, weight)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            self.update(weight)
        scale = channel_view(self.scale, weight)
        return fake_quantize(weight, scale, self._zero(weight), self.qmin, self.qmax)

    def integers(self, weight: torch.Tensor) -> torch.Tensor:
        """The stored integers `forward` rounds to (zero point included; int64, same shape)."""
        scale = channel_view(self.scale, weight)
        return quantize_to_int(weight, scale, self._zero(weight), self.qmin, self.qmax)
