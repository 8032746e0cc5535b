"""Scoring detections against a stream's ground truth, with the MLPerf Tiny streaming rules.

- A detection is a hit when its time lies between a keyword's onset and 1 s after its offset
  and its label is that keyword's (each keyword is hit at most once; a second detection of
  the same keyword inside the same interval is ignored).
- Any other detection is a false accept, a wrong keyword inside a keyword's interval included
  (that keyword is then also a miss unless it is detected too); false accepts less than 1 s
  apart count once.
- The false-reject rate is misses / keywords; false accepts per hour use the stream's length.

Truth files are CSV with a header `onset_s,offset_s,label`; rows whose label starts with "_"
(other words, `_unknown_`) are context, not keywords to find.

Example:
    >>> from tinykws.stream.recognize import Event
    >>> truth = [(1.0, 1.5, "yes"), (4.0, 4.6, "no"), (7.0, 7.5, "_unknown_")]
    >>> events = [Event(1.9, "yes", 0.9), Event(4.8, "yes", 0.8), Event(4.9, "yes", 0.8)]
    >>> score = score_events(events, truth, duration_s=3600.0)
    >>> score["hits"], score["misses"], score["false_accepts"], score["false_reject_rate"]
    (1, 1, 1, 0.5)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tinykws.data.stream_test import TRUTH_HEADER, write_truth
from tinykws.errors import TinyKWSError

__all__ = ["TRUTH_HEADER", "read_truth", "score_events", "write_truth"]

AFTER_OFFSET_S = 1.0  # a detection up to 1 s after a keyword's end still counts
MERGE_S = 1.0  # false accepts closer than this count once


def read_truth(path: str | Path, duration_s: float | None = None) -> list[tuple]:
    """Rows (onset_s, offset_s, label) of a truth CSV, checked.

    Raises:
        TinyKWSError: a missing file, a wrong header, a row that is not two times and a label,
            an offset before its onset, or a time past the end of the stream.
    """
    path = Path(path)
    if not path.is_file():
        raise TinyKWSError(f"{path}: no such truth file")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0]) != TRUTH_HEADER:
        raise TinyKWSError(f"{path}: the first line must be the header {','.join(TRUTH_HEADER)}")
    truth = [_truth_row(path, number, row) for number, row in enumerate(rows[1:], start=2)]
    if duration_s is not None:
        for number, (_, offset, label) in enumerate(truth, start=2):
            if offset > duration_s + 1e-6:
                raise TinyKWSError(
                    f"{path}: line {number} ({label}) ends at {offset:g} s, past the end of "
                    f"the audio ({duration_s:.3f} s); is it the truth of another stream?"
                )
    return truth


def _truth_row(path: Path, number: int, row: list[str]) -> tuple:
    try:
        onset, offset, label = float(row[0]), float(row[1]), row[2].strip()
        if len(row) != 3 or not label or not 0 <= onset <= offset or not np.isfinite(offset):
            raise ValueError
    except (ValueError, IndexError):
        raise TinyKWSError(
            f"{path}: line {number} is not 'onset_s,offset_s,label' with 0 <= onset <= offset: "
            f"{','.join(row)!r}"
        ) from None
    return (onset, offset, label)


def score_events(events, truth: list[tuple], duration_s: float) -> dict:
    """Hits, misses and false accepts of `events` against `truth` (see the module docstring).

    Returns:
        {"keywords", "hits", "misses", "false_accepts", "false_accepts_per_hour",
         "false_reject_rate", "hours"}.
    """
    keywords = [(a, b, label) for a, b, label in truth if not label.startswith("_")]
    hit = [False] * len(keywords)
    false_times = []
    for event in sorted(events, key=lambda e: e.time_s):
        inside = [
            i for i, (a, b, _) in enumerate(keywords) if a <= event.time_s <= b + AFTER_OFFSET_S
        ]
        same = [i for i in inside if keywords[i][2] == event.label]
        fresh = [i for i in same if not hit[i]]
        if fresh:
            hit[fresh[0]] = True
        elif not same:
            false_times.append(event.time_s)
    false_accepts = _merged_count(false_times)
    hours = duration_s / 3600.0
    hits = sum(hit)
    return {
        "keywords": len(keywords),
        "hits": hits,
        "misses": len(keywords) - hits,
        "false_accepts": false_accepts,
        "false_accepts_per_hour": false_accepts / hours if hours > 0 else 0.0,
        "false_reject_rate": (len(keywords) - hits) / len(keywords) if keywords else 0.0,
        "hours": hours,
    }


def _merged_count(times: list[float]) -> int:
    """Times counted once per run of times less than MERGE_S apart."""
    count, last = 0, None
    for t in sorted(times):
        if last is None or t - last >= MERGE_S:
            count += 1
        last = t
    return count
