"""LiteRT's default op resolver hands every op of our int8 files to XNNPACK.

XNNPACK takes an int8 CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED only when its int32 bias
carries affine quantization (scale s_in * s_w[c], zero point 0, quantized dimension 0); without
it LiteRT runs the op in its builtin kernels, 3.3x slower for DS-CNN-S (`benchmarks/runtime.py`).
Default files carry it; `compact_bias` files leave it out of per-channel ops. Each model preset
is built untrained and calibrated on a few random feature maps (delegation does not depend on the
weights' values), and `litert_undelegated_ops` lists what LiteRT keeps for itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinykws.export.tflite import tflite_bytes
from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
from tinykws.ir.transform import with_io_dtype
from tinykws.measure.runtimes import TFLiteRunner, litert_undelegated_ops
from tinykws.models import MODEL_PRESETS, build_model, model_config
from tinykws.quant import QuantConfig, QuantData, quantize
from tinykws.quant.lower import lower

CONVS_AND_FC = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}

# preset -> op types LiteRT keeps (measured, ai-edge-litert 2.3.0 on x86-64): the default file
# leaves nothing undelegated in any family (BC-ResNet's SLICE, CONCATENATION, LOGISTIC, MUL,
# ADD, PAD and MEAN included); the compact file loses every conv and FULLY_CONNECTED.
COMPACT_UNDELEGATED = {
    "tinyconv": {"CONV_2D", "FULLY_CONNECTED"},
    "dscnn_s": CONVS_AND_FC,
    "commandnet": {"CONV_2D", "FULLY_CONNECTED"},
    "cnn3": {"CONV_2D", "FULLY_CONNECTED"},
    "cnn3_gap": {"CONV_2D", "FULLY_CONNECTED"},
    "bcresnet1": CONVS_AND_FC,
}


def untrained_int8_graph(preset: str, weight_scheme: str = "per_channel", weight_bits: int = 8):
    """The int8 graph (int8 io) of an untrained `preset` at 12 classes, calibrated on noise."""
    shape = FrontEnd(frontend_config(MODEL_PRESETS[preset].frontend)).output_shape
    torch.manual_seed(0)
    model = build_model(model_config(preset, 12, shape)).eval()
    features = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
    norm = Normalization(mean=(0.0,) * shape[1], std=(1.0,) * shape[1])
    config = QuantConfig(weight_scheme=weight_scheme, weight_bits=weight_bits)
    return with_io_dtype(lower(quantize(model, config, QuantData(features, norm))), "int8")


def _partitions(data: bytes) -> int:
    details = TFLiteRunner(data).interpreter._get_ops_details()
    return sum(op["op_name"] == "DELEGATE" for op in details)


def test_dscnn_s_runs_as_one_xnnpack_partition():
    graph = untrained_int8_graph("dscnn_s")
    data = tflite_bytes(graph, metadata={})
    assert litert_undelegated_ops(data) == []
    assert _partitions(data) == 1
    compact = tflite_bytes(graph, metadata={}, compact_bias=True)
    convs = ["CONV_2D", "DEPTHWISE_CONV_2D"] * 4 + ["CONV_2D"]
    assert litert_undelegated_ops(compact) == [*convs, "FULLY_CONNECTED"]
    assert _partitions(compact) == 1  # the MEAN alone, between the builtin convs and FC
    # what the bias quantization costs (measured): 2,560 B of 32,688, mostly one float32
    # scale per channel (the all-zero int64 zero-point vectors are stored once per length)
    assert (len(data), len(compact)) == (32688, 30128)


@pytest.mark.parametrize("preset", sorted(COMPACT_UNDELEGATED))
def test_every_family_is_fully_delegated_by_default(preset):
    graph = untrained_int8_graph(preset)
    assert litert_undelegated_ops(tflite_bytes(graph)) == []
    undelegated = litert_undelegated_ops(tflite_bytes(graph, compact_bias=True))
    assert set(undelegated) == COMPACT_UNDELEGATED[preset]


@pytest.mark.parametrize(
    ("weight_scheme", "weight_bits"),
    [("per_tensor", 8), ("per_channel_depthwise", 8), ("per_channel", 4)],
)
def test_other_weight_schemes_are_fully_delegated(weight_scheme, weight_bits):
    graph = untrained_int8_graph("dscnn_s", weight_scheme, weight_bits)
    data = tflite_bytes(graph, widen_narrow_weights=True)
    assert litert_undelegated_ops(data) == []
    assert _partitions(data) == 1
