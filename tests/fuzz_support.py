"""A corpus of hostile inputs for every verb, and the judge that runs them through `main`.

Each case is an argument list and what a correct tinykws does with it: "error" (exit status 2
and exactly one `error:` line, no traceback) or "warn" (either that error, or success with at
least one `warning:` line). After every case, no file that existed before may have changed,
and a failed case may not have created its --out. Fixtures (a good checkpoint, its exported
files and integer graph, a run folder) are built once per corpus.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS_12 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS_12 += ["_unknown_", "_silence_"]


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "error"  # or "warn"
    out: str | None = None  # a path a failed case must not leave behind


@dataclass
class Outcome:
    case: Case
    status: int
    verdict: str  # "ok", "traceback", "silent", "clobbered", "not-one-line"
    detail: str = ""


def good_checkpoint(path: Path, frontend: str = "mfcc", family: str = "tinyconv") -> Path:
    """A small untrained but valid float model (12 labels) with its metadata."""
    import torch

    from tinykws.checkpoint import save_checkpoint
    from tinykws.config import to_dict
    from tinykws.data.speech_commands import DataConfig
    from tinykws.features.frontend import FrontEnd
    from tinykws.models import build_model, config_to_dict, model_config

    fe = FrontEnd(frontend)
    torch.manual_seed(0)
    config = model_config(family, len(LABELS_12), fe.output_shape)
    model = build_model(config).eval()
    bins = fe.output_shape[1]
    meta = {
        "model": config_to_dict(config),
        "labels": LABELS_12,
        "frontend": to_dict(fe.config),
        "normalization": {"mean": [0.0] * bins, "std": [1.0] * bins},
        "data": to_dict(DataConfig(preset="12", unknown_fraction=1.0)),
    }
    save_checkpoint(path, model.state_dict(), meta)
    return path


def raw_checkpoint(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata document) read without any checks."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["tinykws"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def write_raw_checkpoint(path: Path, tensors: dict, meta) -> Path:
    """Write a checkpoint with any metadata at all (bypassing the checks of save_checkpoint)."""
    from safetensors.torch import save

    path.write_bytes(save(tensors, metadata={"tinykws": json.dumps(meta)}))
    return path


def _set(meta: dict, dotted: str, value):
    out = json.loads(json.dumps(meta))
    *parents, last = dotted.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return out


_DELETE = object()


def meta_mutations(meta: dict) -> dict[str, object]:
    """Name -> a damaged metadata document (anything JSON can hold)."""
    fmt = meta["format"]
    bins = len(meta["normalization"]["mean"])
    m = {
        "meta-list": [1, 2],
        "meta-null": None,
        "meta-string": "tinykws",
        "meta-int": 5,
        "meta-format-only": {"format": fmt},
        "meta-format-wrong": _set(meta, "format", "other-1"),
        "meta-format-int": _set(meta, "format", 3),
    }
    for key in ("labels", "model", "frontend", "normalization"):
        m[f"missing-{key}"] = _set(meta, key, _DELETE)
        for kind, value in (("int", 7), ("string", "x"), ("null", None), ("list", [1])):
            m[f"{key}-{kind}"] = _set(meta, key, value)
    m |= {
        "labels-3": _set(meta, "labels", ["a", "b", "c"]),
        "labels-13": _set(meta, "labels", [*LABELS_12, "extra"]),
        "labels-duplicate": _set(meta, "labels", LABELS_12[:-1] + ["yes"]),
        "labels-ints": _set(meta, "labels", list(range(12))),
        "labels-empty-names": _set(meta, "labels", [""] * 12),
        "labels-nested": _set(meta, "labels", [["yes"]] * 12),
        "labels-huge": _set(meta, "labels", [f"w{i}" for i in range(5000)]),
        "model-family-unknown": _set(meta, "model.family", "transformer"),
        "model-family-int": _set(meta, "model.family", 3),
        "model-n-classes-1e9": _set(meta, "model.n_classes", 10**9),
        "model-n-classes-float": _set(meta, "model.n_classes", 12.5),
        "model-n-classes-3": _set(meta, "model.n_classes", 3),
        "model-n-classes-string": _set(meta, "model.n_classes", "12"),
        "model-filters-1e12": _set(meta, "model.filters", 10**12),
        "model-filters-float-1e12": _set(meta, "model.filters", 1e12),
        "model-filters-huge": _set(meta, "model.filters", 200_000),
        "model-filters-0": _set(meta, "model.filters", 0),
        "model-filters-negative": _set(meta, "model.filters", -4),
        "model-input-shape-wrong": _set(meta, "model.input_shape", [98, 40]),
        "model-input-shape-string": _set(meta, "model.input_shape", "49x10"),
        "model-unknown-key": _set(meta, "model.depth", 3),
        "model-kernel-nan": _set(meta, "model.dropout", math.nan),
        "frontend-unknown-preset": {**meta, "frontend": {"preset": "nope"}},
        "frontend-other-shape": {**meta, "frontend": {"preset": "logmel"}},
        "frontend-unknown-key": _set(meta, "frontend.colour", 3),
        "frontend-rate-negative": _set(meta, "frontend.sample_rate_hz", -16000),
        "frontend-rate-huge": _set(meta, "frontend.sample_rate_hz", 10**15),
        "frontend-bands-0": _set(meta, "frontend.n_bands", 0),
        "frontend-rate-string": _set(meta, "frontend.sample_rate_hz", "16k"),
        "norm-mean-string": _set(meta, "normalization.mean", "abc"),
        "norm-mean-short": _set(meta, "normalization.mean", [0.0] * (bins - 3)),
        "norm-mean-nan": _set(meta, "normalization.mean", [math.nan] * bins),
        "norm-mean-strings": _set(meta, "normalization.mean", ["0"] * bins),
        "norm-std-zero": _set(meta, "normalization.std", [0.0] * bins),
        "norm-std-negative": _set(meta, "normalization.std", [-1.0] * bins),
        "norm-std-inf": _set(meta, "normalization.std", [math.inf] * bins),
        "norm-missing-std": _set(meta, "normalization.std", _DELETE),
        "quant-string": _set(meta, "quant", "int8"),
        "quant-list": _set(meta, "quant", []),
        "quant-config-string": _set(meta, "quant", {"config": "x"}),
        "quant-empty": _set(meta, "quant", {}),
        "data-string": _set(meta, "data", "x"),
        "data-unknown-preset": _set(meta, "data", {"preset": "nope"}),
        "train-string": _set(meta, "train", "x"),
    }
    return m


def tensor_mutations(tensors: dict) -> dict[str, dict]:
    """Name -> damaged weights (NaN, inf, missing, extra, wrong shape)."""
    import torch

    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)[0]
    t = dict(tensors)
    nan, inf = t[name].clone(), t[name].clone()
    nan.view(-1)[0], inf.view(-1)[0] = math.nan, math.inf
    return {
        "weights-nan": t | {name: nan},
        "weights-inf": t | {name: inf},
        "weights-missing": {k: v for k, v in t.items() if k != name},
        "weights-extra": t | {"bogus.weight": torch.ones(3)},
        "weights-shape": t | {name: torch.ones(*t[name].shape[:-1], t[name].shape[-1] + 1)},
        "weights-none": {},
    }


def file_mutations(good: Path, folder: Path) -> dict[str, Path]:
    """Name -> a damaged checkpoint file (bytes level)."""
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "file-empty": b"",
        "file-random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "file-truncated-half": data[: len(data) // 2],
        "file-truncated-header": data[:20],
        "file-header-length-huge": (2**40).to_bytes(8, "little") + data[8:],
        "file-text": b"hello, not a model\n",
        "file-json": b'{"labels": ["yes"]}',
    }
    out = {}
    for name, payload in files.items():
        path = folder / f"{name}.safetensors"
        path.write_bytes(payload)
        out[name] = path
    directory = folder / "file-directory.safetensors"
    directory.mkdir(exist_ok=True)
    out["file-directory"] = directory
    return out


def broken_checkpoints(good: Path, folder: Path) -> dict[str, Path]:
    """Every damaged checkpoint of the corpus, written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = raw_checkpoint(good)
    out = {}
    for name, bad in meta_mutations(meta).items():
        out[name] = write_raw_checkpoint(folder / f"{name}.safetensors", tensors, bad)
    for name, bad in tensor_mutations(tensors).items():
        out[name] = write_raw_checkpoint(folder / f"{name}.safetensors", bad, meta)
    return out | file_mutations(good, folder)


