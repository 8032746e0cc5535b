"""The check stage of a recipe run: the `[check]` limits (`measure.check.CheckConfig`) checked
against what the export stage measured; writes check/result.json."""

from __future__ import annotations

from tinykws.config import from_dict
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.measure.check import CheckConfig, check_run, failure

CHECK = "check"


def stage_check(run) -> dict:
    """Check the `[check]` limits; write check/result.json (and stop the run if `strict`)."""
    config = from_dict(CheckConfig, run.recipe.extra.get(CHECK, {}), CHECK)
    rows = check_run(run.dir, config)
    passed = all(r.passed for r in rows)
    write_json(
        run.stage_dir(CHECK) / "result.json",
        {"passed": passed, "rows": [r.to_dict() for r in rows]},
    )
    run.update_metrics(CHECK, {"passed": passed, **{r.name: r.passed for r in rows}})
    problem = failure(rows)
    if problem is not None:
        if config.strict:
            raise problem
        logger.warning(f"check: {problem}")
    else:
        logger.info(f"check: all {len(rows)} constraints met")
    return {"passed": passed}
