"""CommandNet: the CNN of MATLAB's "Train Deep Learning Network for Speech Command Recognition".

Five 3x3 SAME convolutions (12, 24, 48, 48, 48 filters), each with BatchNorm and ReLU; a 3x3
stride-2 SAME max pool after each of the first three; a max pool over all remaining frames
(MATLAB's `maxPooling2dLayer([ceil(numHops/8) 1])`, which for 98 frames is 13 = every frame
left); dropout 0.2; a fully connected layer. Input: 98 frames x 50 bark bands.

Differences from the MATLAB network: no conv biases before BatchNorm (the BN shift replaces
them), so 58,944 learnables at 12 classes instead of 59,124.

Lowering: CONV_2D (SAME) with BN folded in, MAX_POOL_2D (SAME: `ceil_mode=True` with the leading
pad, see `tinykws.models.layers`; the time pool is VALID), RESHAPE (flatten in PyTorch's
(channels, frames, bins) order), FULLY_CONNECTED.

Example:
    >>> from tinykws.models import build_model, count_params
    >>> count_params(build_model(CommandNetConfig()))
    58944
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.models.layers import (
    ConvSpec,
    check_model_config,
    check_pairs,
    conv_block,
    max_pool_same,
)


@dataclass(frozen=True)
class CommandNetConfig:
    """Architecture of a CommandNet.

    Attributes:
        n_classes: output classes.
        input_shape: (frames, bins) of the features.
        filters: output channels of each convolution, in order.
        kernel: (time, freq) kernel of every convolution (SAME, stride 1).
        pooled_convs: a SAME max pool follows each of the first `pooled_convs` convolutions.
        pool_kernel: kernel of those pools; `pool_stride` is their stride.
        dropout: dropout before the fully connected layer.
    """

    family: ClassVar[str] = "commandnet"
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("filters",)

    n_classes: int = 12
    input_shape: tuple[int, int] = (98, 50)
    filters: tuple[int, ...] = (12, 24, 48, 48, 48)
    kernel: tuple[int, int] = (3, 3)
    pooled_convs: int = 3
    pool_kernel: int = 3
    pool_stride: int = 2
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_model_config(self)
        check_pairs(self, "kernel")
        if not 0 <= self.pooled_convs <= len(self.filters):
            raise TinyKWSError(
                f"commandnet: pooled_convs must be between 0 and {len(self.filters)} "
                f"(the number of convolutions); got {self.pooled_convs}"
            )
        if self.pool_kernel < 1 or self.pool_stride < 1 or self.pool_kernel % 2 == 0:
            raise TinyKWSError(
                f"commandnet: pool_kernel must be odd and pool_stride positive; got "
                f"{self.pool_kernel} and {self.pool_stride}"
            )


class CommandNet(nn.Sequential):
    """conv/BN/ReLU x5 with max pools -> max over time -> dropout -> FC. Input (B, 1, T, F)."""

    def __init__(self, config: CommandNetConfig):
        layers: list[tuple[str, nn.Module]] = []
        hw, channels = config.input_shape, 1
        for i, width in enumerate(config.filters):
            block, hw = conv_block(channels, width, ConvSpec(config.kernel), hw)
            layers.append((f"conv{i}", block))
            if i < config.pooled_convs:
                pool, hw = max_pool_same(config.pool_kernel, config.pool_stride, hw)
                layers.append((f"pool{i}", pool))
            channels = width
        layers += [
            ("time_pool", nn.MaxPool2d((hw[0], 1))),
            ("dropout", nn.Dropout(config.dropout)),
            ("flatten", nn.Flatten()),
            ("classifier", nn.Linear(channels * hw[1], config.n_classes)),
        ]
        super().__init__(OrderedDict(layers))
        self.config = config

    def widths(self) -> dict:
        """The width fields of the config as the layers are now (after channel surgery)."""
        n = len(self.config.filters)
        return {"filters": tuple(getattr(self, f"conv{i}").conv.out_channels for i in range(n))}
