"""DS-CNN: the depthwise-separable CNN of "Hello Edge" (Zhang et al. 2017) and MLPerf Tiny KWS.

A first convolution (10x4, stride 2, SAME) with BatchNorm and ReLU, then N depthwise-separable
blocks — depthwise 3x3 (BN, ReLU) and pointwise 1x1 (BN, ReLU) — an average over the whole
map, and a fully connected layer.

Every width is in the config: `first_filters` and one pointwise width per block in
`block_filters`. A depthwise layer has as many channels as the layer before it, so pruning a
pointwise layer's outputs also shrinks the next depthwise layer, and each block's width can be
pruned independently.

Presets:
- ``dscnn_s`` — MLPerf Tiny's KWS reference (64 channels, 4 blocks) on 49x10 MFCC. Its Keras model
  has 23,756 trainable parameters at 12 classes, 576 of them conv biases that the BatchNorm after
  each conv makes redundant; without them this model has 23,180. 2.66 M MACs (Hello Edge quotes
  5.4 M operations for DS-CNN-S).
- ``dscnn_gostop`` — filters [90, 45, 45]: the first conv has 90 filters, then two blocks of 45.

Differences from the Keras reference: no conv biases before BatchNorm (see above), and the final
average covers the whole map (MLPerf's pool of int(49/2) x int(10/2) = 24x5 skips the last of
25 rows).

Lowering: CONV_2D (SAME; the ZeroPad2d before it holds TensorFlow's pads), DEPTHWISE_CONV_2D and
CONV_2D with BN folded in, MEAN over (frames, bins), FULLY_CONNECTED.

Example:
    >>> from tinykws.models import build_model, count_params
    >>> count_params(build_model(DSCNNConfig()))
    23180
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from tinykws.models.layers import ConvSpec, check_model_config, check_pairs, conv_block


@dataclass(frozen=True)
class DSCNNConfig:
    """Architecture of a DS-CNN.

    Attributes:
        n_classes: output classes.
        input_shape: (frames, bins) of the features.
        first_filters: output channels of the first (full) convolution.
        first_kernel: its (time, freq) kernel.
        first_stride: its (time, freq) stride.
        block_filters: pointwise output channels, one per depthwise-separable block.
        block_kernel: depthwise kernel (time, freq), stride 1.
        padding: "same" or "valid" for every convolution.
        dropout: dropout after the first convolution.
        final_dropout: dropout before the average pool.
    """

    family: ClassVar[str] = "dscnn"
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("first_filters", "block_filters")

    n_classes: int = 12
    input_shape: tuple[int, int] = (49, 10)
    first_filters: int = 64
    first_kernel: tuple[int, int] = (10, 4)
    first_stride: tuple[int, int] = (2, 2)
    block_filters: tuple[int, ...] = (64, 64, 64, 64)
    block_kernel: tuple[int, int] = (3, 3)
    padding: str = "same"
    dropout: float = 0.2
    final_dropout: float = 0.4

    def __post_init__(self) -> None:
        check_model_config(self)
        check_pairs(self, "first_kernel", "first_stride", "block_kernel")
        hw = self.first_spec().output_hw(self.input_shape, self.family)
        for _ in self.block_filters:
            hw = self.depthwise_spec().output_hw(hw, self.family)

    def first_spec(self) -> ConvSpec:
        return ConvSpec(self.first_kernel, self.first_stride, padding=self.padding)

    def depthwise_spec(self) -> ConvSpec:
        return ConvSpec(self.block_kernel, groups=0, padding=self.padding)


class DSCNN(nn.Sequential):
    """first conv -> depthwise-separable blocks -> global average -> FC. Input (B, 1, T, F)."""

    def __init__(self, config: DSCNNConfig):
        first, hw = conv_block(1, config.first_filters, config.first_spec(), config.input_shape)
        blocks, channels = [], config.first_filters
        for width in config.block_filters:
            depthwise, hw = conv_block(channels, channels, config.depthwise_spec(), hw)
            pointwise, hw = conv_block(channels, width, ConvSpec((1, 1)), hw)
            blocks.append(nn.Sequential(OrderedDict(depthwise=depthwise, pointwise=pointwise)))
            channels = width
        super().__init__(
            OrderedDict(
                first=first,
                dropout=nn.Dropout(config.dropout),
                blocks=nn.Sequential(*blocks),
                final_dropout=nn.Dropout(config.final_dropout),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                classifier=nn.Linear(channels, config.n_classes),
            )
        )
        self.config = config

    def widths(self) -> dict:
        """The width fields of the config as the layers are now (after channel surgery)."""
        return {
            "first_filters": self.first.conv.out_channels,
            "block_filters": tuple(b.pointwise.conv.out_channels for b in self.blocks),
        }
