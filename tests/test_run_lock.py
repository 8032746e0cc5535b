"""One run per run directory: a second one is refused at once, naming the first; a lock left by
a dead process is taken over; two real runs on one folder: one refused, nothing mixed. And the
workers of `data synth` end with their parent."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinykws.cli import main
from tinykws.errors import TinyKWSError
from tinykws.run.lock import LOCK_FILE, run_lock

RECIPE = """
name = "locked"
stages = ["data", "train"]
[data]
root = "{root}"
cache_dir = "{cache}"
preset = "yesno4"
[frontend]
preset = "mfcc"
[model]
preset = "tinyconv"
[train]
epochs = {epochs}
batch_size = 16
lr = {lr}
[train.augment]
enabled = false
"""

HOLDER = """
import sys, time
from tinykws.run.lock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def write_recipe(path, root, cache, epochs=2, lr=0.003):
    path.write_text(RECIPE.format(root=root, cache=cache, epochs=epochs, lr=lr))
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    return err[-1]


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(TinyKWSError, match="another run is using this folder"):
            with run_lock(tmp_path / "run"):
                pass
    with run_lock(tmp_path / "run"):  # released: free again
        pass


def test_a_run_on_a_locked_folder_ends_at_once_naming_the_holder(tmp_path, tone_corpus, capsys):
    recipe = write_recipe(tmp_path / "r.toml", tone_corpus, tmp_path / "cache")
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        assert main(["run", str(recipe), "--out", str(run)]) == 2
        assert time.perf_counter() - start < 5
        line = error_line(capsys)
        assert f"another run is using this folder (pid {holder.pid}:" in line
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking: its lock is stale and is taken over
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    assert (run / "stages" / "train.json").is_file()


@pytest.mark.slow
def test_two_runs_on_one_folder_one_refused_nothing_mixed(tmp_path, tone_corpus):
    """Two `tinykws run` processes with different recipes start together on one folder."""
    cache = tmp_path / "cache"
    assert (
        main(
            [
                "run",
                str(write_recipe(tmp_path / "w.toml", tone_corpus, cache)),
                "--out",
                str(tmp_path / "warm"),
            ]
        )
        == 0
    )  # features cached: the runs start alike
    recipes = [
        write_recipe(tmp_path / f"r{i}.toml", tone_corpus, cache, epochs=30, lr=0.001 * (i + 1))
        for i in range(2)
    ]
    run = tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1", "TINYKWS_NO_PROGRESS": "1"}
    tinykws = [sys.executable, "-m", "tinykws", "run"]
    procs = [
        subprocess.Popen(
            [*tinykws, str(r), "--out", str(run)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for r in recipes
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = [i for i, (code, _) in enumerate(results) if code == 0][0]
    loser_err = results[1 - winner][1].strip().splitlines()
    assert loser_err[-1].startswith(f"error: {run}: another run is using this folder (pid ")
    assert "Traceback" not in results[1 - winner][1]
    # everything in the folder is the winner's: its recipe, and a model trained with its lr
    assert (run / "recipe.toml").read_text() == _resolved_recipe(recipes[winner], tone_corpus)
    from tinykws.checkpoint import load_checkpoint

    _, meta = load_checkpoint(run / "train" / "best.safetensors")
    history = json.loads((run / "train" / "history.json").read_text())
    assert history["lr"][0] == pytest.approx(0.001 * (winner + 1), rel=0.05)
    assert len(history["val_accuracy"]) == 30 and len(meta["labels"]) == 4


def _resolved_recipe(path: Path, root) -> str:
    from tinykws.config import dump_toml, load_toml
    from tinykws.run.recipe import parse

    return dump_toml(parse(load_toml(path)).to_dict())


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.tts
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_synth_workers_end_with_their_parent(tmp_path):
    out = tmp_path / "corpus"
    env = os.environ | {"OMP_NUM_THREADS": "1", "TINYKWS_NO_PROGRESS": "1"}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinykws",
            "data",
            "synth",
            str(out),
            "--per-word",
            "40",
            "--jobs",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and not any(out.glob("*/*.wav")):
        workers = _children(parent.pid) or workers
        time.sleep(0.2)
    workers = [w for w in _children(parent.pid) if _alive(w)]
    assert len(workers) >= 2, "the workers did not start"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)]
