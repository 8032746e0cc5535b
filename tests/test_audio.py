"""tinykws.data.audio: every supported file format reads back the samples written, resampling keeps
length and pitch, clips are centred, and each kind of bad file is one line naming it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from tinykws import TinyKWSError
from tinykws.cli import main
from tinykws.data.audio import (
    check_wav_length,
    load_clip,
    pad_or_trim,
    read_audio,
    to_float32,
    to_int16,
    write_wav,
)
from tinykws.log import logger

RATE_HZ = 16000


def sine(freq_hz: float, rate_hz: int, seconds: float = 1.0, amplitude: float = 0.5):
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_frequency_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate_hz / samples.size)


@pytest.fixture
def warnings_seen(caplog):
    """Capture tinykws warnings even after the CLI has set the logger not to propagate."""
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="tinykws")
    yield caplog
    logger.removeHandler(caplog.handler)


# (container, subtype, bits kept): integer formats are written from integer samples whose low
# bits are zero, so the file holds them exactly and reading must give sample / 2^31 exactly.
FORMATS = [
    ("WAV", "PCM_U8", 8),
    ("WAV", "PCM_16", 16),
    ("WAV", "PCM_24", 24),
    ("WAV", "PCM_32", 32),
    ("WAV", "FLOAT", None),
    ("WAV", "DOUBLE", None),
    ("FLAC", "PCM_16", 16),
    ("FLAC", "PCM_24", 24),
]


@pytest.mark.parametrize("container,subtype,bits", FORMATS)
def test_formats_read_back_exactly(tmp_path, container, subtype, bits):
    x = sine(440, RATE_HZ)
    path = tmp_path / f"clip.{container.lower()}"
    if bits is None:
        expected = x
        sf.write(path, x, RATE_HZ, subtype=subtype, format=container)
    else:
        step = 2 ** (32 - bits)
        pcm = (np.round(x.astype(np.float64) * 2**31 / step) * step).astype(np.int32)
        expected = (pcm / 2**31).astype(np.float32)
        sf.write(path, pcm, RATE_HZ, subtype=subtype, format=container)
    y = read_audio(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, expected)


def test_int16_round_trip_is_exact(tmp_path):
    pcm = np.array([-32768, -12345, -1, 0, 1, 12345, 32767], dtype=np.int16)
    assert to_int16(to_float32(pcm)).tolist() == pcm.tolist()
    assert to_int16(np.array([1.0, -1.0, 2.0], np.float32)).tolist() == [32767, -32768, 32767]
    write_wav(tmp_path / "a.wav", to_float32(pcm))
    assert sf.read(tmp_path / "a.wav", dtype="int16")[0].tolist() == pcm.tolist()


def test_stereo_is_mixed_down_with_a_warning(tmp_path, warnings_seen):
    left, right = sine(440, RATE_HZ), sine(1000, RATE_HZ, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), RATE_HZ, subtype="FLOAT")
    y = read_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)
    messages = [r.getMessage() for r in warnings_seen.records]
    assert any("stereo.wav" in m and "2 channels mixed down" in m for m in messages)


@pytest.mark.parametrize("rate_hz", [8000, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate_hz):
    path = tmp_path / f"tone_{rate_hz}.wav"
    sf.write(path, sine(1000, rate_hz), rate_hz, subtype="FLOAT")
    y = read_audio(path)
    assert y.shape == (RATE_HZ,)  # 1 s in, 1 s out
    # 16000-point FFT at 16 kHz: 1 Hz bins; the tone must land in its bin.
    assert abs(peak_frequency_hz(y, RATE_HZ) - 1000.0) <= 1.0
    # The polyphase filter passes 1 kHz at unit gain (away from the edges, which it tapers).
    middle = y[2000:-2000]
    np.testing.assert_allclose(np.abs(middle).max(), 0.5, rtol=0.01)


def test_pad_or_trim_centres():
    np.testing.assert_array_equal(pad_or_trim(np.ones(2, np.float32), 5), [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pad_or_trim(np.arange(7.0), 4), [1, 2, 3, 4])
    x = np.arange(4.0)
    assert pad_or_trim(x, 4) is x


def test_load_clip_centres_short_and_long_files(tmp_path):
    short = np.full(8000, 0.25, np.float32)
    write_wav(tmp_path / "short.wav", short)
    clip = load_clip(tmp_path / "short.wav")
    assert clip.shape == (16000,)
    assert np.all(clip[:4000] == 0) and np.all(clip[12000:] == 0)
    np.testing.assert_allclose(clip[4000:12000], 0.25, atol=1 / 32768)
    long = np.arange(24000) % 100 / 1000
    write_wav(tmp_path / "long.wav", long.astype(np.float32))
    np.testing.assert_allclose(load_clip(tmp_path / "long.wav"), long[4000:20000], atol=1 / 32768)


def write_bad_files(folder):
    """name -> (file, expected fragment of the message)."""
    folder.mkdir(exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio, just text\n" * 20)
    sf.write(folder / "good.wav", sine(440, RATE_HZ), RATE_HZ, subtype="PCM_16")
    data = (folder / "good.wav").read_bytes()
    (folder / "cut_data.wav").write_bytes(data[: len(data) // 2])
    (folder / "cut_header.wav").write_bytes(data[:30])
    sf.write(folder / "good.flac", sine(440, RATE_HZ), RATE_HZ)
    flac = (folder / "good.flac").read_bytes()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])
    nan = np.full(1600, np.nan, np.float32)
    sf.write(folder / "nan.wav", nan, RATE_HZ, subtype="FLOAT")
    return {
        "empty.wav": "empty file",
        "text.wav": "not a readable WAV/FLAC file",
        "cut_data.wav": "truncated WAV file",
        "cut_header.wav": "not a readable WAV/FLAC file",
        "cut.flac": "not a readable WAV/FLAC file",
        "nan.wav": "NaN",
        "missing.wav": "no such audio file",
    }


@pytest.mark.parametrize(
    "name", ["empty.wav", "text.wav", "cut_data.wav", "cut_header.wav", "cut.flac", "nan.wav",
             "missing.wav"]
)  # fmt: skip
def test_bad_files_give_one_line_naming_the_file(tmp_path, name):
    expected = write_bad_files(tmp_path / "bad")[name]
    path = tmp_path / "bad" / name
    with pytest.raises(TinyKWSError) as info:
        read_audio(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert message.count(name) == 1  # the name once, not repeated by libsndfile's text


def test_streamed_wav_with_unknown_length_is_accepted(tmp_path):
    sf.write(tmp_path / "a.wav", sine(440, RATE_HZ), RATE_HZ, subtype="PCM_16")
    data = bytearray((tmp_path / "a.wav").read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")  # "length unknown" streams
    (tmp_path / "b.wav").write_bytes(bytes(data))
    check_wav_length(tmp_path / "b.wav")  # no error


def test_cli_bad_clip_exits_2_with_one_error_line(tmp_path, capsys):
    write_bad_files(tmp_path / "bad")
    for name in ("empty.wav", "nan.wav", "cut_data.wav"):
        code = main(
            ["data", "show", str(tmp_path / "bad" / name), "--out", str(tmp_path / "x.png")]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]
        assert not (tmp_path / "x.png").exists()


def test_cli_missing_folder_exits_2_with_one_error_line(tmp_path, capsys):
    code = main(["data", "stats", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: {tmp_path / 'nowhere'}: no such folder; give a Speech Commands "
                   "folder, or make one with `tinykws data synth OUT` or `tinykws data download "
                   "OUT`"]  # fmt: skip