def write_float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    sf.write(str(path), samples, rate, subtype="FLOAT", format="WAV")
    return path


def bad_audio(folder: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (audio file, "error" | "warn")."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    speech = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    out: dict[str, tuple[Path, str]] = {}

    def add(name, samples, rate, expect, subtype="PCM_16"):
        path = folder / f"{name}.wav"
        sf.write(str(path), samples, rate, subtype=subtype, format="WAV")
        out[name] = (path, expect)

    add("ten-samples", speech[:10], 16000, "warn")
    add("one-sample", speech[:1], 16000, "warn")
    add("rate-1hz", speech[:10], 1, "warn")
    add("rate-100hz", speech[:200], 100, "warn")
    add("rate-192khz", np.tile(speech, 12), 192000, "warn")
    add("clipped-float", speech * 3.4e5, 16000, "warn", subtype="FLOAT")
    add("peak-2", speech * 7, 16000, "warn", subtype="FLOAT")
    add("square-clipped", np.sign(speech).astype(np.float32), 16000, "warn")
    add("nan-float", np.full(16000, np.nan, np.float32), 16000, "error", subtype="FLOAT")
    add("inf-float", np.full(16000, np.inf, np.float32), 16000, "error", subtype="FLOAT")
    raw = {
        "empty": b"",
        "random-bytes": rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "text": b"not audio at all\n",
        "riff-only": b"RIFF\x00\x00\x00\x00WAVE",
        "header-no-data": b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
        + b"\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00",
    }
    for name, payload in raw.items():
        path = folder / f"{name}.wav"
        path.write_bytes(payload)
        out[name] = (path, "error")
    good = folder / "good-for-truncation.wav"
    sf.write(str(good), speech, 16000, subtype="PCM_16")
    truncated = folder / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:5000])
    out["truncated"] = (truncated, "error")
    good.unlink()
    (folder / "a-folder.wav").mkdir(exist_ok=True)
    out["a-folder"] = (folder / "a-folder.wav", "error")
    out["missing"] = (folder / "missing.wav", "error")
    return out


