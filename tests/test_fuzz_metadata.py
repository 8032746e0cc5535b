"""Property tests: any JSON as model metadata and any data as a recipe end in a valid object or
one `TinyKWSError`, never another exception; metadata that passes the checks gives a model that
runs with one finite score per label."""

import math

import numpy as np
import pytest
from fuzz_support import LABELS_12, good_checkpoint, raw_checkpoint, write_raw_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinykws.errors import TinyKWSError
from tinykws.metadata import check_finite, check_meta

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
META_KEYS = ("format", "labels", "model", "frontend", "normalization", "quant", "data", "train")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.dictionaries(st.sampled_from(META_KEYS) | st.text(max_size=5), JSON, max_size=6) | JSON)
def test_check_meta_accepts_or_raises_one_error(meta):
    try:
        assert check_meta(meta, "m.safetensors") is meta
    except TinyKWSError as exc:
        assert str(exc).startswith("m.safetensors: ") and "\n" not in str(exc)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = good_checkpoint(tmp_path_factory.mktemp("meta") / "good.safetensors")
    return raw_checkpoint(path)


def _replace(meta: dict, path: tuple, value):
    """`meta` with the entry at `path` (keys into nested objects) set to `value`."""
    import copy

    out = copy.deepcopy(meta)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _paths(meta: dict, prefix=()):
    for key, value in meta.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_metadata_never_loads_into_a_broken_model(good, tmp_path_factory, data):
    from tinykws.measure.predictors import load_predictor

    tensors, meta = good
    path = data.draw(st.sampled_from(sorted(_paths(meta))))
    value = data.draw(JSON)
    damaged = _replace(meta, path, value)
    file = write_raw_checkpoint(tmp_path_factory.mktemp("m") / "m.safetensors", tensors, damaged)
    try:
        predictor = load_predictor(file)
    except TinyKWSError as exc:
        assert "\n" not in str(exc)
        return
    frames, bins = predictor.meta["model"]["input_shape"]
    out = predictor.logits(np.zeros((2, frames, bins), np.float32))
    assert out.shape == (2, len(predictor.labels)) and np.isfinite(out).all()


def test_nan_and_inf_weights_are_refused():
    import torch

    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(TinyKWSError, match="'w' holds NaN or infinite values"):
            check_finite({"w": torch.tensor([1.0, bad])}, "m")
    check_finite({"w": torch.tensor([1.0]), "i": torch.tensor([3])}, "m")


def test_good_metadata_passes_the_deep_check(good):
    from tinykws.train.model_file import check_file_meta

    _, meta = good
    assert check_file_meta(meta, "m")["labels"] == LABELS_12


RECIPE_KEYS = (
    "name",
    "stages",
    "data",
    "frontend",
    "model",
    "train",
    "evaluate",
    "prune",
    "quantize",
    "export",
    "check",
)
SECTION_KEYS = (
    "preset",
    "epochs",
    "lr",
    "batch_size",
    "root",
    "augment",
    "filters",
    "unknown_fraction",
    "splits",
    "method",
    "bits",
    "enabled",
    "n_classes",
)


def _valid_base() -> dict:
    return {
        "name": "x",
        "frontend": {"preset": "mfcc"},
        "model": {"preset": "tinyconv"},
        "train": {"epochs": 1},
    }


SECTION = st.dictionaries(st.sampled_from(SECTION_KEYS) | st.text(max_size=4), JSON, max_size=3)


@FAST
@given(st.dictionaries(st.sampled_from(RECIPE_KEYS), SECTION | JSON, max_size=5))
def test_any_recipe_data_parses_or_raises_one_error(changes):
    from tinykws.run.recipe import parse

    raw = _valid_base() | changes
    try:
        recipe = parse(raw, where="r.toml")
    except TinyKWSError as exc:
        assert "\n" not in str(exc)
        return
    assert recipe.train.lr > 0 and math.isfinite(recipe.train.lr)


@FAST
@given(
    lr=st.floats(min_value=1e-6, max_value=1.0),
    epochs=st.integers(min_value=1, max_value=500),
    name=st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True),
)
def test_valid_recipes_round_trip_through_toml(lr, epochs, name):
    from tinykws.config import dump_toml, tomllib
    from tinykws.run.recipe import parse

    recipe = parse(_valid_base() | {"name": name, "train": {"epochs": epochs, "lr": lr}})
    again = parse(tomllib.loads(dump_toml(recipe.to_dict())))
    assert again == recipe
