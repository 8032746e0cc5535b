"""CNN3: a plain three-block CNN (64/128/256 filters) on a 128x64 log-mel image.

Each block is conv 3x3 (stride 2 in the first block), BatchNorm, ReLU, 2x2 max pool and spatial
dropout (`nn.Dropout2d`, whole channels). A head turns the last map into 256 dense units (ReLU)
and the classes.

Two heads, chosen by `head`:
- ``"flatten"`` (preset ``cnn3``): VALID convolutions and a flatten of the 256x6x2 map, which is
  how the reference study's model reaches its ~1.2 M parameters: 1,166,052 at 36 classes on
  128x64 (the dense layer alone is 3072*256 + 256 = 786,688).
- ``"average"`` (preset ``cnn3_gap``): SAME convolutions and a global average pool; 445,156
  parameters at 36 classes, independent of the input size.

Lowering: CONV_2D with BN folded in, MAX_POOL_2D (VALID), then RESHAPE (flatten in PyTorch's
(channels, frames, bins) order) or MEAN, FULLY_CONNECTED x2.

Example:
    >>> from tinykws.models import build_model, count_params
    >>> count_params(build_model(CNN3Config()))
    1166052
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from tinykws.config import check_choice
from tinykws.errors import TinyKWSError
from tinykws.models.layers import ConvSpec, check_model_config, check_pairs, conv_block

HEADS = ("flatten", "average")


@dataclass(frozen=True)
class CNN3Config:
    """Architecture of a CNN3.

    Attributes:
        n_classes: output classes.
        input_shape: (frames, bins) of the features.
        filters: output channels of each block's convolution.
        conv_strides: stride of each block's convolution (same along time and frequency).
        kernel: (time, freq) kernel of every convolution.
        pool: max-pool size (and stride) after each convolution.
        padding: "valid" or "same" for the convolutions.
        head: "flatten" (flatten the map) or "average" (global average pool).
        dense_units: width of the hidden dense layer.
        dropout: spatial dropout rate after each block.
    """

    family: ClassVar[str] = "cnn3"
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("filters", "dense_units")

    n_classes: int = 36
    input_shape: tuple[int, int] = (128, 64)
    filters: tuple[int, ...] = (64, 128, 256)
    conv_strides: tuple[int, ...] = (2, 1, 1)
    kernel: tuple[int, int] = (3, 3)
    pool: int = 2
    padding: str = "valid"
    head: str = "flatten"
    dense_units: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_model_config(self)
        check_pairs(self, "kernel")
        check_choice("cnn3: head", self.head, HEADS)
        if len(self.conv_strides) != len(self.filters) or min(self.conv_strides) < 1:
            raise TinyKWSError(
                f"cnn3: conv_strides needs one positive stride per entry of filters "
                f"({len(self.filters)}); got {self.conv_strides!r}"
            )
        if self.pool < 1:
            raise TinyKWSError(f"cnn3: pool must be a positive size; got {self.pool}")
        self.final_hw()

    def conv_spec(self, stride: int) -> ConvSpec:
        return ConvSpec(self.kernel, (stride, stride), padding=self.padding)

    def final_hw(self) -> tuple[int, int]:
        """(frames, bins) of the last block's output; an error if the input is too small."""
        hw = self.input_shape
        for stride in self.conv_strides:
            hw = self.conv_spec(stride).output_hw(hw, self.family)
            hw = (hw[0] // self.pool, hw[1] // self.pool)
            if min(hw) < 1:
                raise TinyKWSError(
                    f"cnn3: input_shape {self.input_shape} is too small for {len(self.filters)} "
                    f"blocks of {self.padding} convolutions and {self.pool}x{self.pool} pools"
                )
        return hw


class CNN3(nn.Sequential):
    """[conv/BN/ReLU/max-pool/Dropout2d] x3 -> flatten or average -> dense -> FC."""

    def __init__(self, config: CNN3Config):
        layers: list[tuple[str, nn.Module]] = []
        hw, channels = config.input_shape, 1
        for i, (width, stride) in enumerate(zip(config.filters, config.conv_strides)):
            block, hw = conv_block(channels, width, config.conv_spec(stride), hw)
            block.add_module("pool", nn.MaxPool2d(config.pool))
            block.add_module("dropout", nn.Dropout2d(config.dropout))
            hw = (hw[0] // config.pool, hw[1] // config.pool)
            layers.append((f"block{i}", block))
            channels = width
        if config.head == "average":
            layers.append(("pool", nn.AdaptiveAvgPool2d(1)))
            hw = (1, 1)
        layers += [
            ("flatten", nn.Flatten()),
            ("dense", nn.Linear(channels * hw[0] * hw[1], config.dense_units)),
            ("dense_act", nn.ReLU()),
            ("classifier", nn.Linear(config.dense_units, config.n_classes)),
        ]
        super().__init__(OrderedDict(layers))
        self.config = config

    def widths(self) -> dict:
        """The width fields of the config as the layers are now (after channel surgery)."""
        n = len(self.config.filters)
        return {
            "filters": tuple(getattr(self, f"block{i}").conv.out_channels for i in range(n)),
            "dense_units": self.dense.out_features,
        }
