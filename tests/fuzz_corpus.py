"""The hostile-input corpus: fixtures built once, then `Case`s for every verb, and the judge.

Used by tests/test_fuzz_cli.py and by `python tests/fuzz_corpus.py` (prints the counts).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_support import (  # noqa: E402
    Case,
    Outcome,
    bad_audio,
    broken_checkpoints,
    broken_runs,
    good_checkpoint,
    raw_checkpoint,
)

CHECKPOINT_VERBS = ("predict", "evaluate", "export-tflite", "export-onnx", "metrics", "prune")
SLOW_CHECKPOINT_VERBS = ("quantize", "compare")


def build_fixtures(base: Path, tones: Path) -> dict:
    """Good and damaged files under `base`; `tones` is a Speech Commands-layout corpus."""
    from tinykws.cli import main

    fx = {"base": base, "tones": tones, "clip": next(iter(sorted((tones / "yes").iterdir())))}
    good = good_checkpoint(base / "good" / "model.safetensors")
    fx["good"] = good
    fx["checkpoints"] = broken_checkpoints(good, base / "checkpoints")
    fx["audio"] = bad_audio(base / "audio")
    fx["runs"] = broken_runs(good, base / "runs")
    exported = base / "exported"
    for fmt in ("tflite", "onnx"):
        out = exported / f"model.{fmt}"
        with _quiet():
            assert main(["export", str(good), "--format", fmt, "--out", str(out)]) == 0
        fx[fmt] = out
    fx["foreign"] = _foreign_files(fx, base / "foreign")
    fx["graphs"] = _broken_graphs(fx, base / "graphs")
    fx["file"] = base / "a-file.txt"
    fx["file"].write_text("precious\n")
    fx["precious"] = base / "precious.tflite"
    fx["precious"].write_bytes(b"precious model bytes")
    return fx


def _foreign_files(fx: dict, folder: Path) -> dict[str, Path]:
    """Exported files whose sidecar metadata belongs to another model, and damaged ones."""
    import json

    from tinykws.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    _, meta = raw_checkpoint(fx["good"])
    other = good_checkpoint(folder / "logmel.safetensors", frontend="logmel")
    _, other_meta = raw_checkpoint(other)
    out = {}
    for fmt in ("tflite", "onnx"):
        src = folder / f"sidecar.{fmt}"
        with _quiet():
            assert main(["export", str(fx["good"]), "--format", fmt, "--out", str(src)]) == 0
            assert (
                main(["export", str(fx["good"]), "--format", fmt, "--sidecar", "--out", str(src)])
                == 0
            )
        variants = {
            "other-family": other_meta,
            "three-labels": meta | {"labels": ["a", "b", "c"]},
            "meta-list": [],
            "norm-string": meta | {"normalization": "x"},
        }
        for name, doc in variants.items():
            path = folder / f"{name}.{fmt}"
            path.write_bytes(src.read_bytes())
            Path(f"{path}.json").write_text(json.dumps(doc))
            out[f"{fmt}-{name}"] = path
        for name, payload in {
            "garbage": os.urandom(3000),
            "truncated": fx[fmt].read_bytes()[:400],
            "empty": b"",
        }.items():
            path = folder / f"{name}.{fmt}"
            path.write_bytes(payload)
            out[f"{fmt}-{name}"] = path
    return out


def _broken_graphs(fx: dict, folder: Path) -> dict[str, Path]:
    """Integer graphs: arrays garbage with a matching sha256, damaged JSON, foreign metadata."""
    import hashlib
    import json

    import numpy as np

    from tinykws.cli import main

    quantized = folder / "q"
    with _quiet():
        code = main(
            [
                "quantize",
                str(fx["good"]),
                "--data",
                str(fx["tones"]),
                "--out",
                str(quantized),
                "--calibration-per-class",
                "2",
            ]
        )
    assert code == 0
    doc = json.loads((quantized / "model.json").read_text())
    arrays = (quantized / "model.npz").read_bytes()
    out = {}

    def graph(name: str, doc_obj, payload: bytes, fix_sha: bool = True) -> None:
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        d = dict(doc_obj) if isinstance(doc_obj, dict) else doc_obj
        if isinstance(d, dict) and fix_sha:
            d["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
        (target / "model.json").write_text(d if isinstance(d, str) else json.dumps(d))
        (target / "model.npz").write_bytes(payload)
        out[name] = target / "model.json"

    rng = np.random.default_rng(2)
    graph("arrays-garbage", doc, rng.integers(0, 256, 999, dtype=np.uint8).tobytes())
    graph("arrays-pickle", doc, b"\x80\x04\x95" + os.urandom(64))
    graph("arrays-empty", doc, b"")
    graph("arrays-truncated", doc, arrays[: len(arrays) // 2])
    graph("json-brace", "{", arrays)
    graph("json-list", [], arrays)
    graph("sha-mismatch", doc, arrays + b"x", fix_sha=False)
    meta = doc["metadata"]
    graph("meta-three-labels", doc | {"metadata": meta | {"labels": ["a", "b", "c"]}}, arrays)
    graph("meta-frontend", doc | {"metadata": meta | {"frontend": {"preset": "logmel"}}}, arrays)
    graph("meta-string", doc | {"metadata": "x"}, arrays)
    graph("meta-norm", doc | {"metadata": meta | {"normalization": {"mean": "a"}}}, arrays)
    return out


def checkpoint_cases(fx: dict, verbs=CHECKPOINT_VERBS) -> list[Case]:
    cases = []
    for name, path in fx["checkpoints"].items():
        for verb in verbs:
            cases.append(_model_case(fx, verb, f"ckpt:{name}", path))
    return cases


def _model_case(fx: dict, verb: str, name: str, path: Path) -> Case:
    p, tones, out = str(path), str(fx["tones"]), fx["base"] / "out" / name.replace(":", "_")
    argv = {
        "predict": ["predict", p, str(fx["clip"])],
        "evaluate": ["evaluate", p, "--data", tones],
        "export-tflite": ["export", p, "--format", "tflite", "--out", f"{out}.tflite"],
        "export-onnx": ["export", p, "--format", "onnx", "--out", f"{out}.onnx"],
        "metrics": ["metrics", p, "--no-latency"],
        "prune": ["prune", p, "--method", "l1", "--amount", "0.5", "--out", f"{out}.safetensors"],
        "quantize": ["quantize", p, "--data", tones, "--out", str(out)],
        "compare": ["compare", str(fx["good"]), p, "--data", tones],
    }[verb]
    created = {
        "export-tflite": f"{out}.tflite",
        "export-onnx": f"{out}.onnx",
        "prune": f"{out}.safetensors",
        "quantize": str(out),
    }.get(verb)
    return Case(f"{verb} {name}", argv, out=created)


def audio_cases(fx: dict) -> list[Case]:
    cases = []
    for name, (path, expect) in fx["audio"].items():
        cases.append(Case(f"predict audio:{name}", ["predict", str(fx["good"]), str(path)], expect))
        if expect == "warn" and name not in ("ten-samples", "clipped-float"):
            continue  # plotting is slow; two warned plots stand for the rest
        png = fx["base"] / "out" / f"show-{name}.png"
        cases.append(
            Case(
                f"show audio:{name}",
                ["data", "show", str(path), "--out", str(png)],
                expect,
                out=None if expect == "warn" else str(png),
            )
        )
    return cases


def run_cases(fx: dict) -> list[Case]:
    cases = []
    for name, run in fx["runs"].items():
        final_broken = name.startswith(("final", "empty"))
        if final_broken:
            for verb in ("predict", "evaluate", "export-tflite", "metrics"):
                cases.append(_model_case(fx, verb, f"run:{name}", run))
        if final_broken:
            cases.append(Case(f"report run:{name}", ["report", str(run)]))
        if final_broken or name.startswith("metrics"):
            cases.append(Case(f"check run:{name}", ["check", str(run), "--min-accuracy", "0.5"]))
    return cases


def exported_cases(fx: dict) -> list[Case]:
    cases = []
    for name, path in {**fx["foreign"], **fx["graphs"]}.items():
        for verb in ("predict", "evaluate"):
            cases.append(_model_case(fx, verb, f"file:{name}", path))
        if name.startswith(("arrays", "json", "sha", "meta")):  # integer graphs export
            cases.append(_model_case(fx, "export-tflite", f"file:{name}", path))
    return cases


def base_recipe(fx: dict) -> dict:
    """A valid recipe (one quick epoch on the tone corpus) that each case damages."""
    return {
        "name": "x",
        "data": {"root": str(fx["tones"]), "cache_dir": str(fx["base"] / "cache")},
        "frontend": {"preset": "mfcc"},
        "model": {"preset": "tinyconv"},
        "train": {"epochs": 1, "batch_size": 32},
    }


def _with(section: str, key: str | None, value):
    def change(recipe: dict) -> dict:
        if key is None:
            recipe[section] = value
        else:
            recipe.setdefault(section, {})[key] = value
        return recipe

    return change


RECIPES = {
    "frontend-scalar": _with("frontend", None, "mfcc"),
    "train-scalar": _with("train", None, 5),
    "data-list": _with("data", None, [1, 2]),
    "model-scalar": _with("model", None, "tinyconv"),
    "evaluate-scalar": _with("evaluate", None, True),
    "prune-scalar": _with("prune", None, "taylor"),
    "stages-int": _with("stages", None, 5),
    "stages-unknown": _with("stages", None, ["data", "fly"]),
    "name-int": _with("name", None, 5),
    "lr-nan": _with("train", "lr", math.nan),
    "lr-inf-negative": _with("train", "lr", -math.inf),
    "lr-string": _with("train", "lr", "fast"),
    "epochs-zero": _with("train", "epochs", 0),
    "epochs-float": _with("train", "epochs", 2.5),
    "batch-negative": _with("train", "batch_size", -1),
    "optimizer-unknown": _with("train", "optimizer", "lbfgs"),
    "augment-scalar": _with("train", "augment", 3),
    "momentum-nan": _with("train", "momentum", math.nan),
    "unknown-section": _with("bogus", "x", 1),
    "unknown-train-key": _with("train", "epoch", 3),
    "model-unknown-preset": _with("model", "preset", "gpt"),
    "model-huge-classes": _with("model", "n_classes", 10**9),
    "model-huge-filters": _with("model", "filters", 10**9),
    "frontend-unknown": _with("frontend", "preset", "nope"),
    "data-root-missing": _with("data", "root", "/nonexistent/tinykws"),
    "data-root-file": _with("data", "root", "/etc/hostname"),
    "data-unknown-preset": _with("data", "preset", "nope"),
    "data-fraction-nan": _with("data", "unknown_fraction", math.nan),
    "name-absolute": _with("name", None, "/tmp/tinykws-fuzz-escape"),
    "name-dotdot": _with("name", None, "../escape"),
    "name-hidden": _with("name", None, ".hidden"),
    "name-slash": _with("name", None, "a/b"),
    "quantize-bits": _with("quantize", "bits", 99),
    "check-scalar-limit": _with("check", "max_flash", "a lot"),
    "invalid-toml": "[train\nlr = ",
    "binary": "\x00\x01\x02",
}


def recipe_cases(fx: dict) -> list[Case]:
    from tinykws.config import dump_toml

    folder = fx["base"] / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, change in RECIPES.items():
        path = folder / f"{name}.toml"
        text = change if isinstance(change, str) else dump_toml(change(base_recipe(fx)))
        path.write_text(text)
        out = fx["base"] / "out" / f"run-{name}"
        argv = ["run", str(path)] + ([] if name.startswith("name-") else ["--out", str(out)])
        cases.append(Case(f"run recipe:{name}", argv, out=str(out)))
    precious = fx["base"] / "finished-run"
    precious.mkdir(exist_ok=True)
    (precious / "recipe.toml").write_text("# the recipe of a finished run\n")
    good = folder / "good.toml"
    good.write_text(dump_toml(base_recipe(fx)))
    cases.append(
        Case(
            "run bad --data on a finished run",
            ["run", str(good), "--data", "/nonexistent/sc", "--out", str(precious)],
        )
    )
    return cases


def _odd_corpora(fx: dict) -> tuple[Path, Path]:
    """A corpus of one word (and background noise), and one whose validation list names no
    clip of it."""
    import shutil

    tones, base = fx["tones"], fx["base"]
    one = base / "one-class"
    if not one.exists():
        shutil.copytree(tones / "yes", one / "yes")
        shutil.copytree(tones / "_background_noise_", one / "_background_noise_")
    no_val = base / "no-validation"
    if not no_val.exists():
        for word in ("yes", "no", "_background_noise_"):
            shutil.copytree(tones / word, no_val / word)
        (no_val / "validation_list.txt").write_text("yes/nobody_nohash_0.wav\n")
        (no_val / "testing_list.txt").write_text("")
    return one, no_val


def filesystem_cases(fx: dict) -> list[Case]:
    good, file, tones = str(fx["good"]), str(fx["file"]), str(fx["tones"])
    folder = fx["base"] / "a-folder"
    folder.mkdir(exist_ok=True)
    empty = fx["base"] / "empty-folder"
    empty.mkdir(exist_ok=True)
    dir_model = fx["base"] / "a-folder.safetensors"
    dir_model.mkdir(exist_ok=True)
    out = fx["base"] / "out"
    one_class, no_val = (str(p) for p in _odd_corpora(fx))
    train = ["train", "--model", "tinyconv", "--frontend", "mfcc", "--epochs", "1"]
    train += ["--preset", "yesno4", "--no-augment"]
    under = f"{file}/x"
    argvs = {
        "export out under a file": ["export", good, "--format", "tflite", "--out", f"{under}.tfl"],
        "export out is a folder": ["export", good, "--format", "tflite", "--out", str(folder)],
        "export c out is a file": ["export", good, "--format", "c", "--out", file],
        "export onnx under a file": ["export", good, "--format", "onnx", "--out", f"{under}.onnx"],
        "export in /proc": ["export", good, "--format", "onnx", "--out", "/proc/tinykws.onnx"],
        "quantize out is a file": ["quantize", good, "--data", tones, "--out", file],
        "prune out under a file": [
            "prune",
            good,
            "--method",
            "l1",
            "--out",
            f"{under}.safetensors",
        ],
        "prune out is a folder": [
            "prune",
            good,
            "--method",
            "l1",
            "--out",
            str(dir_model),
        ],
        "evaluate json under a file": [
            "evaluate",
            good,
            "--data",
            tones,
            "--json",
            f"{under}.json",
        ],
        "evaluate data is a file": ["evaluate", good, "--data", file],
        "evaluate data missing": ["evaluate", good, "--data", "/nonexistent/sc"],
        "evaluate data empty": ["evaluate", good, "--data", str(empty)],
        "metrics json under a file": ["metrics", good, "--no-latency", "--json", f"{under}.j"],
        "metrics missing model": ["metrics", "/nonexistent/m.safetensors"],
        "predict unknown suffix": ["predict", file, str(fx["clip"])],
        "data synth onto a file": ["data", "synth", file, "--per-word", "1"],
        "data synth under a file": ["data", "synth", under, "--per-word", "1"],
        "data download onto a file": ["data", "download", file],
        "data download under a file": ["data", "download", under],
        "data stats of a file": ["data", "stats", file],
        "data stats missing": ["data", "stats", "/nonexistent/sc"],
        "data stats empty": ["data", "stats", str(empty)],
        "data show out under a file": ["data", "show", str(fx["clip"]), "--out", f"{under}.png"],
        "run out is a file": ["run", str(fx["base"] / "recipes" / "good.toml"), "--out", file],
        "train out under a file": [*train, "--data", tones, "--out", under],
        "train data is a file": [*train, "--data", file, "--out", f"{out}/train-file"],
        "train on one class": [*train, "--data", one_class, "--out", f"{out}/train-1"],
        "train with an empty validation list": [
            *train,
            "--data",
            no_val,
            "--out",
            f"{out}/train-noval",
        ],
        "report of a file": ["report", file],
        "report missing": ["report", "/nonexistent/run"],
        "report empty folder": ["report", str(empty)],
        "check of a file": ["check", file],
        "models unknown": ["models", "gpt"],
        "models bad input": ["models", "tinyconv", "--input", "0x0"],
        "models huge input": ["models", "tinyconv", "--input", "100000x100000"],
        "models zero classes": ["models", "tinyconv", "--classes", "0"],
        "compare missing": ["compare", good, "/nonexistent.safetensors", "--data", tones],
        "export overwrite precious with a broken model": [
            "export",
            str(fx["checkpoints"]["labels-3"]),
            "--format",
            "tflite",
            "--out",
            str(fx["precious"]),
        ],
    }
    return [Case(name, argv) for name, argv in argvs.items()]


def all_cases(fx: dict, slow: bool = False) -> list[Case]:
    verbs = CHECKPOINT_VERBS + (SLOW_CHECKPOINT_VERBS if slow else ())
    return [
        *checkpoint_cases(fx, verbs),
        *audio_cases(fx),
        *run_cases(fx),
        *exported_cases(fx),
        *recipe_cases(fx),
        *filesystem_cases(fx),
    ]


@contextlib.contextmanager
def _inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def snapshot(base: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `base`."""
    out = {}
    for root, _, files in os.walk(base):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[path] = (st.st_size, st.st_mtime_ns)
    return out


