"""Argument helpers shared by the verb modules."""

from __future__ import annotations

import argparse


def add_verb(subparsers, name: str, help_text: str, run, description: str | None = None):
    """Add a sub-command whose `--help` shows `description` (or `help_text`) verbatim."""
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def comma_floats(text: str) -> tuple[float, ...]:
    """Parse '0.1,0.2' into (0.1, 0.2) for argparse."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def comma_ints(text: str) -> tuple[int, ...]:
    """Parse '2,4,8' into (2, 4, 8) for argparse."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def comma_words(text: str) -> tuple[str, ...]:
    """Parse 'a,b' into ('a', 'b') for argparse."""
    return tuple(v.strip() for v in text.split(",") if v.strip())
