"""BC-ResNet: broadcasted residual learning (Kim et al., Interspeech 2021, arXiv:2106.04140).

A block splits the work between a 2-D frequency part and a cheap 1-D time part:

    f2:  [1x1 conv, BN, ReLU — transition blocks only]  ->  frequency-depthwise conv (1x3 over
         bins) -> SubSpectralNorm                                   (B, C, T, F)   = aux
    f1:  average over bins -> time-depthwise conv (3x1, dilated) -> BN -> SiLU (swish)
         -> pointwise 1x1 -> spatial dropout                        (B, C, T, 1)
    out: ReLU(f1 broadcast over bins + aux [+ input, normal blocks])

A head conv (5x5, stride 2 over bins), four stages of (2, 2, 4, 4) blocks with frequency
strides (1, 2, 2, 1) and time dilations (1, 2, 4, 8), then a classifier: depthwise conv over
5 frames x all remaining bins, pointwise conv, BN, ReLU, global average, FC. BC-ResNet-k uses
base width 8k: head 16k, stages 8k/12k/16k/20k, classifier 32k. Input: 98 frames x 40 log-mel
bins (the 40 bins become 20, 10, 5, 5 through the stages). The first block of every stage is a
transition block (no identity shortcut), whatever its widths, so a pruned network keeps the
structure it was built with.

Differences from the reference code (github.com/Qualcomm-AI-research/bcresnet): tensors are
(frames, bins) instead of (bins, frames); strided convolutions use TensorFlow's SAME padding;
the classifier's depthwise conv is VALID in time too (the reference pads time by 2) so it
lowers to one VALID DEPTHWISE_CONV_2D; the last layer is a Linear after the average.

How it lowers to the integer graph (`tinykws.quant.lower`):
- the frequency-depthwise conv and its SubSpectralNorm fold into one set of depthwise weights
  per sub-band (the norm's scale changes along the bins, so it cannot fold into one conv): a
  SLICE of the bins each band reads, a DEPTHWISE_CONV_2D per band, one CONCATENATION;
- the average over bins is an AVERAGE_POOL_2D, the classifier's average a MEAN;
- SiLU is LOGISTIC then MUL(x, sigmoid(x));
- f1 + aux is an ADD broadcasting (B, T, 1, C) onto (B, T, F, C); the identity shortcut a
  second ADD with the ReLU fused.

Example:
    >>> import torch
    >>> from tinykws.models import build_model
    >>> build_model(BCResNetConfig())(torch.zeros(2, 1, 98, 40)).shape
    torch.Size([2, 12])
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models.layers import ConvSpec, check_model_config, conv_block, conv_layers


class SubSpectralNorm(nn.Module):
    """BatchNorm with separate statistics and affine parameters per frequency sub-band.

    The bins are cut into `num_subbands` equal bands; channel c of band s is normalised as
    channel c*num_subbands + s of one BatchNorm2d over (B, C*S, F/S, T). Input (B, C, T, F) with
    F divisible by `num_subbands`.
    """

    summary_leaf = True  # one row in a model summary, not the inner BatchNorm's reshaped view

    def __init__(self, channels: int, num_subbands: int):
        super().__init__()
        self.num_subbands = num_subbands
        self.bn = nn.BatchNorm2d(channels * num_subbands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bins first, so each sub-band is a contiguous block of rows and channel c of band s
        # becomes BN feature c*S + s. One 4-D reshape each way (sizes read with .size(), which
        # torch.fx can trace) is what Torch-Pruning maps correctly from C to C*S channels.
        s = self.num_subbands
        y = x.transpose(2, 3)
        y = self.bn(y.reshape(y.size(0), -1, y.size(2) // s, y.size(3)))
        return y.reshape(y.size(0), -1, y.size(2) * s, y.size(3)).transpose(2, 3)


@dataclass(frozen=True)
class BCResNetConfig:
    """Architecture of a BC-ResNet.

    Attributes:
        n_classes: output classes.
        input_shape: (frames, bins) of the features.
        head_channels: output channels of the head conv.
        stage_channels: width of each stage (all blocks of a stage share it: residual adds).
        classifier_channels: width of the classifier's pointwise conv.
        stage_blocks: blocks per stage.
        stage_freq_strides: frequency stride of each stage's first block.
        stage_dilations: time dilation of the temporal depthwise conv in each stage.
        num_subbands: frequency sub-bands of SubSpectralNorm.
        dropout: spatial dropout rate in every block.
    """

    family: ClassVar[str] = "bcresnet"
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = (
        "head_channels",
        "stage_channels",
        "classifier_channels",
    )

    n_classes: int = 12
    input_shape: tuple[int, int] = (98, 40)
    head_channels: int = 16
    stage_channels: tuple[int, ...] = (8, 12, 16, 20)
    classifier_channels: int = 32
    stage_blocks: tuple[int, ...] = (2, 2, 4, 4)
    stage_freq_strides: tuple[int, ...] = (1, 2, 2, 1)
    stage_dilations: tuple[int, ...] = (1, 2, 4, 8)
    num_subbands: int = 5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_model_config(self)
        per_stage = (self.stage_blocks, self.stage_freq_strides, self.stage_dilations)
        n = len(self.stage_channels)
        if any(len(v) != n or min(v, default=0) < 1 for v in per_stage) or self.num_subbands < 1:
            raise TinyKWSError(
                f"bcresnet: stage_blocks, stage_freq_strides and stage_dilations need one "
                f"positive value per stage ({n}), and num_subbands must be positive"
            )
        if self.input_shape[0] < 5:
            raise TinyKWSError(f"bcresnet: needs at least 5 frames; got {self.input_shape}")
        bins = self.stage_bins()
        if any(b % self.num_subbands for b in bins):
            raise TinyKWSError(
                f"bcresnet: the bins at each stage ({', '.join(map(str, bins))} for "
                f"{self.input_shape[1]} input bins) must split into num_subbands="
                f"{self.num_subbands} equal sub-bands; use 40 bins (or another multiple of 40)"
            )

    def head_spec(self) -> ConvSpec:
        return ConvSpec((5, 5), (1, 2))

    def stage_bins(self) -> list[int]:
        """Bins after each stage (SAME strides: ceil division)."""
        bins = -(-self.input_shape[1] // 2)
        out = []
        for stride in self.stage_freq_strides:
            bins = -(-bins // stride)
            out.append(bins)
        return out


@dataclass(frozen=True)
class BlockSpec:
    """Where a block sits: channels in and out, input (frames, bins), frequency stride,
    time dilation, and whether it is a transition block (no identity shortcut)."""

    in_channels: int
    channels: int
    in_hw: tuple[int, int]
    freq_stride: int = 1
    dilation: int = 1
    transition: bool = False


class BCResBlock(nn.Module):
    """One broadcasted residual block; see the module docstring. Input (B, C_in, T, F)."""

    def __init__(self, spec: BlockSpec, num_subbands: int, dropout: float):
        super().__init__()
        channels, (frames, _) = spec.channels, spec.in_hw
        self.transition = spec.transition
        f2: list[tuple[str, nn.Module]] = []
        if spec.transition:
            expand, _ = conv_block(spec.in_channels, channels, ConvSpec((1, 1)), spec.in_hw)
            f2.append(("expand", expand))
        freq_spec = ConvSpec((1, 3), (1, spec.freq_stride), groups=0)
        freq_conv, self.out_hw = conv_layers(channels, channels, freq_spec, spec.in_hw)
        ssn = SubSpectralNorm(channels, num_subbands)
        self.f2 = nn.Sequential(OrderedDict([*f2, *freq_conv, ("ssn", ssn)]))
        # A fixed (1, bins) window rather than adaptive pooling: exports to ONNX and lowers to
        # one AVERAGE_POOL_2D (or MEAN over bins).
        self.freq_pool = nn.AvgPool2d((1, self.out_hw[1]))
        time_spec = ConvSpec((3, 1), dilation=(spec.dilation, 1), groups=0)
        temporal, _ = conv_block(channels, channels, time_spec, (frames, 1), act="silu")
        self.f1 = nn.Sequential(
            OrderedDict(
                temporal=temporal,
                pointwise=nn.Conv2d(channels, channels, 1, bias=False),
                dropout=nn.Dropout2d(dropout),
            )
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aux = self.f2(x)
        out = self.f1(self.freq_pool(aux)) + aux
        if not self.transition:
            out = out + x
        return self.act(out)


class BCResNet(nn.Module):
    """head conv -> BC-ResBlock stages -> depthwise/pointwise classifier -> FC."""

    def __init__(self, config: BCResNetConfig):
        super().__init__()
        self.config = config
        self.head, hw = conv_block(1, config.head_channels, config.head_spec(), config.input_shape)
        self.stages, channels = nn.ModuleList(), config.head_channels
        for i, width in enumerate(config.stage_channels):
            blocks = []
            for j in range(config.stage_blocks[i]):
                stride = config.stage_freq_strides[i] if j == 0 else 1
                spec = BlockSpec(channels, width, hw, stride, config.stage_dilations[i], j == 0)
                blocks.append(BCResBlock(spec, config.num_subbands, config.dropout))
                hw, channels = blocks[-1].out_hw, width
            self.stages.append(nn.Sequential(*blocks))
        self.classifier = self._classifier(channels, hw)

    def _classifier(self, channels: int, hw: tuple[int, int]) -> nn.Sequential:
        config = self.config
        spec = ConvSpec((5, hw[1]), groups=0, padding="valid")
        depthwise, hw = conv_layers(channels, channels, spec, hw)
        pointwise, _ = conv_block(channels, config.classifier_channels, ConvSpec((1, 1)), hw)
        return nn.Sequential(
            OrderedDict(
                depthwise=nn.Sequential(OrderedDict(depthwise)),
                pointwise=pointwise,
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(config.classifier_channels, config.n_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x)

    def widths(self) -> dict:
        """The width fields of the config as the layers are now (after channel surgery)."""
        return {
            "head_channels": self.head.conv.out_channels,
            "stage_channels": tuple(s[0].f1.pointwise.out_channels for s in self.stages),
            "classifier_channels": self.classifier.pointwise.conv.out_channels,
        }
