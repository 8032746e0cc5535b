"""Hostile inputs on every verb: one `error:` line and exit status 2 (or a warning where the
input is odd but usable), never a traceback, never a silent success on garbage, never a file
that existed before changed and never a half-written --out (corpus in fuzz_corpus.py)."""

import pytest
from fuzz_corpus import (
    all_cases,
    audio_cases,
    build_fixtures,
    checkpoint_cases,
    exported_cases,
    filesystem_cases,
    recipe_cases,
    run_cases,
    run_corpus,
)


@pytest.fixture(scope="module")
def fixtures(tone_corpus, tmp_path_factory):
    return build_fixtures(tmp_path_factory.mktemp("fuzz"), tone_corpus)


def assert_all_handled(cases, fixtures):
    counts, outcomes = run_corpus(cases, fixtures["base"])
    bad = [f"{o.verdict}: {o.case.name}: {o.detail}" for o in outcomes if o.verdict != "ok"]
    assert not bad, f"{dict(counts)}\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "make",
    [checkpoint_cases, audio_cases, run_cases, exported_cases, recipe_cases, filesystem_cases],
    ids=["checkpoints", "audio", "run-folders", "exported-and-graphs", "recipes", "filesystem"],
)
def test_hostile_inputs_end_in_one_line(make, fixtures):
    assert_all_handled(make(fixtures), fixtures)


def test_corpus_covers_every_verb_with_200_inputs(fixtures):
    cases = all_cases(fixtures)
    inputs = {case.name.split(" ", 1)[1] for case in cases}
    verbs = {case.argv[0] for case in cases}
    assert len(inputs) >= 200 and len(cases) >= 600
    assert verbs >= {
        "predict",
        "evaluate",
        "export",
        "metrics",
        "prune",
        "run",
        "train",
        "report",
        "check",
        "data",
        "models",
        "compare",
        "quantize",
    }


@pytest.mark.slow
def test_quantize_and_compare_on_damaged_checkpoints(fixtures):
    from fuzz_corpus import SLOW_CHECKPOINT_VERBS

    assert_all_handled(checkpoint_cases(fixtures, SLOW_CHECKPOINT_VERBS), fixtures)


def test_predict_warns_on_odd_audio(fixtures, capsys):
    from tinykws.cli import main

    path, _ = fixtures["audio"]["clipped-float"]
    assert main(["predict", str(fixtures["good"]), str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "peak amplitude 1.02e+05 is beyond full scale" in err


def test_an_unexpected_error_names_its_log_and_exits_1(monkeypatch, capsys, tmp_path):
    from tinykws import cli

    def bug(args):
        raise ZeroDivisionError("boom")

    real_parser = cli.build_parser

    class ParserWithABug:
        def parse_args(self, argv):
            args = real_parser().parse_args(argv)
            args.run = bug
            return args

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "build_parser", ParserWithABug)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: internal error (ZeroDivisionError: boom)")
    logs = list((tmp_path / "tinykws" / "logs").iterdir())
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err[0]
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "models"])
