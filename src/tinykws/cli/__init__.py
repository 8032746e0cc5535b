"""`tinykws <verb>`: a thin layer that parses arguments and calls library functions.

Each module in this package owns a group of verbs and exposes `register(subparsers)`, which adds
its sub-commands with `set_defaults(run=function)`. Modules are discovered, so adding a verb
means adding a module. Heavy libraries are imported inside the verb functions, which keeps
`tinykws --help` fast.

`main` is the one error boundary: a `TinyKWSError` or a filesystem error is one `error:` line and
exit status 2; an unexpected exception is one line naming the log file that holds its
traceback, exit status 1 (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from tinykws import __version__, log
from tinykws.errors import TinyKWSError, describe_os_error

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
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tinykws` console script. Returns the process exit status."""

    parser = build_parser()
    args = parser.parse_args(argv)
    log.setup(verbose=args.verbose)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        result = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return report_error(exc)
    return int(result or 0)


def report_error(exc: BaseException) -> int:
    """Print one line for `exc` and return the exit status: 2 (or the error's own) for the
    user's errors, 1 for a bug, whose traceback goes to a log file named in the line."""
    if isinstance(exc, TinyKWSError):
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)  # one line
        return getattr(exc, "exit_code", 2)
    if isinstance(exc, OSError):
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):  # torch's OOM
        print("error: out of memory; the input is larger than this machine holds", file=sys.stderr)
        return 2
    log_path = write_crash_log(exc)
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    print(
        f"error: internal error ({type(exc).__name__}{': ' + first if first else ''}); "
        f"the traceback is in {log_path}; please report it (or rerun with --debug)",
        file=sys.stderr,
    )
    return 1


def write_crash_log(exc: BaseException) -> Path | str:
    """Write the traceback of `exc` under the user cache (~/.cache/tinykws/logs) and return
    the path ("(unwritable)" when even that fails)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinykws" / "logs"
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = f"tinykws {__version__}\nargv: {sys.argv}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    try:
        base.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    except OSError:
        return "(unwritable log folder)"
    return base / name