def copy_checkpoint_as(good: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good, path)
    return path


def broken_runs(good: Path, folder: Path) -> dict[str, Path]:
    """Name -> a damaged run directory (final.json, markers, metrics)."""
    runs = {}

    def run(name: str, files: dict[str, str], model: bool = True) -> None:
        root = folder / name
        root.mkdir(parents=True, exist_ok=True)
        if model:
            copy_checkpoint_as(good, root / "train" / "best.safetensors")
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        runs[name] = root

    run("empty-folder", {}, model=False)
    run("final-brace", {"final.json": "{"})
    run("final-list", {"final.json": "[]"})
    run("final-null", {"final.json": "null"})
    run("final-model-int", {"final.json": '{"model": 5}'})
    run("final-model-missing", {"final.json": '{"model": "train/nothing.safetensors"}'})
    run("final-outside", {"final.json": '{"model": "../../../../etc/hostname"}'})
    run("final-model-folder", {"final.json": '{"model": "train"}'})
    ok_final = '{"model": "train/best.safetensors"}'
    run("marker-list", {"final.json": ok_final, "stages/train.json": "[]"})
    run("marker-brace", {"final.json": ok_final, "stages/train.json": "{"})
    run("metrics-list", {"final.json": ok_final, "metrics.json": "[1]"})
    run("metrics-brace", {"final.json": ok_final, "metrics.json": "{"})
    return runs
