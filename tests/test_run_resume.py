"""A run interrupted at any write resumes to the same final model as an uninterrupted one;
`--force train` trains from scratch; a changed config restarts the stages it affects; a stage
whose model is missing is redone."""

import json

import pytest
import torch

from tinykws import io as tinykws_io
from tinykws.cli import main

RECIPE = """
name = "resume"
stages = ["data", "train"]
[data]
root = "{root}"
cache_dir = "{cache}"
preset = "yesno4"
unknown_fraction = 1.0
[frontend]
preset = "mfcc"
[model]
preset = "tinyconv"
{model_extra}
[train]
epochs = 3
batch_size = 16
lr = {lr}
[train.augment]
enabled = false
"""


def write_recipe(path, root, cache, lr=0.003, model_extra=""):
    path.write_text(RECIPE.format(root=root, cache=cache, lr=lr, model_extra=model_extra))
    return path


def final_weights(run):
    from tinykws.checkpoint import load_checkpoint

    final = json.loads((run / "final.json").read_text())["model"]
    return load_checkpoint(run / final)[0]


def assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


class CountingCommit:
    """Replaces io._commit: counts written files and interrupts before write number `stop`."""

    def __init__(self, real, stop=None):
        self.real, self.stop, self.count, self.names = real, stop, 0, []

    def __call__(self, tmp, path):
        self.count += 1
        if self.stop is not None and self.count == self.stop:
            raise KeyboardInterrupt  # as if Ctrl-C (or a kill) came just before this write
        self.names.append(path.name)
        self.real(tmp, path)


@pytest.fixture(scope="module")
def reference(tone_corpus, tmp_path_factory):
    """An uninterrupted run (cache warmed first, so every later run writes the same files)."""
    base = tmp_path_factory.mktemp("resume")
    recipe = write_recipe(base / "r.toml", tone_corpus, base / "cache")
    assert main(["run", str(recipe), "--out", str(base / "warm")]) == 0
    counter = CountingCommit(tinykws_io._commit)
    tinykws_io._commit = counter
    try:
        assert main(["run", str(recipe), "--out", str(base / "ref")]) == 0
    finally:
        tinykws_io._commit = counter.real
    assert_same_weights(final_weights(base / "warm"), final_weights(base / "ref"))
    return base, recipe, counter.count, counter.names


def interrupt_and_resume(reference, stop, monkeypatch, folder):
    base, recipe, _, _ = reference
    out = folder / f"cut-{stop}"
    with monkeypatch.context() as patch:
        patch.setattr(tinykws_io, "_commit", CountingCommit(tinykws_io._commit, stop))
        assert main(["run", str(recipe), "--out", str(out)]) == 130
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    assert_same_weights(final_weights(out), final_weights(base / "ref"))
    assert {p.name for p in (out / "stages").iterdir()} == {"data.json", "train.json"}


def test_writes_are_counted(reference):
    _, _, count, names = reference
    # data summary, recipe, 3 x (best?, last), history, curves, metrics, final, markers
    assert names[:2] == ["summary.json", "data.json"] and "last.safetensors" in names
    assert count == len(names) >= 10


@pytest.mark.parametrize("stop", [1, 3, 4, 5, 7])
def test_interrupt_at_a_write_resumes_to_the_same_model(reference, stop, monkeypatch, tmp_path):
    interrupt_and_resume(reference, stop, monkeypatch, tmp_path)


@pytest.mark.slow
def test_interrupt_at_every_write_resumes_to_the_same_model(reference, monkeypatch, tmp_path):
    _, _, count, _ = reference
    for stop in range(1, count + 1):
        interrupt_and_resume(reference, stop, monkeypatch, tmp_path)


def test_interrupt_between_best_and_last(reference, monkeypatch, tmp_path):
    """The order inside an epoch: best first, then last; cut between the two."""
    _, _, _, names = reference
    stop = names.index("last.safetensors", names.index("best.safetensors")) + 1
    interrupt_and_resume(reference, stop, monkeypatch, tmp_path)


def test_force_train_trains_from_scratch(reference, tmp_path, capsys):
    base, recipe, _, _ = reference
    out = tmp_path / "forced"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(out), "--force", "train"]) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and "epoch 1/3" in err and "epoch 3/3" in err
    assert_same_weights(final_weights(out), final_weights(base / "ref"))


def test_changed_config_restarts_the_stage(reference, tmp_path, tone_corpus, capsys):
    base, recipe, _, _ = reference
    out = tmp_path / "changed"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    wider = write_recipe(
        tmp_path / "w.toml", tone_corpus, base / "cache", model_extra="filters = 4"
    )
    capsys.readouterr()
    assert main(["run", str(wider), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[train] settings changed since the last run: redone from the start" in err
    assert final_weights(out)["conv.conv.weight"].shape[0] == 4
    faster = write_recipe(tmp_path / "f.toml", tone_corpus, base / "cache", lr=0.01)
    assert main(["run", str(faster), "--out", str(out)]) == 0
    assert "settings changed" in capsys.readouterr().err


def test_last_checkpoint_of_other_settings_is_not_resumed(reference, tmp_path, tone_corpus):
    """An interrupted run (no marker yet) whose recipe then changes starts training over."""
    base, recipe, _, _ = reference
    out = tmp_path / "cut-then-changed"
    with pytest.MonkeyPatch.context() as patch:
        names = reference[3]
        stop = names.index("last.safetensors") + 2
        patch.setattr(tinykws_io, "_commit", CountingCommit(tinykws_io._commit, stop))
        assert main(["run", str(recipe), "--out", str(out)]) == 130
    wider = write_recipe(
        tmp_path / "w.toml", tone_corpus, base / "cache", model_extra="filters = 4"
    )
    assert main(["run", str(wider), "--out", str(out)]) == 0
    assert final_weights(out)["conv.conv.weight"].shape[0] == 4


def test_a_missing_best_checkpoint_redoes_the_stage(reference, tmp_path):
    base, recipe, _, _ = reference
    out = tmp_path / "lost"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    (out / "train" / "best.safetensors").unlink()
    (out / "train" / "last.safetensors").unlink()
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    assert_same_weights(final_weights(out), final_weights(base / "ref"))


def test_recipe_is_written_only_after_the_data_is_valid(reference, tmp_path):
    base, recipe, _, _ = reference
    out = tmp_path / "finished"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    before = (out / "recipe.toml").read_text()
    assert main(["run", str(recipe), "--out", str(out), "--data", str(tmp_path / "none")]) == 2
    assert (out / "recipe.toml").read_text() == before
