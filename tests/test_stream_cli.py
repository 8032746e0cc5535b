"""`tinykws stream`, `tinykws data stream-test`, `tinykws predict` on long audio, the backends
and the `[stream]` recipe stage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from tinykws.cli import main
from tinykws.data.audio import read_audio, write_wav
from tinykws.measure.predictors import load_predictor
from tinykws.stream.detector import detect
from tinykws.stream.score import read_truth
from tinykws.stream.testing import tiny_graph, tone_stream
from tinykws.stream_config import StreamConfig


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """The tiny spotter as a graph file, a 30 s tone stream and its truth CSV."""
    from tinykws.data.stream_test import write_truth

    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_graph().save(folder / "tiny.json")
    samples, truth = tone_stream(seconds=30.0, seed=7)
    write_wav(folder / "tones.wav", samples)
    write_truth(folder / "tones.csv", truth)
    return model, folder / "tones.wav", folder / "tones.csv"


def test_stream_prints_events_and_scores_them(tiny_files, tmp_path, capsys):
    model, wav, csv = tiny_files
    out, curve = tmp_path / "out.json", tmp_path / "curve.png"
    args = ["stream", str(model), str(wav), "--truth", str(csv), "--json", str(out)]
    assert main([*args, "--curve", str(curve), "--threshold", "0.6"]) == 0
    printed = capsys.readouterr().out.splitlines()
    events, _ = detect(load_predictor(model), read_audio(wav), StreamConfig(threshold=0.6))
    expected = [f"{wav}\t{e.time_s:.2f}\t{e.label}\t{e.score:.3f}" for e in events]
    assert printed[: len(events)] == expected
    result = json.loads(out.read_text())
    truth = read_truth(csv)
    assert (result["hits"], result["misses"], result["false_accepts"]) == (len(truth), 0, 0)
    assert result["false_accepts_per_hour"] == 0.0 and result["false_reject_rate"] == 0.0
    assert result["at_target"]["false_accepts_per_hour"] <= 1.0
    assert curve.read_bytes()[:4] == b"\x89PNG"


def test_stream_resamples_other_rates(tiny_files, tmp_path, capsys):
    from tinykws.data.audio import resample

    model, wav, _ = tiny_files
    path = tmp_path / "8k.wav"
    sf.write(path, read_audio(wav)[::2], 8000, subtype="PCM_16")
    assert main(["stream", str(model), str(path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    samples, _ = sf.read(path, dtype="float32")
    events, _ = detect(load_predictor(model), resample(samples, 8000, 16000))
    assert printed == [f"{path}\t{e.time_s:.2f}\t{e.label}\t{e.score:.3f}" for e in events]
    assert any(e.label == "low" for e in events)


def test_stream_bad_inputs_are_one_line_errors(tiny_files, tmp_path, capsys):
    model, wav, csv = tiny_files
    write_wav(tmp_path / "short.wav", np.zeros(4000, np.float32))
    sf.write(tmp_path / "stereo.wav", np.zeros((16000, 2), np.float32), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    (tmp_path / "bad.csv").write_text("onset_s,offset_s,label\n1.0,oops,high\n")
    (tmp_path / "late.csv").write_text("onset_s,offset_s,label\n1.0,99.0,high\n")
    cases = [
        (["stream", str(model), str(tmp_path / "short.wav")], "shorter than the model"),
        (["stream", str(model), str(tmp_path / "stereo.wav")], "2 channels"),
        (["stream", str(model), str(tmp_path / "corrupt.wav")], "corrupt.wav"),
        (["stream", str(model), str(wav), "--truth", str(tmp_path / "bad.csv")], "line 2"),
        (["stream", str(model), str(wav), "--truth", str(tmp_path / "late.csv")], "past the end"),
        (["stream", str(model), str(wav), "--threshold", "2"], "threshold"),
        (["stream", str(model), str(wav), "--hop-ms", "30"], "multiple of the front end"),
        (["stream", str(model), "--live"], "--live"),
        (["stream", str(model)], "give audio files or --live"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in one_error_line(capsys)


def test_predict_scores_the_best_window_of_long_audio(tiny_files, capsys):
    model, wav, _ = tiny_files
    assert main(["predict", str(model), str(wav), "--json"]) in (0, None)
    err = capsys.readouterr().err
    assert "warning: " in err and "tinykws stream" in err and "longer than the model's" in err


def test_stream_test_files_are_reproducible(tone_corpus, tmp_path, capsys):
    argv = ["data", "stream-test", "", "--data", str(tone_corpus), "--split", "train"]
    argv += ["--minutes", "0.5", "--keywords", "4", "--preset", "12", "--seed", "3"]
    for name in ("a", "b"):
        argv[2] = str(tmp_path / name)
        assert main(argv) == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    truth = read_truth(tmp_path / "a.csv", 30.0)
    assert sum(not label.startswith("_") for _, _, label in truth) == 4 and len(truth) == 8
    assert sf.info(str(tmp_path / "a.wav")).duration == 30.0
    argv[-1] = "4"
    argv[2] = str(tmp_path / "c")
    assert main(argv) == 0
    assert (tmp_path / "c.wav").read_bytes() != (tmp_path / "a.wav").read_bytes()


def test_stream_test_reads_the_test_set_layout(tone_corpus, tmp_path, capsys):
    root = tmp_path / "test_set"
    for word in ("yes", "no", "up"):
        shutil.copytree(tone_corpus / word, root / word)
    shutil.copytree(tone_corpus / "bed", root / "_unknown_")
    argv = ["data", "stream-test", str(tmp_path / "t"), "--data", str(root), "--split", "test"]
    assert main([*argv, "--minutes", "0.5", "--keywords", "5", "--preset", "12"]) == 0
    labels = [label for _, _, label in read_truth(tmp_path / "t.csv")]
    assert sorted(set(labels)) == ["_unknown_", *sorted({x for x in labels if x[0] != "_"})]
    capsys.readouterr()
    assert main([*argv[:-2], "--split", "validation", "--minutes", "0.5", "--keywords", "5"]) == 2
    assert "validation split has 0 keyword clips" in one_error_line(capsys)


@pytest.fixture(scope="module")
def exported(tone_corpus, tmp_path_factory):
    """A quantized TinyConv and its .tflite / .onnx exports."""
    from export_helpers import checkpoint_meta, quantized_model, tone_data, trained_model

    from tinykws.config import to_dict
    from tinykws.features.frontend import frontend_config
    from tinykws.quant.files import save_quantized
    from tinykws.quant.scoring import lower_if_possible

    folder = tmp_path_factory.mktemp("exported")
    meta = checkpoint_meta(trained_model(tone_corpus, "tinyconv"), tone_data(tone_corpus))
    meta["frontend"] = to_dict(frontend_config(meta["frontend"]))  # the full config, as saved
    model = quantized_model(tone_corpus, "tinyconv")
    quantized = save_quantized(folder / "q.safetensors", model, meta, lower_if_possible(model))
    for suffix in ("tflite", "onnx"):
        argv = ["export", str(quantized), "--format", suffix, "--out", str(folder / f"m.{suffix}")]
        assert main(argv) == 0
    return quantized, folder


def test_every_backend_streams(exported, tone_corpus, tmp_path):
    """The integer graph, LiteRT's reference kernels and ONNX Runtime give the same events and
    (nearly) the same scores at every hop; float PyTorch gives scores close to them."""
    from tinykws.data.stream_test import StreamTestConfig, make_stream_test

    quantized, folder = exported
    config = StreamTestConfig(
        split="train", minutes=0.5, keywords=5, preset="12", seed=1, snr_db=(30.0, 40.0)
    )
    samples, _ = make_stream_test(tone_corpus, config)
    stream_config = StreamConfig(threshold=0.5)
    runs = {
        name: detect(load_predictor(path, backend), samples, stream_config)
        for name, path, backend in [
            ("int", quantized, "int"),
            ("reference", folder / "m.tflite", "reference"),
            ("onnx", folder / "m.onnx", "onnxruntime"),
            ("torch", quantized, "torch"),
        ]
    }
    events, detector = runs["int"]
    for name in ("reference", "onnx"):
        got = runs[name][0]
        assert [(e.time_s, e.label) for e in got] == [(e.time_s, e.label) for e in events], name
        assert np.allclose([e.score for e in got], [e.score for e in events], atol=1e-6), name
        differ = np.abs(runs[name][1].scores.probs - detector.scores.probs)
        # Exact but for a rare input value that the float -> int8 boundary of the file rounds
        # the other way (one output step at a few hops).
        assert (differ > 0).mean() < 0.01 and differ.max() < 0.05, name
    assert np.abs(runs["torch"][1].scores.probs - detector.scores.probs).mean() < 0.05


def test_stream_stage_in_a_recipe(tone_corpus, tmp_path):
    from support import tone_run

    from tinykws.report.html import report_run
    from tinykws.run.pipeline import run_recipe
    from tinykws.run.recipe import parse

    model = {"family": "tinyconv", "filters": 6}
    recipe, run_dir = tone_run(tone_corpus, tmp_path, "micro", model, {"epochs": 2})
    raw = recipe.to_dict() | {"stages": ["data", "train", "stream", "report"]}
    raw["stream"] = {"minutes": 0.5, "keywords": 4, "split": "train", "detector": {"hop_ms": 40}}
    report_run(run_recipe(parse(raw), run_dir))
    result = json.loads((run_dir / "stream" / "result.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())["stream"]
    assert metrics["hits"] == result["score"]["hits"] and result["score"]["keywords"] == 4
    assert (run_dir / "stream" / "curve.png").is_file()
    assert "Streaming detection" in (run_dir / "report.html").read_text()
