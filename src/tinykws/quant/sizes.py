"""Parameter memory: how many bytes a model's learnables take, with real weight packing.

- Float models: every parameter (BatchNorm scale and shift included, as MATLAB counts
  learnables) at 4 bytes.
- Quantized models (BatchNorm folded): weights at their storage width, biases as int32.
  Widths that divide a byte pack exactly: four 2-bit or two 4-bit weights per byte, one 8-bit;
  other widths use the next of those containers (3 -> 4 bits, 5..7 -> 8 bits), as the C kernels
  unpack them. Each tensor is packed on its own: ceil(count * storage_bits / 8) bytes. Beside
  it, `ideal_weight_bytes` is the size at exactly `weight_bits` per value (ceil(count * bits /
  8) per tensor), what a kernel unpacking any width would need, and `storage_note` says why
  they differ (e.g. "6-bit weights stored as 8 bits: the C kernels pack 8, 4 or 2 bits per
  value"). Asymmetric weights add one int32 zero point per scale to the constants.
- Deployment also stores per-channel requantization constants (int32 multiplier + shift per
  output channel of every conv/linear layer); they are counted apart (`constant_bytes`), as
  they are not learnables. Dynamic-range models keep float biases and float weight scales.

Example:
    >>> packed_bytes(10, 4), packed_bytes(10, 2), packed_bytes(10, 6), ideal_bytes(10, 6)
    (5, 3, 10, 8)
    >>> storage_note(6)
    '6-bit weights stored as 8 bits: the C kernels pack 8, 4 or 2 bits per value'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tinykws.quant.model import QuantModel

STORAGE_BITS = {2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 8: 8, 32: 32}
CONSTANT_BYTES_PER_CHANNEL = 8  # int32 Q31 multiplier + int32 shift
ZERO_POINT_BYTES = 4  # one int32 zero point per scale of asymmetric weights


def packed_bytes(count: int, bits: int) -> int:
    """Bytes of `count` weights of width `bits` in their storage container."""
    return math.ceil(count * STORAGE_BITS[bits] / 8)


def ideal_bytes(count: int, bits: int) -> int:
    """Bytes of `count` weights at exactly `bits` each (no container)."""
    return math.ceil(count * bits / 8)


def storage_note(bits: int) -> str | None:
    """Why `bits`-wide weights take more room than `bits` per value, or None when they do not."""
    stored = STORAGE_BITS[bits]
    if stored == bits:
        return None
    return (
        f"{bits}-bit weights stored as {stored} bits: the C kernels pack 8, 4 or 2 bits per value"
    )


@dataclass(frozen=True)
class ParameterMemory:
    """Learnables and their bytes.

    Attributes:
        learnables: number of stored parameters (weights + biases + other float parameters).
        weight_bits: width of the conv/linear weights (32 for float).
        weight_bytes: conv/linear weights, packed.
        bias_bytes: biases (int32 or float32) and any other float parameters.
        constant_bytes: per-channel quantization constants (0 for float models).
        ideal_weight_bytes: the weights at exactly `weight_bits` per value (0: as weight_bytes).
    """

    learnables: int
    weight_bits: int
    weight_bytes: int
    bias_bytes: int
    constant_bytes: int = 0
    ideal_weight_bytes: int = 0

    @property
    def storage_bits(self) -> int:
        """Bits each weight takes as stored (8, 4 or 2 for quantized weights; 32 for float)."""
        return STORAGE_BITS[self.weight_bits]

    @property
    def storage_note(self) -> str | None:
        return storage_note(self.weight_bits)

    @property
    def total_bytes(self) -> int:
        """Parameter memory: weights + biases."""
        return self.weight_bytes + self.bias_bytes

    @property
    def deployed_bytes(self) -> int:
        """Parameter memory plus quantization constants."""
        return self.total_bytes + self.constant_bytes

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "ideal_weight_bytes": self.ideal_weight_bytes or self.weight_bytes,
            "storage_bits": self.storage_bits,
            "storage_note": self.storage_note,
            "total_bytes": self.total_bytes,
            "deployed_bytes": self.deployed_bytes,
        }


def float_memory(model) -> ParameterMemory:
    """Every parameter of a float PyTorch model at 4 bytes."""
    from torch import nn

    weights = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    total = sum(p.numel() for p in model.parameters())
    return ParameterMemory(total, 32, 4 * weights, 4 * (total - weights), 0, 4 * weights)


def quantized_memory(quantized) -> ParameterMemory:
    """Parameter memory of a `QuantizedModel` (ptq, qat or dynamic)."""

    module = getattr(quantized, "module", quantized)
    if isinstance(module, QuantModel):
        return _integer_memory(module)
    return _dynamic_memory(module)


def _integer_memory(module) -> ParameterMemory:
    bits = module.config.weight_bits
    weights = biases = weight_bytes = ideal = channels = zero_points = 0
    for step in module.weighted_steps():
        weight, bias = module.layer_weight_bias(step)
        weights += weight.numel()
        biases += bias.numel()
        channels += weight.shape[0]
        weight_bytes += packed_bytes(weight.numel(), bits)
        ideal += ideal_bytes(weight.numel(), bits)
        quantizer = module.weight[step.name]
        zero_points += 0 if quantizer.symmetric else len(quantizer.scale)
    constants = CONSTANT_BYTES_PER_CHANNEL * channels + ZERO_POINT_BYTES * zero_points
    return ParameterMemory(weights + biases, bits, weight_bytes, 4 * biases, constants, ideal)


def _dynamic_memory(module) -> ParameterMemory:
    bits = module.config.weight_bits
    quantized = {f"{p}.weight": module.net.get_submodule(p).weight for p in module.paths}
    weight_bytes = sum(packed_bytes(w.numel(), bits) for w in quantized.values())
    ideal = sum(ideal_bytes(w.numel(), bits) for w in quantized.values())
    others = [p for n, p in module.net.named_parameters() if n not in quantized]
    total = sum(w.numel() for w in quantized.values()) + sum(p.numel() for p in others)
    scales = sum(len(q.scale) for q in module.weight.values())
    zero_points = sum(len(q.scale) for q in module.weight.values() if not q.symmetric)
    constants = 4 * scales + ZERO_POINT_BYTES * zero_points  # float32 scales (+ zero points)
    return ParameterMemory(
        total, bits, weight_bytes, 4 * sum(p.numel() for p in others), constants, ideal
    )


def graph_memory(graph) -> ParameterMemory:
    """Parameter memory of a Graph's constant tensors (weights packed by their bits)."""
    weights = biases = weight_bytes = ideal = channels = 0
    bits = 8
    for tensor in graph.tensors.values():
        if not tensor.is_constant:
            continue
        if tensor.dtype == "int8":
            weights += tensor.data.size
            weight_bytes += packed_bytes(tensor.data.size, tensor.bits)
            ideal += ideal_bytes(tensor.data.size, tensor.bits)
            channels += len(tensor.scale)
            bits = tensor.bits
        else:
            biases += tensor.data.size
    constants = CONSTANT_BYTES_PER_CHANNEL * channels
    return ParameterMemory(weights + biases, bits, weight_bytes, 4 * biases, constants, ideal)


def compression_ratio(reference: ParameterMemory, smaller: ParameterMemory) -> float:
    """How many times smaller `smaller`'s parameter memory is than `reference`'s."""
    return reference.total_bytes / max(smaller.total_bytes, 1)
