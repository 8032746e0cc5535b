"""The recipe runner and the train/evaluate/predict/run verbs, end to end on the tone corpus."""

import json
import shutil

import pytest

from tinykws.cli import main

RECIPE = """
name = "tiny"
[data]
root = "{root}"
cache_dir = "{cache}"
preset = "12"
unknown_fraction = 1.0
[frontend]
preset = "logmel"
[model]
preset = "tinyconv"
[train]
epochs = {epochs}
batch_size = 32
[evaluate]
splits = ["validation"]
"""


def write_recipe(path, root, cache, epochs=2, extra=""):
    path.write_text(RECIPE.format(root=root, cache=cache, epochs=epochs) + extra)
    return path


def one_error_line(capsys) -> str:
    """The single `error:` line (progress notes may precede it), with no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.fixture(scope="module")
def finished_run(tone_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    recipe = write_recipe(base / "r.toml", tone_corpus, base / "cache")
    assert main(["run", str(recipe), "--out", str(base / "run")]) == 0
    return base


def test_run_writes_everything(finished_run):
    run = finished_run / "run"
    for name in (
        "recipe.toml",
        "metrics.json",
        "final.json",
        "report.html",
        "train/best.safetensors",
        "train/curves.png",
        "evaluate/validation.json",
        "evaluate/confusion_validation.png",
        "data/summary.json",
    ):
        assert (run / name).is_file(), name
    result = json.loads((run / "evaluate" / "validation.json").read_text())
    assert {"accuracy", "n", "per_class", "confusion"} <= set(result)
    assert result["labels"][-2:] == ["_unknown_", "_silence_"]
    assert sum(map(sum, result["confusion"])) == result["n"]
    report = (run / "report.html").read_text()
    assert "Training" in report and "Evaluation" in report and "data:image/png" in report


def test_rerun_skips_and_force_redoes(finished_run, capsys):
    run = finished_run / "run"
    recipe = finished_run / "r.toml"
    markers = {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    assert markers == {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    assert main(["run", str(recipe), "--out", str(run), "--force", "evaluate"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    assert after["train.json"] == markers["train.json"]
    assert after["evaluate.json"] != markers["evaluate.json"]
    assert after["report.json"] != markers["report.json"]


def test_changed_config_redoes_training(finished_run, tone_corpus):
    run = finished_run / "run2"
    shutil.copytree(finished_run / "run", run)
    recipe = write_recipe(finished_run / "r3.toml", tone_corpus, finished_run / "cache", epochs=3)
    before = (run / "stages" / "data.json").stat().st_mtime_ns
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    history = json.loads((run / "train" / "history.json").read_text())
    assert len(history["train_loss"]) == 3
    assert (run / "stages" / "data.json").stat().st_mtime_ns == before


def test_set_overrides_the_recipe_and_is_recorded(finished_run):
    run = finished_run / "run_set"
    shutil.copytree(finished_run / "run", run)
    recipe = finished_run / "r.toml"
    args = ["run", str(recipe), "--out", str(run), "--set", 'evaluate.splits=["train"]']
    train = (run / "stages" / "train.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (run / "evaluate" / "train.json").is_file()
    assert 'splits = ["train"]' in (run / "recipe.toml").read_text()
    assert (run / "stages" / "train.json").stat().st_mtime_ns == train  # training untouched


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ("train.epochz=3", "epochz"),
        ("train.epochs", "TABLE.KEY=VALUE"),
        ("name.x=1", "is a value, not a table"),
        ("train.epochs=many", "epochs"),
    ],
)
def test_bad_set_is_one_clear_error(finished_run, capsys, assignment, words):
    run = finished_run / "never"
    recipe = finished_run / "r.toml"
    assert main(["run", str(recipe), "--out", str(run), "--set", assignment]) != 0
    assert words in one_error_line(capsys)
    assert not run.exists()  # nothing written for a recipe that does not parse


def test_evaluate_and_predict_verbs(finished_run, tone_corpus, capsys, tmp_path):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(finished_run / "run"),
                "--data",
                str(tone_corpus),
                "--split",
                "all",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    wavs = sorted(tone_corpus.glob("[a-z]*/*.wav"))
    assert result["n"] >= len(wavs)
    capsys.readouterr()
    assert main(["predict", str(finished_run / "run"), str(wavs[0]), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    top3 = predictions[0]["top_k"]
    assert predictions[0]["path"] == str(wavs[0]) and len(top3) == 3
    assert predictions[0]["label"] == top3[0]["label"]
    probabilities = [t["probability"] for t in top3]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    capsys.readouterr()
    assert (
        main(["predict", str(finished_run / "run"), str(wavs[0]), "--json", "--top-k", "99"]) == 0
    )
    every = json.loads(capsys.readouterr().out)[0]["top_k"]
    assert len({t["label"] for t in every}) == 12 and every[:3] == top3  # preset "12": 12 labels
    # a softmax over every label, in float64 (JSON keeps every digit): sums to 1 up to rounding
    assert abs(sum(t["probability"] for t in every) - 1) < 1e-9


def test_unknown_recipe_key_is_one_line(tmp_path, tone_corpus, capsys):
    recipe = write_recipe(
        tmp_path / "bad.toml", tone_corpus, tmp_path, extra="[train.augment]\nnoize=1\n"
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert "noize" in line and "noise_prob" in line


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "nowhere", tmp_path)
    assert main(["run", str(recipe), "--out", str(tmp_path / "r")]) == 2
    assert "nowhere" in one_error_line(capsys)


def test_missing_model_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.safetensors"), "--data", str(tmp_path)]) == 2
    one_error_line(capsys)


def test_stages_default_to_the_tables_given():
    from tinykws.run.recipe import parse

    model = {"model": {"preset": "tinyconv"}}
    assert parse(model).stages == ("data", "train", "evaluate", "report")
    later = parse(model | {"quantize": {"method": "ptq"}, "check": {"min_accuracy": 0.9}})
    assert later.stages == ("data", "train", "quantize", "evaluate", "check", "report")
    assert parse(model | {"stages": ["data"], "quantize": {}}).stages == ("data",)


def test_shipped_recipes_parse():
    from pathlib import Path

    from tinykws.run.recipe import load_recipe

    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.toml"))
    assert {p.stem for p in recipes} >= {"demo", "real10"}
    for path in recipes:
        assert load_recipe(path).stages[:2] == ("data", "train")
