"""`tinykws <verb>`: a thin layer that parses arguments and calls library functions.

Each module in this package owns a group of verbs and exposes `register(subparsers)`, which adds
its sub-commands with `set_defaults(run=function)`. Modules are discovered, so adding a verb
means adding a module. Heavy libraries are imported inside the verb functions, which keeps
`tinykws --help` fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from tinykws import __version__
from tinykws.errors import TinyKWSError

DESCRIPTION = """\
Train keyword-spotting networks on Speech Commands-style audio and compress them for
microcontrollers: data -> features -> model -> train -> prune -> quantize -> export -> report.

Quick start:
  tinykws run recipes/demo.toml                 # synthetic corpus -> trained, exported model
  tinykws run recipes/real10.toml --data DIR    # real Speech Commands folder
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="tinykws", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tinykws {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tinykws` console script. Returns the process exit status."""
    from tinykws import log

    parser = build_parser()
    args = parser.parse_args(argv)
    log.setup(verbose=args.verbose)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        result = args.run(args)
    except TinyKWSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
