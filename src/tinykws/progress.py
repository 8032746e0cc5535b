"""Progress bars (rich) for anything that takes more than a few seconds.

Bars go to stderr and switch themselves off when stderr is not a terminal or when
TINYKWS_NO_PROGRESS is set, so logs and CI output stay clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """True when progress bars should be drawn."""
    return sys.stderr.isatty() and not os.environ.get("TINYKWS_NO_PROGRESS")


def make_progress():
    """A rich Progress with a bar, counts, rate and ETA (disabled when not interactive)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items` with a progress bar.

    Example:
        >>> sum(track(range(3), "counting"))
        3
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled():
        yield from items
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)
