from dataclasses import dataclass, field

import pytest

from tinykws.config import dump_toml, from_dict, set_key, to_dict
from tinykws.errors import TinyKWSError


@dataclass(frozen=True)
class Inner:
    width: int = 4
    rates: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    lr: float = 0.5
    widths: tuple[int, ...] = (8, 16)
    inner: Inner = field(default_factory=Inner)
    note: str | None = None


def test_round_trip_through_toml():
    import tomllib

    cfg = Outer(name="run", lr=1e-3, widths=(3,), inner=Inner(width=2, rates=(0.0, 1.0)))
    text = dump_toml(to_dict(cfg))
    assert from_dict(Outer, tomllib.loads(text)) == cfg


def test_int_is_accepted_for_float_and_lists_become_tuples():
    cfg = from_dict(Outer, {"lr": 1, "widths": [1, 2]})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.widths == (1, 2)


def test_unknown_key_names_the_closest_and_all_valid_keys():
    with pytest.raises(TinyKWSError) as err:
        from_dict(Outer, {"inner": {"widht": 3}}, "model")
    message = str(err.value)
    assert "unknown key 'widht' in [model.inner]" in message
    assert "did you mean 'width'" in message and "rates" in message


def test_wrong_type_is_one_line_error():
    with pytest.raises(TinyKWSError, match="lr must be float"):
        from_dict(Outer, {"lr": "fast"})
    with pytest.raises(TinyKWSError, match="must be a table"):
        from_dict(Outer, {"inner": 3})


def test_set_key_reads_toml_values_and_bare_words():
    raw = {"train": {"epochs": 30, "lr": 0.1}}
    for assignment in (
        "train.epochs=5",
        "train.lr = 1e-3",
        "data.preset=real10",
        'data.words=["yes", "no"]',
        "export.float_reference=true",
    ):
        set_key(raw, assignment)
    assert raw == {
        "train": {"epochs": 5, "lr": 1e-3},
        "data": {"preset": "real10", "words": ["yes", "no"]},
        "export": {"float_reference": True},
    }


@pytest.mark.parametrize("assignment", ["train.epochs", "=3", "train..lr=1", "train.epochs.x=1"])
def test_set_key_refuses_what_is_not_table_key_value(assignment):
    with pytest.raises(TinyKWSError, match="--set"):
        set_key({"train": {"epochs": 30}}, assignment)
