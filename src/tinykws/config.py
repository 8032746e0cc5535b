"""Frozen configs: every stage takes one, they round-trip through TOML/JSON, and a misspelled key
is an error that names the valid ones.

A stage config is a `@dataclass(frozen=True)` that validates itself in `__post_init__` (raising
`TinyKWSError`). `from_dict` builds one from plain data (a parsed TOML table), recursing into
nested config fields; `to_dict` turns it back into plain data.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     lr: float = 0.1
    ...     widths: tuple[int, ...] = (8, 16)
    >>> from_dict(Demo, {"lr": 0.5})
    Demo(lr=0.5, widths=(8, 16))
    >>> to_dict(Demo(widths=(4,)))
    {'lr': 0.1, 'widths': [4]}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from tinykws.errors import TinyKWSError

T = TypeVar("T")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build the dataclass `cls` from `data`, checking keys and converting nested values.

    Args:
        cls: a dataclass type.
        data: plain values (as parsed from TOML/JSON); missing keys take their defaults.
        where: dotted location used in error messages, e.g. "train.augment".
    """
    if data is not None and not isinstance(data, dict):
        raise TinyKWSError(f"[{where or cls.__name__}] must be a table, got {data!r:.60}")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TinyKWSError(unknown_key_message(unknown[0], fields, where or cls.__name__))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TinyKWSError(f"{where or cls.__name__}: {exc}") from None


def unknown_key_message(key: str, valid: Any, where: str) -> str:
    """One sentence naming an unknown key, the closest valid one, and all valid keys."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key {key!r} in [{where}]{hint}; valid keys: {', '.join(valid)}"


def to_dict(obj: Any) -> Any:
    """Turn a config (or nested configs, tuples, dicts) into plain TOML/JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into plain data, with a one-line error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise TinyKWSError(f"{path}: no such file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TinyKWSError(f"{path}: not valid TOML ({exc})") from None


def set_key(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `KEY=VALUE` override to plain recipe data: KEY is a dotted path of tables
    (made where missing), VALUE a TOML value, or a bare word taken as a string.

    Example:
        >>> raw = {"train": {"epochs": 30}}
        >>> set_key(raw, "train.epochs=5"); set_key(raw, "data.preset=real10")
        >>> set_key(raw, "grid.sparsities=[0.5, 0.85]")
        >>> raw
        {'train': {'epochs': 5}, 'data': {'preset': 'real10'}, 'grid': {'sparsities': [0.5, 0.85]}}
    """
    key, sep, text = assignment.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise TinyKWSError(
            f"--set {assignment!r}: write TABLE.KEY=VALUE, e.g. --set train.epochs=5"
        )
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    table = raw
    for i, name in enumerate(path[:-1]):
        table = table.setdefault(name, {})
        if not isinstance(table, dict):
            raise TinyKWSError(
                f"--set {assignment!r}: {'.'.join(path[: i + 1])} is a value, not a table"
            )
    table[path[-1]] = value


def dump_toml(data: dict[str, Any]) -> str:
    """Write plain data (tables of scalars, lists, sub-tables) as TOML text; `None` is omitted."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(table: dict[str, Any], prefix: list[str], lines: list[str], array=False) -> None:
    arrays = {k: v for k, v in table.items() if _is_table_array(v)}  # [[name]] tables
    scalars = {
        k: v
        for k, v in table.items()
        if not isinstance(v, dict) and v is not None and k not in arrays
    }
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if array:
        lines.append(f"\n[[{'.'.join(prefix)}]]")
    elif prefix and (scalars or not tables):
        lines.append(f"\n[{'.'.join(prefix)}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tables.items():
        _dump_table(value, [*prefix, key], lines)
    for key, items in arrays.items():
        for item in items:
            _dump_table(item, [*prefix, key], lines, array=True)


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise TinyKWSError(f"[{where}] must be a table, got {value!r}")
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TinyKWSError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            return tuple(_convert(item, v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and math.isnan(value):
        raise TinyKWSError(f"{where} must be a number, got nan")
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise TinyKWSError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_file_name(where: str, name: str) -> None:
    """A name that becomes part of a file name: letters, digits, '_', '.', '-' only ("" passes)."""
    if name and not FILE_NAME_PATTERN.fullmatch(name):
        raise TinyKWSError(
            f"{where} {name!r}: use letters, digits, '_', '.' or '-' (it names the sweep's files)"
        )


def labelled_tables(cls: type[T], value: Any, where: str) -> tuple[T, ...]:
    """One table, an array of tables (`[[where]]`), `cls` instances or None -> a tuple of `cls`.

    Each item has a `label` (its `name`, or a default its class derives); two with one label
    would write the same files, so that is an error naming the duplicate.
    """
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out = tuple(item if isinstance(item, cls) else from_dict(cls, item, where) for item in items)
    labels = [item.label for item in out]
    for label in labels:
        if labels.count(label) > 1:
            raise TinyKWSError(
                f"{where}: two sweeps are named {label!r}; give each [[{where}]] its own "
                'name = "..."'
            )
    return out


def labelled_stem(items, item, base: str = "sweep") -> str:
    """The file stem of `item` among `items`: `base` for one unnamed item, else "base-<label>".

    Example:
        >>> from types import SimpleNamespace as S
        >>> one, two = S(name="", label="l1"), S(name="", label="magnitude")
        >>> labelled_stem((one,), one), labelled_stem((one, two), two)
        ('sweep', 'sweep-magnitude')
    """
    return base if len(items) == 1 and not item.name else f"{base}-{item.label}"


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise a one-line error unless `value` is one of `choices`."""
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise TinyKWSError(f"{name} must be one of {listed}; got {value!r}")


def check_range(name: str, value: float, low: float, high: float, *, high_open=False) -> None:
    """Raise a one-line error unless low <= value <= high (or < high when `high_open`)."""
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise TinyKWSError(f"{name} must be in [{low}, {high}{bracket}; got {value!r}")
