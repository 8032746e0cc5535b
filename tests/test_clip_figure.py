"""The one-clip figure: five panels drawn from the chosen front end, saved as a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from tinykws.data.audio import write_wav
from tinykws.errors import TinyKWSError
from tinykws.features.frontend import FRONTEND_PRESETS, FrontEnd
from tinykws.report.clip import clip_figure, plot_clip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_wav(tmp_path_factory):
    """A 0.8 s sine sweep 100 Hz -> 6 kHz (shorter than a clip, so it gets centred)."""
    t = np.arange(12800) / 16000
    sweep = 0.5 * np.sin(2 * np.pi * (100 * t + 0.5 * (6000 - 100) / 0.8 * t**2))
    path = tmp_path_factory.mktemp("clip") / "sweep.wav"
    write_wav(path, sweep.astype(np.float32))
    return path


@pytest.mark.parametrize("name", ["logmel", "bark"])
def test_plot_clip_writes_a_png(sweep_wav, tmp_path, name):
    out = tmp_path / "figures" / f"{name}.png"  # the folder does not exist yet
    plot_clip(sweep_wav, out, name)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    height, width = matplotlib.image.imread(out).shape[:2]
    assert height > width > 500  # five stacked panels


PANEL_TITLES = {
    "logmel": ("mel spectrogram (40 bands, ln(x + 1e-06))", "MFCC (13 coefficients)"),
    "mfcc": ("mel spectrogram (40 bands, ln(x + 1e-06))", "MFCC (10 coefficients)"),
    "bark": ("bark spectrogram (50 bands, log10(x + 1e-06))", "MFCC (13 coefficients)"),
    "micro": ("mel spectrogram (40 bands, ln(x + 1e-06))", "MFCC (13 coefficients)"),
}


@pytest.mark.parametrize("name", PANEL_TITLES)
def test_clip_figure_panels_show_the_front_end(name):
    samples = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    config = FRONTEND_PRESETS[name]
    panels = clip_figure(samples, config, "noise").axes[:5]  # the rest are colour bars
    titles = tuple(ax.get_title() for ax in panels)
    assert titles == ("waveform", "magnitude spectrum", "spectrogram", *PANEL_TITLES[name])
    if config.kind != "mfcc":  # the band panel is exactly the front end's output
        band_image = panels[3].get_images()[0].get_array()
        np.testing.assert_allclose(band_image.T, FrontEnd(config).numpy(samples), atol=1e-6)
    spectrogram = panels[2].get_images()[0].get_array()
    assert spectrogram.shape == (config.n_fft // 2 + 1, FrontEnd(config).n_frames(16000))


def test_plot_clip_reports_bad_input(tmp_path):
    with pytest.raises(TinyKWSError, match="no such audio file"):
        plot_clip(tmp_path / "missing.wav", tmp_path / "x.png")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(TinyKWSError, match="not a readable WAV/FLAC"):
        plot_clip(tmp_path / "junk.wav", tmp_path / "x.png")
    with pytest.raises(TinyKWSError, match="unknown preset"):
        plot_clip(tmp_path / "junk.wav", tmp_path / "x.png", "spectral")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name", sorted(FRONTEND_PRESETS))
def test_data_show_draws_what_every_front_end_computes(sweep_wav, tmp_path, capsys, name):
    """`tinykws data show` writes the PNG for every preset, and the panel of what the front end
    computes (bands, or MFCC for an MFCC front end; resized as the front end resizes) holds
    `compute_features` of the clip. The figure uses the numpy reference, `compute_features`
    the torch path: the two agree within 1e-4 (tests/test_features.py)."""
    from tinykws.cli import main
    from tinykws.data.audio import pad_or_trim, read_audio
    from tinykws.features.batch import compute_features

    out = tmp_path / f"{name}.png"
    assert main(["data", "show", str(sweep_wav), "--out", str(out), "--frontend", name]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    config = FRONTEND_PRESETS[name]
    samples = pad_or_trim(read_audio(sweep_wav, config.sample_rate_hz), config.clip_samples)
    panels = clip_figure(samples, config).axes[:5]
    computed = panels[4 if config.kind == "mfcc" else 3].get_images()[0].get_array().T
    expected = compute_features(samples[None], config)[0]
    assert computed.shape == expected.shape == FrontEnd(config).output_shape
    np.testing.assert_allclose(computed, expected, rtol=0, atol=1e-4)
    spectrogram = panels[2].get_images()[0].get_array()
    assert spectrogram.shape == (config.n_fft // 2 + 1, FrontEnd(config).n_frames(len(samples)))
    assert np.isfinite(np.asarray(spectrogram)).all()
