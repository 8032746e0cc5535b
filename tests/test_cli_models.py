"""`tinykws models` and `tinykws env`."""

from __future__ import annotations

import pytest

from tinykws.cli import main
from tinykws.models import MODEL_PRESETS


def test_models_lists_every_preset_with_sizes(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_PRESETS:
        assert name in out
    assert "16,652" in out  # tinyconv at 49x40, 4 classes
    assert "23,180" in out and "2,656,768" in out  # dscnn_s at 49x10, 12 classes


def test_models_name_prints_layers_for_given_input_and_classes(capsys):
    assert main(["models", "dscnn_s", "--input", "49x10", "--classes", "4"]) == 0
    out = capsys.readouterr().out
    assert "blocks.3.pointwise.conv" in out
    assert "2,560" in out  # first conv: 64 x 10 x 4 weights, no bias before BatchNorm
    assert "22,660" in out  # total at 4 classes: 23,180 - 8 * (64 + 1)


def test_models_with_an_input_some_presets_cannot_take(capsys):
    assert main(["models", "--input", "49x10"]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out  # BC-ResNet needs 40 bins


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["models", "dscnn_xl"], "dscnn_s"),
        (["models", "dscnn_s", "--input", "49by10"], "FRAMESxBINS"),
        (["models", "dscnn_s", "--classes", "many"], "--classes"),
        (["models", "cnn3", "--input", "8x8"], "input_shape"),
    ],
)
def test_models_bad_input_is_one_error_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err


def test_env_prints_versions_and_hardware(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ("tinykws", "torch", "numpy", "torch-pruning", "ai-edge-litert", "python", "cpu"):
        assert name in out
    assert "accelerator" in out
