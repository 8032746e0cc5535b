"""Datasets: Speech Commands folders (`speech_commands`), the synthetic corpus (`synth`),
downloads (`download.download`) and augmentation (`augment`).

The names below are loaded on first use, so `import tinykws.data` stays cheap.

Example:
    >>> from tinykws.data import DataConfig
    >>> DataConfig(preset="yesno4").labels
    ('_silence_', '_unknown_', 'yes', 'no')
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "speech_commands": (
        "BACKGROUND",
        "COMMAND_PRESETS",
        "LABEL_PRESETS",
        "SILENCE",
        "UNKNOWN",
        "WORDS",
        "Clip",
        "DataConfig",
        "Dataset",
        "all_clips",
        "load_clip_audio",
        "load_dataset",
        "load_noises",
        "load_waveforms",
        "waveforms_key",
        "which_set",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'tinykws.data' has no attribute {name!r}")
    module = importlib.import_module(f"tinykws.data.{_MODULE_OF[name]}")
    return getattr(module, name)
