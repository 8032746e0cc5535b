"""Keyword-spotting model families, their presets, and size figures (parameters, MACs).

Every model takes float32 features (batch, 1, frames, bins) and returns logits
(batch, n_classes). Architecture is data: a family's frozen config holds the number of classes,
the input shape and every width, kernel and depth, so a model is rebuilt from its config alone
(`build_model(config_from_dict(d))`) and a pruned model is rebuilt from its config with new
widths (`config_of(pruned_model)`). Padding rules that keep every layer TFLite-friendly are in
`tinykws.models.layers`.

Families (`FAMILIES`): tinyconv, dscnn, commandnet, cnn3, bcresnet. Presets (`MODEL_PRESETS`)
name reference configurations with the front end and input shape they were published with; each
family's name is also a preset (its defaults).

Example:
    >>> config = model_config("dscnn_s", n_classes=10, input_shape=(49, 10))
    >>> model = build_model(config)
    >>> count_params(model), count_macs(model)
    (23050, 2656640)
    >>> smaller = model_config({"preset": "dscnn_s", "width_multiplier": 0.5})
    >>> smaller.first_filters, smaller.block_filters
    (32, (32, 32, 32, 32))
    >>> config_from_dict(config_to_dict(config)) == config
    True
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from tinykws.config import from_dict, to_dict
from tinykws.errors import TinyKWSError
from tinykws.models.bcresnet import BCResNet, BCResNetConfig
from tinykws.models.cnn3 import CNN3, CNN3Config
from tinykws.models.commandnet import CommandNet, CommandNetConfig
from tinykws.models.dscnn import DSCNN, DSCNNConfig
from tinykws.models.layers import scale_width
from tinykws.models.summary import LayerRow, count_macs, count_params, format_summary, summary
from tinykws.models.tinyconv import TinyConv, TinyConvConfig

__all__ = [
    "FAMILIES",
    "MODEL_PRESETS",
    "Family",
    "LayerRow",
    "Preset",
    "build_model",
    "config_from_dict",
    "config_of",
    "config_to_dict",
    "count_macs",
    "count_params",
    "format_summary",
    "model_config",
    "summary",
]


@dataclass(frozen=True)
class Family:
    """A model family: its config class, the module class built from it, one line about it."""

    name: str
    config_class: type
    module_class: Callable[[Any], nn.Module]
    description: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("tinyconv", TinyConvConfig, TinyConv, "TFLite Micro tiny_conv: 1 conv + FC"),
        Family("dscnn", DSCNNConfig, DSCNN, "Hello Edge / MLPerf Tiny depthwise-separable CNN"),
        Family("commandnet", CommandNetConfig, CommandNet, "MATLAB speech-command CNN"),
        Family("cnn3", CNN3Config, CNN3, "three conv blocks 64/128/256 + dense 256"),
        Family("bcresnet", BCResNetConfig, BCResNet, "BC-ResNet broadcasted residual network"),
    )
}


@dataclass(frozen=True)
class Preset:
    """A named reference configuration.

    Attributes:
        family: key of `FAMILIES`.
        settings: config fields that differ from the family's defaults.
        frontend: the `tinykws.features.frontend` preset it was designed for.
        description: one line for `tinykws models`.
    """

    family: str
    settings: dict[str, Any]
    frontend: str
    description: str


def _bcresnet(k: int) -> Preset:
    base = 8 * k
    settings = {
        "head_channels": 2 * base,
        "stage_channels": (base, base * 3 // 2, 2 * base, base * 5 // 2),
        "classifier_channels": 4 * base,
    }
    return Preset("bcresnet", settings, "logmel", f"BC-ResNet-{k} (base width {base})")


MODEL_PRESETS: dict[str, Preset] = {
    "tinyconv": Preset("tinyconv", {}, "micro", "micro_speech tiny_conv, 49x40, 4 classes"),
    "dscnn": Preset("dscnn", {}, "mfcc", "DS-CNN defaults (= dscnn_s)"),
    "dscnn_s": Preset("dscnn", {}, "mfcc", "MLPerf Tiny KWS: 64 ch, 4 blocks, 49x10 MFCC"),
    "dscnn_m": Preset(
        "dscnn",
        {"first_filters": 172, "block_filters": (172,) * 4},
        "mfcc",
        "Hello Edge DS-CNN-M: 172 ch, 4 blocks",
    ),
    "dscnn_l": Preset(
        "dscnn",
        {"first_filters": 276, "block_filters": (276,) * 5},
        "mfcc",
        "Hello Edge DS-CNN-L: 276 ch, 5 blocks",
    ),
    "dscnn_gostop": Preset(
        "dscnn",
        {"n_classes": 4, "input_shape": (31, 13), "first_filters": 90, "block_filters": (45, 45)},
        "gostop",
        "go/stop DS-CNN: filters [90, 45, 45], 31x13 MFCC",
    ),
    "commandnet": Preset("commandnet", {}, "bark", "MATLAB command CNN 12/24/48/48/48, 98x50"),
    "cnn3": Preset("cnn3", {}, "cnn3", "3-block CNN, flatten head (~1.2 M params), 128x64"),
    "cnn3_gap": Preset(
        "cnn3",
        {"padding": "same", "head": "average"},
        "cnn3",
        "3-block CNN, SAME convs, global-average head",
    ),
    "bcresnet": Preset("bcresnet", {}, "logmel", "BC-ResNet defaults (= bcresnet1)"),
    **{f"bcresnet{k}": _bcresnet(k) for k in (1, 2, 3, 6, 8)},
}


def _lookup(table: dict, name: Any, what: str) -> Any:
    if isinstance(name, str) and name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), list(table), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise TinyKWSError(f"model: unknown {what} {name!r}{hint}; valid: {', '.join(table)}")


def model_config(
    spec: str | dict[str, Any] | Any,
    n_classes: int | None = None,
    input_shape: tuple[int, int] | None = None,
) -> Any:
    """Resolve a model spec into a family's frozen config.

    Args:
        spec: a preset name; a dict with "preset" or "family", an optional "width_multiplier"
            (scales every width, rounding, at least 1) and config fields to override; or a
            config (returned with `n_classes` / `input_shape` applied).
        n_classes: output classes (overrides the preset's and the spec's).
        input_shape: (frames, bins) of the features (overrides the preset's and the spec's).

    Raises:
        TinyKWSError: unknown preset, family or key, or invalid values.
    """
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        settings, family, multiplier = to_dict(spec), spec.family, 1.0
    else:
        settings, family, multiplier = _resolve_spec(spec)
    if n_classes is not None:
        settings["n_classes"] = n_classes
    if input_shape is not None:
        settings["input_shape"] = tuple(input_shape)
    config = from_dict(FAMILIES[family].config_class, settings, where="model")
    return scale_widths(config, multiplier) if multiplier != 1.0 else config


def _resolve_spec(spec: str | dict[str, Any]) -> tuple[dict[str, Any], str, float]:
    settings = {"preset": spec} if isinstance(spec, str) else dict(spec)
    preset_name = settings.pop("preset", None)
    family = settings.pop("family", None)
    multiplier = settings.pop("width_multiplier", 1.0)
    if preset_name is not None:
        preset = _lookup(MODEL_PRESETS, preset_name, "preset")
        if family is not None and family != preset.family:
            raise TinyKWSError(
                f"model: preset '{preset_name}' is a {preset.family}, not a {family}; "
                "give only one of 'preset' and 'family'"
            )
        family, settings = preset.family, {**preset.settings, **settings}
    elif family is None:
        raise TinyKWSError(
            f"model: name a 'preset' (one of {', '.join(MODEL_PRESETS)}) or a 'family' "
            f"(one of {', '.join(FAMILIES)})"
        )
    _lookup(FAMILIES, family, "family")
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier <= 0:
        raise TinyKWSError(f"model: width_multiplier must be a positive number; got {multiplier!r}")
    return settings, family, float(multiplier)


def scale_widths(config: Any, multiplier: float) -> Any:
    """The config with every width field multiplied by `multiplier` (rounded, at least 1)."""
    changes = {}
    for name in config.WIDTH_FIELDS:
        value = getattr(config, name)
        if isinstance(value, tuple):
            changes[name] = tuple(scale_width(v, multiplier) for v in value)
        else:
            changes[name] = scale_width(value, multiplier)
    return dataclasses.replace(config, **changes)


def build_model(config: Any) -> nn.Module:
    """A freshly initialised model for `config` (a config, or anything `model_config` takes).

    The module has the config as its `.config` attribute.
    """
    if not (dataclasses.is_dataclass(config) and hasattr(config, "family")):
        config = model_config(config)
    return FAMILIES[config.family].module_class(config)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON/TOML data for `config`, with its "family"; `config_from_dict` reverses it."""
    return {"family": config.family, **to_dict(config)}


def config_from_dict(data: dict[str, Any]) -> Any:
    """The config written by `config_to_dict` (a "family" key plus every field, no presets)."""
    if not isinstance(data, dict) or "family" not in data:
        raise TinyKWSError(
            f"model: a saved model config needs a 'family' (one of {', '.join(FAMILIES)})"
        )
    data = dict(data)
    family = _lookup(FAMILIES, data.pop("family"), "family")
    return from_dict(family.config_class, data, where="model")


def config_of(model: nn.Module) -> Any:
    """The config that rebuilds `model` at its current layer widths.

    After channel surgery (e.g. Torch-Pruning) the layers are narrower than `model.config`
    says; `build_model(config_of(model)).load_state_dict(model.state_dict())` then rebuilds
    the pruned network from data alone.
    """
    return dataclasses.replace(model.config, **model.widths())
