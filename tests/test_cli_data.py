"""`tinykws data synth|download|stats|show` through tinykws.cli.main: output, exit codes, and
one-line errors."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

# tests/ is on sys.path under pytest; `server` is a fixture used by name below.
from test_download import PAYLOAD, make_tar, server  # noqa: F401

from tinykws.cli import main
from tinykws.data import download as download_module
from tinykws.data.audio import write_wav
from tinykws.data.download import URL_ENV, Archive


def table_rows(text: str) -> dict[str, list[str]]:
    """label -> cells of a rich table printed to text."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃").split("│")]
        if len(cells) > 2:
            rows[cells[0]] = cells[1:]
    return rows


def test_stats_prints_counts_per_split_and_class(tmp_path, capsys):
    for n in range(5):
        write_wav(tmp_path / "sc" / "yes" / f"{n:08x}_nohash_0.wav", np.zeros(160, np.float32))
    for n in range(10):
        write_wav(tmp_path / "sc" / "bed" / f"{n:08x}_nohash_0.wav", np.zeros(160, np.float32))
    (tmp_path / "sc" / "validation_list.txt").write_text("yes/00000000_nohash_0.wav\n")
    (tmp_path / "sc" / "testing_list.txt").write_text("")
    code = main(["data", "stats", str(tmp_path / "sc"), "--preset", "yesno4"])
    rows = table_rows(capsys.readouterr().out)
    assert code == 0
    # label: train, validation, test, total, weight (train has yes 4 and unknown 0.2 * 10 = 2)
    assert rows["yes"][:4] == ["4", "1", "0", "5"]
    assert rows["_unknown_"][:4] == ["2", "0", "0", "2"]
    assert rows["no"][:4] == ["0", "0", "0", "0"]
    # inverse frequency over the present classes (unknown 2, yes 4) scaled to mean 1; absent 1
    assert [rows[k][4] for k in ("_unknown_", "yes", "no")] == ["1.333", "0.667", "1.000"]
    assert rows["total"][:4] == ["6", "1", "0", "7"]


@pytest.mark.devdata
def test_stats_on_the_dev_data_is_fast_and_correct(dev_data, capsys):
    start = time.perf_counter()
    code = main(["data", "stats", str(dev_data), "--preset", "real10"])
    elapsed_s = time.perf_counter() - start
    rows = table_rows(capsys.readouterr().out)
    assert code == 0
    assert elapsed_s < 5.0  # nothing is decoded: listing 5,266 files takes well under a second
    validation = (dev_data / "validation_list.txt").read_text().split()
    testing = (dev_data / "testing_list.txt").read_text().split()
    for word in ("yes", "no", "up", "down", "left", "right", "stop", "go"):
        n_val = sum(p.startswith(f"{word}/") for p in validation)
        n_test = sum(p.startswith(f"{word}/") for p in testing)
        n_all = len(list((dev_data / word).iterdir()))
        assert rows[word][:4] == [str(n_all - n_val - n_test), str(n_val), str(n_test), str(n_all)]


def test_stats_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args in (
        ["data", "stats", str(tmp_path / "none")],
        ["data", "stats", str(tmp_path / "empty")],
    ):
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: ")


def test_data_without_a_subverb_prints_help(capsys):
    assert main(["data"]) == 2
    assert "stats" in capsys.readouterr().out


def test_download_verb_success_and_checksum_error(server, tmp_path, capsys, monkeypatch):  # noqa: F811
    name = download_module.ARCHIVES["test-v0.02"].filename
    data = make_tar(PAYLOAD)
    server.files[name] = data
    monkeypatch.setenv(URL_ENV, server.url)
    # The pinned checksum does not match this small archive: one-line error, exit 2.
    code = main(["data", "download", str(tmp_path / "a"), "--version", "test-v0.02"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checksum mismatch" in err[0]
    assert not (tmp_path / "a" / "yes").exists()
    pinned = Archive(name, hashlib.sha256(data).hexdigest(), "sha256", len(data))
    monkeypatch.setitem(download_module.ARCHIVES, "test-v0.02", pinned)
    code = main(["data", "download", str(tmp_path / "b"), "--version", "test-v0.02"])
    assert code == 0 and (tmp_path / "b" / "validation_list.txt").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "b")


def test_show_writes_a_png_and_rejects_a_bad_clip(tmp_path, capsys):
    write_wav(tmp_path / "a.wav", np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3)
    assert main(["data", "show", str(tmp_path / "a.wav"), "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.wav").write_text("not audio")
    code = main(["data", "show", str(tmp_path / "bad.wav"), "--out", str(tmp_path / "b.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "bad.wav" in err[0]


@pytest.mark.slow
@pytest.mark.tts
def test_synth_then_stats(tmp_path, capsys):
    out = tmp_path / "synth"
    code = main(["data", "synth", str(out), "--per-word", "1", "--jobs", "2", "--words", "finesse"])
    assert code == 0, capsys.readouterr().err
    assert (out / "finesse").is_dir() and (out / "_background_noise_").is_dir()
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--preset", "12"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["yes"][3] == "1"
