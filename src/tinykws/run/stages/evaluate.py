"""The evaluate stage of a recipe run: the final model scored on each split of `[evaluate]
splits`, and every model the run produced scored side by side.

    evaluate/<split>.json, confusion_<split>.png     the final model (as before)
    evaluate/models/summary.json                     accuracy per model and split
    evaluate/models/<model>/<split>.json             accuracy, per-class table, confusion
    evaluate/models/<model>/confusion_<split>.png    the confusion chart with its summaries

The models are the trained float model ("original"), the pruned one and the quantized one
(each when its stage ran; `[evaluate] models`, default "all", picks), scored on the train and
validation splits and those of `[evaluate] splits`. A quantized model runs as deployed (its
integer graph). One progress bar counts the clips of every model and split.
"""

from __future__ import annotations

import shutil

from tinykws.errors import TinyKWSError
from tinykws.io import read_json_object, write_json
from tinykws.log import logger
from tinykws.measure.predictors import load_predictor
from tinykws.plots import plot_confusion
from tinykws.progress import make_progress
from tinykws.run.stages.data import load_run_dataset, split_arrays
from tinykws.train.evaluate import EvalData, evaluate
from tinykws.train.model_file import FINAL_MODEL_FILE

STAGE = "evaluate"
MODELS_DIR = "models"
# model name -> (the stage that makes it, its run-relative file)
MODEL_FILES = {
    "original": ("train", "train/best.safetensors"),
    "pruned": ("prune", "prune/pruned.safetensors"),
    "quantized": ("quantize", "quantize/model.safetensors"),
}
MODEL_NAMES = tuple(MODEL_FILES)
# what a per-model file keeps of an evaluation (not every clip's prediction)
MODEL_KEYS = ("split", "accuracy", "n", "labels", "per_class", "confusion", "false_accepts")


def stage_evaluate(run) -> dict:
    """Score the final model on `[evaluate] splits` and every chosen model on the train and
    validation splits too; returns metrics.json's "evaluate" entry ({split: ...} of the final
    model, and "models": {model: {split: accuracy}} when models were compared)."""
    dataset = load_run_dataset(run)
    splits = [s for s in run.recipe.evaluate.splits if _has_clips(dataset, s)]
    models = models_to_score(run)
    compared = [s for s in dict.fromkeys(("train", "validation", *splits)) if dataset.clips(s)]
    scorer = Scorer(run)
    for split in dict.fromkeys([*splits, *(compared if models else ())]):
        scorer.load(split)  # before the bar: decoding and features draw bars of their own
    total = sum(len(dataset.clips(s)) for s in splits)
    total += sum(len(dataset.clips(s)) for s in compared) * len(models)
    shutil.rmtree(run.stage_dir(STAGE) / MODELS_DIR, ignore_errors=True)  # no stale models
    with make_progress() as bar:
        task = bar.add_task("evaluate", total=total, status="")
        scorer.advance = lambda n: bar.advance(task, n)
        summary = _score_final(run, scorer, splits, bar, task)
        if models:
            summary["models"] = _score_models(run, scorer, models, compared, bar, task)
    run.update_metrics(STAGE, summary)
    return summary


def _has_clips(dataset, split: str) -> bool:
    if dataset.clips(split):
        return True
    logger.warning(f"evaluate: the '{split}' split is empty, skipped")
    return False


def models_to_score(run) -> list[tuple[str, str]]:
    """(name, run-relative file) of each model of `[evaluate] models` that the run has, in
    pipeline order; "final" is the run's final model under its own name."""
    chosen = run.recipe.evaluate.models
    final = _final_model(run)
    found = []
    for name, (stage, path) in MODEL_FILES.items():
        wanted = {"all", name} & set(chosen) or ("final" in chosen and path == final)
        if wanted and stage in run.recipe.stages and (run.dir / path).is_file():
            found.append((name, path))
    if "final" in chosen and final not in {path for _, path in found}:
        found.append(("final", final))
    return found


def _final_model(run) -> str:
    path = run.dir / FINAL_MODEL_FILE
    if not path.is_file():
        raise TinyKWSError(
            f"{run.dir}: no model to evaluate; put 'train' before '{STAGE}' in the recipe's stages"
        )
    return read_json_object(path, "final.json")["model"]


class Scorer:
    """Evaluations of (model file, split), each computed once; split features loaded once."""

    def __init__(self, run):
        self.run, self.advance = run, None
        self.results, self.arrays, self.predictors = {}, {}, {}

    def load(self, split: str) -> EvalData:
        """The clips and features of `split` (loaded on first use)."""
        if split not in self.arrays:
            clips, _, features, _ = split_arrays(self.run, split)
            self.arrays[split] = EvalData(clips=clips, features=features, split=split)
        return self.arrays[split]

    def score(self, path: str, split: str) -> dict:
        if (path, split) not in self.results:
            if path not in self.predictors:  # as deployed: a quantized model on its graph
                self.predictors[path] = load_predictor(self.run.dir / path)
            predictor = self.predictors[path]
            self.results[path, split] = evaluate(predictor, self.load(split), self.advance)
        elif self.advance is not None:
            self.advance(self.results[path, split]["n"])  # the bar counts it as done
        return self.results[path, split]


def _score_final(run, scorer: Scorer, splits: list[str], bar, task) -> dict:
    """evaluate/<split>.json and confusion_<split>.png of the final model (the stage's files
    before models were compared, kept as they were)."""
    out, summary, final = run.stage_dir(STAGE), {}, _final_model(run)
    for split in splits:
        bar.update(task, status=f"final model, {split}")
        result = scorer.score(final, split)
        write_json(out / f"{split}.json", result)
        plot_confusion(result, out / f"confusion_{split}.png")
        fa = result["false_accepts"]["overall"]
        summary[split] = {"accuracy": result["accuracy"], "n": result["n"], "false_accept": fa}
        logger.info(f"evaluate: {split} accuracy {result['accuracy']:.4f} on {result['n']} clips")
    return summary


def _score_models(run, scorer: Scorer, models, splits: list[str], bar, task) -> dict:
    """Every model on every split: its files under evaluate/models/ and the accuracy table."""
    out = run.stage_dir(STAGE) / MODELS_DIR
    table = {}
    for name, path in models:
        for split in splits:
            bar.update(task, status=f"{name}, {split}")
            result = {k: v for k, v in scorer.score(path, split).items() if k in MODEL_KEYS}
            write_json(out / name / f"{split}.json", result | {"model": name, "file": path})
            title = f"{name}: {split} accuracy {100 * result['accuracy']:.1f}%"
            plot_confusion(result, out / name / f"confusion_{split}.png", title)
            table.setdefault(name, {})[split] = result["accuracy"]
        logger.info(
            f"evaluate: {name} " + ", ".join(f"{s} {a:.4f}" for s, a in table[name].items())
        )
    write_json(out / "summary.json", {"splits": splits, "models": table})
    return table
