"""The generated C front end (float32) against features.frontend.FrontEnd.numpy (float64 inside).

Tolerances:
- features within 1e-3 absolute on clips with a noise floor (tone words, noise, silence, speech
  level): the C path is float32 throughout, FFT included; observed <= 2.5e-4;
- 5e-3 on clean full-scale synthetic tones with no noise floor at all: a float32 FFT's rounding
  error (~1e-7 of the frame's norm in every bin) reaches bands 60-80 dB below the tone, where
  log(power + 1e-6) is most sensitive (observed up to 3e-3; see tinykws.features.spectrum);
- after normalisation and input quantization, identical to the Python pipeline on >= 99 % of
  values (a float32 difference can move a value across a rounding boundary).
"""

from __future__ import annotations

import numpy as np
import pytest
from c_support import compile_export, needs_gcc
from conftest import tone_clip

from tinykws.data.audio import to_float32, to_int16
from tinykws.errors import TinyKWSError
from tinykws.export.c import export_c
from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
from tinykws.ir import GraphBuilder, QuantParams
from tinykws.ir.kernels import quantize_f32_s8

FEATURE_TOLERANCE = 1e-3
CLEAN_TONE_TOLERANCE = 5e-3
QUANTIZED_AGREEMENT = 0.99
INPUT_QPARAMS = QuantParams(0.04, -6)


def feature_graph(frontend: FrontEnd):
    """The smallest graph taking the front end's features: QUANTIZE then a global MEAN."""
    frames, bins = frontend.output_shape
    b = GraphBuilder("features")
    x = b.input("features", (1, frames, bins, 1))
    q = b.quantize(x, INPUT_QPARAMS)
    return b.build([b.mean(q, QuantParams(0.05, 0), keep_dims=False)])


def clips_with_noise_floor() -> np.ndarray:
    """Tone words (noise floor 0.003), white noise, silence, a 16-bit chirp at speech level."""
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    signals = [tone_clip(w, w + 1, rng) for w in range(0, 12, 2)]
    chirp = 0.1 * np.sin(2 * np.pi * (100 * t + 3000 * t**2)) + rng.normal(0, 1e-3, 16000)
    signals += [rng.normal(0, 0.2, 16000), np.zeros(16000), to_float32(to_int16(chirp))]
    return np.stack(signals).astype(np.float32)


def clean_tones() -> np.ndarray:
    """A full-scale chirp and a pure tone with no noise, float and 16-bit."""
    t = np.arange(16000) / 16000
    tones = np.stack(
        [0.99 * np.sin(2 * np.pi * (100 * t + 3000 * t**2)), 0.5 * np.sin(2 * np.pi * 1000 * t)]
    ).astype(np.float32)
    return np.concatenate([tones, to_float32(to_int16(tones))])


@needs_gcc
@pytest.mark.parametrize("preset", ["logmel", "mfcc", "bark", "cnn3"])
def test_c_features_match_numpy_reference(tmp_path, preset):
    frontend = FrontEnd(preset)
    signals = np.concatenate([clips_with_noise_floor(), clean_tones()])
    tolerances = [FEATURE_TOLERANCE] * 9 + [CLEAN_TONE_TOLERANCE] * 4
    reference = frontend.numpy(signals)
    norm = Normalization.fit(reference)
    model = compile_export(
        feature_graph(frontend), tmp_path, frontend_config=preset, normalization=norm
    )
    agreement = []
    for samples, expected, tolerance in zip(signals, reference, tolerances):
        features = model.frontend_features(samples)
        assert features.shape == frontend.output_shape
        assert np.abs(features - expected).max() <= tolerance
        python_input = quantize_f32_s8(
            norm.apply_numpy(expected), INPUT_QPARAMS.scale, INPUT_QPARAMS.zero_point
        )
        agreement.append(model.frontend_input(samples) == python_input)
    assert np.mean(agreement) >= QUANTIZED_AGREEMENT


@needs_gcc
def test_front_end_uses_graph_metadata(tmp_path):
    frontend = FrontEnd("mfcc")
    graph = feature_graph(frontend)
    norm = Normalization(mean=tuple(np.linspace(-5, 5, 10)), std=tuple(np.linspace(1, 3, 10)))
    graph.metadata.update(frontend={"preset": "mfcc"}, normalization=norm.to_dict())
    model = compile_export(graph, tmp_path)
    samples = clips_with_noise_floor()[0]
    expected = quantize_f32_s8(norm.apply_numpy(frontend.numpy(samples)), 0.04, -6)
    assert np.mean(model.frontend_input(samples) == expected) >= QUANTIZED_AGREEMENT
    assert "FrontEndConfig(kind='mfcc'" in (tmp_path / "frontend.h").read_text()


def test_unsuitable_front_ends_are_refused(tmp_path):
    frontend = FrontEnd("mfcc")
    graph = feature_graph(frontend)
    odd_fft = frontend_config({"preset": "mfcc", "n_fft": 1000})
    with pytest.raises(TinyKWSError, match="n_fft to be a power of two"):
        export_c(graph, tmp_path / "a", frontend_config=odd_fft)
    with pytest.raises(TinyKWSError, match=r"makes \(98, 40\) features but graph features takes"):
        export_c(graph, tmp_path / "b", frontend_config="logmel")
    wrong = Normalization(mean=(0.0,) * 40, std=(1.0,) * 40)
    with pytest.raises(TinyKWSError, match="40 values per statistic for 10 feature bins"):
        export_c(graph, tmp_path / "c", frontend_config="mfcc", normalization=wrong)
    assert not any((tmp_path / d).exists() for d in "abc")