def judge(case: Case, base: Path) -> Outcome:
    """Run one case through `main` and classify what happened."""
    from tinykws.cli import main

    before = snapshot(base)
    err, outs = io.StringIO(), io.StringIO()
    # a run without --out goes to runs/<name> under the current folder: keep it in `base`
    with contextlib.redirect_stdout(outs), contextlib.redirect_stderr(err), _inside(base):
        try:
            status = main(case.argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001 - a crash is what we are counting
            return Outcome(case, -1, "traceback", f"{type(exc).__name__}: {exc}"[:300])
    lines = err.getvalue().strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    warned = any(line.startswith("warning: ") for line in lines)
    after = snapshot(base)
    changed = [p for p, sig in before.items() if after.get(p) != sig]
    if changed:
        return Outcome(case, status, "clobbered", ", ".join(changed[:3]))
    if status == 1 or "Traceback" in err.getvalue():
        return Outcome(case, status, "traceback", (errors or lines or [""])[-1][:300])
    if status == 0:
        if case.expect == "warn" and warned:
            return Outcome(case, status, "ok")
        return Outcome(case, status, "silent", outs.getvalue()[-200:])
    if status != 2 or len(errors) != 1 or lines[-1] != errors[0]:
        return Outcome(case, status, "not-one-line", " | ".join(lines[-3:])[:300])
    if case.out and Path(case.out).exists():
        return Outcome(case, status, "clobbered", f"left {case.out} after failing")
    return Outcome(case, status, "ok", errors[0][:300])


def run_corpus(cases: list[Case], base: Path) -> tuple[Counter, list[Outcome]]:
    import time

    outcomes, seconds = [], Counter()
    for case in cases:
        start = time.perf_counter()
        outcomes.append(judge(case, base))
        seconds[case.name.split(" ")[0]] += time.perf_counter() - start
    if os.environ.get("TINYKWS_FUZZ_TIMES"):
        print({k: round(v, 1) for k, v in seconds.most_common()})
    return Counter(o.verdict for o in outcomes), outcomes


if __name__ == "__main__":  # python tests/fuzz_corpus.py [--slow]: build, run, print counts
    import tempfile
    import time

    from conftest import write_tone_corpus

    os.environ.setdefault("TINYKWS_NO_PROGRESS", "1")
    base = Path(tempfile.mkdtemp(prefix="tinykws-fuzz-"))
    start = time.perf_counter()
    fx = build_fixtures(base / "work", write_tone_corpus(base / "tones", per_word=6))
    cases = all_cases(fx, slow="--slow" in sys.argv)
    counts, outcomes = run_corpus(cases, base / "work")
    inputs = len({c.name.split(" ", 1)[1] for c in cases})
    print(
        f"{len(cases)} invocations of {len({c.argv[0] for c in cases})} verbs on {inputs} "
        f"inputs in {time.perf_counter() - start:.0f} s: {dict(counts)}"
    )
    for o in outcomes:
        if o.verdict != "ok" or "-v" in sys.argv:
            print(f"  {o.verdict:12} {o.case.name}: {o.detail}")
