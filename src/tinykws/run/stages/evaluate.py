"""The evaluate stage of a recipe run: the run's final model scored on each split."""

from __future__ import annotations

from tinykws.io import write_json
from tinykws.log import logger
from tinykws.measure.predictors import load_predictor
from tinykws.plots import plot_confusion
from tinykws.run.stages.data import load_run_dataset, split_arrays
from tinykws.train.evaluate import EvalData, evaluate


def stage_evaluate(run) -> dict:
    """Score the run's final model on each split of `[evaluate] splits`."""
    predictor = load_predictor(run.dir)
    dataset = load_run_dataset(run)
    out, summary = run.stage_dir("evaluate"), {}
    for split in run.recipe.evaluate.splits:
        if not dataset.clips(split):
            logger.warning(f"evaluate: the '{split}' split is empty, skipped")
            continue
        clips, _, feats, _ = split_arrays(run, split)
        result = evaluate(predictor, EvalData(clips=clips, features=feats, split=split))
        write_json(out / f"{split}.json", result)
        plot_confusion(result, out / f"confusion_{split}.png")
        fa = result["false_accepts"]["overall"]
        summary[split] = {"accuracy": result["accuracy"], "n": result["n"], "false_accept": fa}
        logger.info(f"evaluate: {split} accuracy {result['accuracy']:.4f} on {result['n']} clips")
    run.update_metrics("evaluate", summary)
    return summary
