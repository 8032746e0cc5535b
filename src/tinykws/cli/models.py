"""`tinykws models` (families, presets, per-layer summaries) and `tinykws env` (versions)."""

from __future__ import annotations

import re

from tinykws.cli._common import add_verb
from tinykws.errors import TinyKWSError

MODELS_HELP = """\
List the model families and presets with their parameters and MACs, or print one model's
layers (output shape, parameters, MACs per layer).

Each preset is shown at the input shape and class count it was published with (the front end
column names the `tinykws.features.frontend` preset that produces that shape); --input and --classes
change them.

Examples:
  tinykws models
  tinykws models dscnn_s
  tinykws models bcresnet3 --classes 35
  tinykws models dscnn_s --input 49x10 --classes 4
"""


def register(subparsers) -> None:
    p = add_verb(
        subparsers, "models", "list model presets, or one model's layers", run_models, MODELS_HELP
    )
    p.add_argument("name", nargs="?", help="preset or family: print its per-layer summary")
    p.add_argument("--input", metavar="FRAMESxBINS", help="feature shape, e.g. 49x10")
    p.add_argument("--classes", metavar="N", help="number of output classes")
    add_verb(subparsers, "env", "print versions, CPU and GPU (for bug reports)", run_env)


def parse_shape(text: str | None) -> tuple[int, int] | None:
    """'49x10' -> (49, 10)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not match or min(int(v) for v in match.groups()) < 1:
        raise TinyKWSError(f"--input: expected FRAMESxBINS such as 49x10; got {text!r}")
    return int(match[1]), int(match[2])


def parse_classes(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise TinyKWSError(f"--classes: expected a whole number such as 12; got {text!r}")
    return int(text)


def run_models(args) -> int:
    from rich.table import Table

    # lazy: pulls torch
    from tinykws import models

    shape, classes = parse_shape(args.input), parse_classes(args.classes)
    console = _console()
    if args.name:
        config = models.model_config(args.name, classes, shape)
        rows = models.summary(models.build_model(config))
        console.print(_describe(args.name, config))
        console.print(_layer_table(rows))
        return 0
    families = Table(title="Model families", title_justify="left")
    for column in ("family", "description", "width fields"):
        families.add_column(column)
    for family in models.FAMILIES.values():
        widths = ", ".join(family.config_class.WIDTH_FIELDS)
        families.add_row(family.name, family.description, widths)
    console.print(families)
    console.print(_preset_table(classes, shape))
    return 0


def _preset_table(classes, shape):
    from rich.table import Table

    # lazy: pulls torch
    from tinykws import models

    table = Table(title="Presets (tinykws models NAME for the layers)", title_justify="left")
    for column in ("preset", "family", "front end", "input", "classes"):
        table.add_column(column, no_wrap=True)
    for column in ("params", "MACs"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("description")
    for name, preset in models.MODEL_PRESETS.items():
        try:
            config = models.model_config(name, classes, shape)
        except TinyKWSError:  # e.g. BC-ResNet needs a multiple of 40 bins
            table.add_row(name, preset.family, preset.frontend, "-", "-", "-", "-", "does not fit")
            continue
        model = models.build_model(config)
        frames, bins = config.input_shape
        params, macs = models.count_params(model), models.count_macs(model)
        table.add_row(
            name,
            preset.family,
            preset.frontend,
            f"{frames}x{bins}",
            str(config.n_classes),
            f"{params:,}",
            f"{macs:,}",
            preset.description,
        )
    return table


def _describe(name: str, config) -> str:
    from rich.markup import escape

    # lazy: pulls torch
    from tinykws.models import config_to_dict

    settings = ", ".join(f"{k}={v}" for k, v in config_to_dict(config).items() if k != "family")
    return f"[bold]{escape(name)}[/bold] ({config.family}): {escape(settings)}"


def _layer_table(rows):
    from rich.table import Table

    # lazy: pulls torch
    from tinykws.models.summary import format_shape

    table = Table()
    for column in ("layer", "type", "output"):
        table.add_column(column, no_wrap=True)
    for column in ("params", "MACs"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r.name, r.type, format_shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
    total_params, total_macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    table.add_row("[bold]total", "", "", f"[bold]{total_params:,}", f"[bold]{total_macs:,}")
    return table


def run_env(args) -> int:
    from rich.table import Table

    # lazy: pulls importlib.metadata; `tinykws --help` stays fast
    from tinykws.environment import environment_rows

    table = Table(show_header=False)
    table.add_column("name", style="bold")
    table.add_column("value")
    for name, value in environment_rows():
        table.add_row(name, value)
    _console().print(table)
    return 0


def _console():
    """A stdout console; wide enough off a terminal that tables are not squeezed."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)
