"""The report stage of a recipe run: its place in the stage order and its marker.

report.html itself is written after the pipeline by the layer above it (`tinykws run` and
`tinykws train` call `tinykws.report.html.write_report` when the recipe lists this stage), from
what the other stages left in the run directory.
"""

from __future__ import annotations

STAGE = "report"
REPORT_FILE = "report.html"


def stage_report(run) -> dict:
    """Record the report stage; report.html is written once the pipeline has finished."""
    return {"report": REPORT_FILE}
