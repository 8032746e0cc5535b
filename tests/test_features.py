"""Front ends: numpy reference vs torch path, librosa parity, filterbanks, config errors, caching.

Test signals are synthetic and seeded: a linear sine sweep (the hardest case for float32
arithmetic: most bands sit 60-100 dB below the tone), a steady tone, white noise, digital
silence, near-silence and clipped full-scale noise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinykws.config import to_dict
from tinykws.errors import TinyKWSError
from tinykws.features.batch import batch_features, cached_features, compute_features
from tinykws.features.filterbanks import (
    FilterbankSpec,
    band_edges_hz,
    bark_to_hz,
    bilinear_matrix,
    dct_matrix,
    hz_to_bark,
    triangular_filterbank,
)
from tinykws.features.frontend import (
    FRONTEND_PRESETS,
    FrontEnd,
    FrontEndConfig,
    Normalization,
    frontend_config,
)

RATE_HZ = 16000


def make_signals(n: int = RATE_HZ) -> np.ndarray:
    """float32 (6, n): sweep 50 Hz-7.9 kHz, 440 Hz tone, noise, silence, -80 dB noise, clipped."""
    rng = np.random.default_rng(0)
    t = np.arange(n) / RATE_HZ
    sweep = 0.5 * np.sin(2 * np.pi * (50 * t + 0.5 * (7900 - 50) * t**2))
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    noise = rng.normal(0, 0.1, n)
    quiet = rng.normal(0, 1e-4, n)
    loud = np.clip(rng.normal(0, 1, n), -1, 1)
    return np.stack([sweep, tone, noise, np.zeros(n), quiet, loud]).astype(np.float32)


SIGNALS = make_signals()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("logmel", (98, 40)),
        ("mfcc", (49, 10)),
        ("bark", (98, 50)),
        ("micro", (49, 40)),
        ("cnn3", (128, 64)),
        ("gostop", (31, 13)),
    ],
)
def test_presets_give_their_documented_shapes(name, shape):
    frontend = FrontEnd(name)
    assert frontend.output_shape == shape
    assert frontend.numpy(SIGNALS).shape == (len(SIGNALS), *shape)
    assert frontend.numpy(SIGNALS[0]).shape == shape


@pytest.mark.parametrize("name", sorted(FRONTEND_PRESETS))
@pytest.mark.parametrize("fft_backend", ["auto", "torch"])
def test_torch_path_matches_numpy_reference(name, fft_backend):
    # The requirement is 1e-4 on log features. After the float64 FFT the torch path is float32,
    # so what remains is float32 rounding of values up to ~14 (log) or ~100 (MFCC c0): ~1e-5.
    frontend = FrontEnd(name)
    reference = frontend.numpy(SIGNALS)
    batched = batch_features(frontend, torch.from_numpy(SIGNALS), fft_backend=fft_backend)
    assert batched.dtype == torch.float32
    np.testing.assert_allclose(batched.numpy(), reference, rtol=0, atol=1e-4)


def test_torch_path_keeps_a_single_clip_unbatched():
    frontend = FrontEnd("logmel")
    one = batch_features(frontend, torch.from_numpy(SIGNALS[0]))
    assert one.shape == (98, 40)
    np.testing.assert_allclose(one.numpy(), frontend.numpy(SIGNALS[0]), rtol=0, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_path_runs_on_cuda():
    frontend = FrontEnd("cnn3")
    out = batch_features(frontend, torch.from_numpy(SIGNALS).cuda())
    assert out.device.type == "cuda"
    np.testing.assert_allclose(out.cpu().numpy(), frontend.numpy(SIGNALS), rtol=0, atol=1e-4)


def librosa_log_mel(signal: np.ndarray, config: FrontEndConfig) -> np.ndarray:
    """librosa's log-mel for `config`, (frames, bands).

    librosa centres a short window inside n_fft, reading (n_fft - window) / 2 samples before
    each of our frames; padding the signal by that much on both sides lines the frames up.
    """
    import librosa

    pad = (config.n_fft - config.window_samples) // 2
    mel = librosa.feature.melspectrogram(
        y=np.pad(signal.astype(np.float64), pad),
        sr=config.sample_rate_hz,
        n_fft=config.n_fft,
        hop_length=config.hop_samples,
        win_length=config.window_samples,
        window=config.window,
        center=False,
        power=2.0,
        n_mels=config.n_bands,
        fmin=config.fmin_hz,
        fmax=config.fmax_hz,
        htk=config.mel_scale == "htk",
        norm="slaney" if config.band_norm == "area" else None,
    )
    return np.log(mel + config.log_offset).T


LIBROSA_CASES = {
    "logmel preset (window < n_fft)": {"preset": "logmel"},
    "window == n_fft, hamming": {"window_ms": 32.0, "window": "hamming", "n_bands": 64},
    "slaney scale, area norm": {"mel_scale": "slaney", "band_norm": "area", "fmax_hz": 7000.0},
}


@pytest.mark.parametrize("overrides", LIBROSA_CASES.values(), ids=LIBROSA_CASES.keys())
def test_log_mel_matches_librosa(overrides):
    # librosa keeps its mel filters in float32 (relative error 6e-8, i.e. 6e-8 in the log) and
    # we round the log to float32 (|x| <= 14, half an ulp <= 1e-6): 1e-5 has a 10x margin.
    config = frontend_config(overrides)
    ours = FrontEnd(config).numpy(SIGNALS)
    for signal, features in zip(SIGNALS, ours):
        np.testing.assert_allclose(features, librosa_log_mel(signal, config), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["mfcc", "gostop"])
def test_mfcc_matches_librosa(name):
    # MFCC = DCT-II (ortho) of the log-mel; c0 reaches ~100 whose float32 half-ulp is 4e-6, and
    # the log-mel errors above add up over <= 40 bands with weights <= 0.23: 3e-5 is ample.
    import librosa

    config = FRONTEND_PRESETS[name]
    ours = FrontEnd(config).numpy(SIGNALS)
    for signal, features in zip(SIGNALS, ours):
        log_mel = librosa_log_mel(signal, config).T
        theirs = librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho")
        np.testing.assert_allclose(features, theirs.T, rtol=0, atol=3e-5)


def test_dct_matrix_is_scipys_orthonormal_dct_ii():
    from scipy.fft import dct

    x = np.random.default_rng(1).normal(size=(5, 40))
    np.testing.assert_allclose(x @ dct_matrix(13, 40).T, dct(x, norm="ortho")[:, :13], atol=1e-12)


def test_bark_scale_is_traunmuller_and_inverts():
    # Traunmüller (1990): 26.81 f / (1960 + f) - 0.53, corrected below 2 and above 20.1 Bark.
    assert float(hz_to_bark(1000.0)) == pytest.approx(26.81 * 1000 / 2960 - 0.53, abs=1e-12)
    low = 26.81 * 100 / 2060 - 0.53
    assert float(hz_to_bark(100.0)) == pytest.approx(low + 0.15 * (2 - low), abs=1e-12)
    high = 26.81 * 7000 / 8960 - 0.53
    assert float(hz_to_bark(7000.0)) == pytest.approx(high + 0.22 * (high - 20.1), abs=1e-12)
    hz = np.linspace(0, 8000, 1001)
    np.testing.assert_allclose(bark_to_hz(hz_to_bark(hz)), hz, atol=1e-9)


def test_bark_filterbank_is_50_triangles_uniform_in_bark():
    spec = FilterbankSpec("bark", 50, 512, RATE_HZ, 0.0, 8000.0)
    bank = triangular_filterbank(spec)
    assert bank.shape == (50, 257)
    steps = np.diff(hz_to_bark(band_edges_hz(spec)))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
    assert bank.min() >= 0 and bank.max() <= 1
    peaks_hz = np.argmax(bank, axis=1) * RATE_HZ / 512
    assert np.all(np.diff(peaks_hz) >= 0)  # centres rise with the band index
    silent = FrontEnd("bark").numpy(np.zeros(RATE_HZ, np.float32))
    np.testing.assert_allclose(silent, np.log10(1e-6), atol=1e-6)


@pytest.mark.parametrize(("source", "target"), [((124, 64), (128, 64)), ((98, 40), (50, 17))])
def test_resize_is_torch_bilinear_without_corner_alignment(source, target):
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(3, *source)))
    expected = torch.nn.functional.interpolate(
        x[:, None], size=target, mode="bilinear", align_corners=False
    )[:, 0]
    ours = (
        bilinear_matrix(target[0], source[0]) @ x.numpy() @ bilinear_matrix(target[1], source[1]).T
    )
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-12)


def test_resize_preset_matches_unresized_features_interpolated():
    resized = FrontEnd("cnn3").numpy(SIGNALS)
    plain = FrontEnd({"preset": "cnn3", "resize": None}).numpy(SIGNALS)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(plain)[:, None], size=(128, 64), mode="bilinear", align_corners=False
    )[:, 0]
    np.testing.assert_allclose(resized, expected.numpy(), atol=1e-5)


def test_frontend_config_takes_presets_and_overrides():
    config = frontend_config({"preset": "bark", "n_bands": 32, "resize": [64, 32]})
    assert (config.kind, config.n_bands, config.window_ms) == ("bark", 32, 25.0)
    assert config.resize == (64, 32)
    assert frontend_config(json.loads(json.dumps(to_dict(config)))) == config
    assert frontend_config({}) == FRONTEND_PRESETS["logmel"]
    assert frontend_config("micro") is FRONTEND_PRESETS["micro"]


BAD_CONFIGS = {
    "n_bands": ({"n_bands": 0}, "n_bands"),
    "hop > window": ({"hop_ms": 40.0}, "hop_ms"),
    "fmax > nyquist": ({"fmax_hz": 9000.0}, "fmax_hz"),
    "fmin >= fmax": ({"fmin_hz": 8000.0}, "fmin_hz"),
    "kind": ({"kind": "cqt"}, "frontend.kind"),
    "window": ({"window": "blackman"}, "frontend.window"),
    "n_fft": ({"n_fft": 256}, "n_fft"),
    "log": ({"log": "log2"}, "frontend.log"),
    "log_offset": ({"log_offset": 0.0}, "log_offset"),
    "n_mfcc": ({"preset": "mfcc", "n_mfcc": 41}, "n_mfcc"),
    "resize": ({"resize": [0, 4]}, "resize"),
    "unknown key": ({"nbands": 40}, "did you mean 'n_bands'"),
    "unknown preset": ({"preset": "wav2vec"}, "unknown preset"),
    "wrong type": ({"n_bands": "forty"}, "n_bands must be int"),
}


@pytest.mark.parametrize(("overrides", "needle"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_a_one_line_error(overrides, needle):
    with pytest.raises(TinyKWSError) as info:
        frontend_config(overrides)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_samples_are_one_line_errors():
    frontend = FrontEnd("logmel")
    with pytest.raises(TinyKWSError, match="shorter than one 30.0 ms window"):
        frontend.numpy(np.zeros(100, np.float32))
    with pytest.raises(TinyKWSError, match="must be float"):
        frontend.numpy(np.zeros(16000, np.int16))
    with pytest.raises(TinyKWSError, match="floating-point torch tensor"):
        batch_features(frontend, np.zeros((1, 16000), np.float32))


def test_normalization_fit_matches_numpy_statistics():
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(10, 7, 4)) * [1, 2, 3, 4] + [0, -5, 5, 10]).astype(np.float32)
    norm = Normalization.fit(features, chunk=3)  # chunks of 3 clips exercise the merge
    np.testing.assert_allclose(norm.mean, features.mean(axis=(0, 1), dtype=np.float64), atol=1e-9)
    np.testing.assert_allclose(norm.std, features.std(axis=(0, 1), dtype=np.float64), atol=1e-9)
    scaled = norm.apply_numpy(features)
    np.testing.assert_allclose(scaled.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=(0, 1)), 1, atol=1e-5)
    as_torch = norm.apply_torch(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(as_torch, scaled, rtol=0, atol=1e-6)


def test_normalization_travels_as_json_and_guards_constant_bins():
    norm = Normalization.fit(np.ones((2, 3, 2), np.float32))
    assert norm.std == (Normalization.MIN_STD, Normalization.MIN_STD)
    assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    with pytest.raises(TinyKWSError, match="same, non-zero length"):
        Normalization(mean=(0.0,), std=(1.0, 1.0))
    with pytest.raises(TinyKWSError, match="std must be > 0"):
        Normalization(mean=(0.0,), std=(0.0,))


def test_compute_features_uses_torch_path_on_int16_batches():
    waveforms = np.round(SIGNALS * 32000).astype(np.int16)
    frontend = FrontEnd("mfcc")
    features = compute_features(waveforms, frontend, batch_size=4)  # 6 clips: a partial batch
    reference = frontend.numpy(waveforms.astype(np.float32) / 32768)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, reference, rtol=0, atol=1e-4)
    with pytest.raises(TinyKWSError, match="waveforms must be"):
        compute_features(waveforms[0], frontend)


def test_cached_features_reuse_same_key_and_rebuild_on_change(tmp_path, monkeypatch):
    import tinykws.features.batch as features_module

    waveforms = np.round(SIGNALS[:3] * 32000).astype(np.int16)
    first = cached_features(tmp_path, "logmel", waveforms, "clips-a")
    assert isinstance(first, np.memmap)
    np.testing.assert_array_equal(first, compute_features(waveforms, "logmel"))
    files = sorted(tmp_path.glob("*.npy"))
    assert len(files) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("features recomputed although the cache is valid")

    monkeypatch.setattr(features_module, "compute_features", refuse)
    again = cached_features(tmp_path, FrontEnd("logmel"), waveforms, "clips-a")
    np.testing.assert_array_equal(again, first)
    assert sorted(tmp_path.glob("*.npy")) == files
    monkeypatch.undo()

    cached_features(tmp_path, {"preset": "logmel", "n_bands": 32}, waveforms, "clips-a")
    cached_features(tmp_path, "logmel", waveforms, "clips-b")
    assert len(list(tmp_path.glob("*.npy"))) == 3
