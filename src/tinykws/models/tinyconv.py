"""TinyConv: TensorFlow's `tiny_conv`, the model behind TFLite Micro's micro_speech example.

One convolution (8 filters, 10x8, stride 2, SAME), ReLU, dropout, and a fully connected layer
over the flattened map. On the micro_speech input (49 frames x 40 bins, 4 classes) that is
8*(10*8+1) = 648 + 25*20*8*4 + 4 = 16,004, i.e. 16,652 parameters, the same as the TensorFlow
model (`create_tiny_conv_model` in tensorflow/examples/speech_commands/models.py).

Lowering: CONV_2D with SAME padding (the ZeroPad2d before the conv holds exactly TensorFlow's SAME
pads), RESHAPE, FULLY_CONNECTED. The flatten is over (channels, frames, bins) in PyTorch's order; an
NHWC graph must permute the FC weights to (frames, bins, channels).

Example:
    >>> from tinykws.models import build_model, count_params
    >>> count_params(build_model(TinyConvConfig()))
    16652
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from tinykws.models.layers import ConvSpec, check_model_config, check_pairs, conv_block


@dataclass(frozen=True)
class TinyConvConfig:
    """Architecture of a TinyConv network.

    Attributes:
        n_classes: output classes.
        input_shape: (frames, bins) of the features.
        filters: convolution output channels (the only width).
        kernel: (time, freq) kernel size.
        stride: (time, freq) stride.
        dropout: dropout rate after the ReLU (training only).
    """

    family: ClassVar[str] = "tinyconv"
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("filters",)

    n_classes: int = 4
    input_shape: tuple[int, int] = (49, 40)
    filters: int = 8
    kernel: tuple[int, int] = (10, 8)
    stride: tuple[int, int] = (2, 2)
    dropout: float = 0.5

    def __post_init__(self) -> None:
        check_model_config(self)
        check_pairs(self, "kernel", "stride")
        self.conv_spec().output_hw(self.input_shape, self.family)

    def conv_spec(self) -> ConvSpec:
        return ConvSpec(self.kernel, self.stride)


class TinyConv(nn.Sequential):
    """conv (SAME) -> ReLU -> dropout -> flatten -> fully connected. Input (B, 1, frames, bins)."""

    def __init__(self, config: TinyConvConfig):
        conv, (h, w) = conv_block(1, config.filters, config.conv_spec(), config.input_shape, False)
        super().__init__(
            OrderedDict(
                conv=conv,
                dropout=nn.Dropout(config.dropout),
                flatten=nn.Flatten(),
                classifier=nn.Linear(config.filters * h * w, config.n_classes),
            )
        )
        self.config = config

    def widths(self) -> dict:
        """The width fields of the config as the layers are now (after channel surgery)."""
        return {"filters": self.conv.conv.out_channels}
