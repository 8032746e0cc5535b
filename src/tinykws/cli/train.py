"""Verbs: run (a recipe), train, evaluate, predict, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tinykws.cli._common import add_verb
from tinykws.config import load_toml, set_key
from tinykws.errors import TinyKWSError
from tinykws.io import write_json


def register(subparsers) -> None:
    for add in (_add_run, _add_train, _add_evaluate, _add_predict, _add_report):
        add(subparsers)


def _add_run(subparsers) -> None:
    p = add_verb(
        subparsers,
        "run",
        "run a recipe (TOML) stage by stage into a run directory",
        run_recipe_verb,
        RUN_HELP,
    )
    p.add_argument("recipe", help="recipe file, e.g. recipes/demo.toml")
    p.add_argument("--data", help="Speech Commands-layout folder (overrides [data] root)")
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override one recipe value, e.g. --set train.epochs=5 or --set "
        "data.preset=real10 (a TOML value; repeatable; unknown keys are errors)",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="redo this stage and every stage after it (repeatable)",
    )


def _add_train(subparsers) -> None:
    p = add_verb(
        subparsers,
        "train",
        "train a model (data -> train -> evaluate -> report)",
        train_verb,
        TRAIN_HELP,
    )
    p.add_argument("--recipe", help="start from this recipe; the options below override it")
    p.add_argument("--data", help="Speech Commands-layout folder (default: synthetic corpus)")
    p.add_argument("--preset", help="label preset: 12, real10, yesno4, all36, gostop")
    p.add_argument("--frontend", help="front-end preset: logmel, mfcc, bark, micro, cnn3, gostop")
    p.add_argument("--model", help="model preset, see `tinykws models`")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--no-augment", action="store_true", help="train on clean cached features")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="run directory to create or resume")


def _add_evaluate(subparsers) -> None:
    p = add_verb(
        subparsers,
        "evaluate",
        "accuracy, per-class table and confusion matrix",
        evaluate_verb,
        EVALUATE_HELP,
    )
    p.add_argument("model", help="checkpoint, exported model file, or run directory")
    p.add_argument("--data", required=True, help="Speech Commands-layout or test-set folder")
    p.add_argument("--split", default="validation", choices=["train", "validation", "test", "all"])
    p.add_argument(
        "--backend",
        default="auto",
        help="auto (default: as deployed: a quantized model's integer graph, an exported file's "
        "runtime); torch, fakequant or int for quantized models; reference (LiteRT's builtin "
        "reference kernels) for .tflite",
    )
    p.add_argument("--json", dest="json_out", help="write the full result as JSON here")
    p.add_argument("--confusion", help="write the confusion matrix PNG here")


def _add_predict(subparsers) -> None:
    p = add_verb(
        subparsers, "predict", "top-k labels with probabilities for audio files", predict_verb
    )
    p.add_argument("model", help="checkpoint, exported model file, or run directory")
    p.add_argument("clips", nargs="+", help="wav or flac files")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--backend", default="auto", help="as for evaluate (default: auto)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _add_report(subparsers) -> None:
    p = add_verb(subparsers, "report", "(re)write report.html of a run directory", report_verb)
    p.add_argument("run_dir", help="run directory")


RUN_HELP = """\
Run a recipe: each stage ([data], [train], [evaluate], ...) writes into the run directory.
Re-running skips finished stages whose config is unchanged; --force STAGE redoes one.

examples:
  tinykws run recipes/demo.toml
  tinykws run recipes/real10.toml --data ~/speech_commands_v0.02 --out runs/real10
  tinykws run recipes/real10.toml --data ~/speech_commands_v0.02 --set train.epochs=5

The run directory's recipe.toml records the recipe with its --set overrides applied.
"""

TRAIN_HELP = """\
Train a model without writing a recipe (one is written into the run directory).

example:
  tinykws train --data ~/speech_commands --preset real10 --frontend mfcc \\
      --model dscnn_s --epochs 30 --out runs/dscnn
"""

EVALUATE_HELP = """\
Evaluate a model on a split of a folder. --split all scores every clip of the folder
(e.g. the official test set, whose layout has _unknown_/ and _silence_/ folders).

example:
  tinykws evaluate runs/real10 --data ~/speech_commands_test_set_v0.02 --split all --json out.json
"""


def run_recipe_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.report.html import report_run
    from tinykws.run.pipeline import run_recipe
    from tinykws.run.recipe import parse

    raw = load_toml(args.recipe)
    for assignment in args.overrides:
        set_key(raw, assignment)
    if args.data:
        raw.setdefault("data", {})["root"] = str(Path(args.data).resolve())
    recipe = parse(raw, where=args.recipe)
    run = run_recipe(recipe, args.out or default_run_dir(recipe.name), tuple(args.force))
    report_run(run)
    print_run_summary(run.dir)
    return 0


def default_run_dir(name: str) -> Path:
    """runs/<name> for a recipe's name, which must be a plain folder name (a name cannot put
    a run anywhere else: no separators, no '..', not hidden).

    Example:
        >>> default_run_dir("demo")
        PosixPath('runs/demo')
    """

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}", name):
        raise TinyKWSError(
            f"recipe name {name!r} is not a plain folder name (letters, digits, '_', '-', '.', "
            "'+'); rename it or give --out"
        )
    return Path("runs") / name


def train_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.report.html import report_run
    from tinykws.run.pipeline import run_recipe
    from tinykws.run.recipe import parse

    raw = load_toml(args.recipe) if args.recipe else {"name": Path(args.out).name}
    raw["stages"] = ["data", "train", "evaluate", "report"]
    overrides = {
        ("data", "root"): str(Path(args.data).resolve()) if args.data else None,
        ("data", "preset"): args.preset,
        ("frontend", "preset"): args.frontend,
        ("model", "preset"): args.model,
        ("train", "epochs"): args.epochs,
        ("train", "batch_size"): args.batch_size,
        ("train", "lr"): args.lr,
        ("train", "optimizer"): args.optimizer,
        ("train", "seed"): args.seed,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            raw.setdefault(section, {})[key] = value
    if args.no_augment:
        raw.setdefault("train", {}).setdefault("augment", {})["enabled"] = False
    run = run_recipe(parse(raw, where="train options"), args.out)
    report_run(run)
    if run.is_main:
        print_run_summary(run.dir)
    return 0


def evaluate_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.predictors import default_backend, load_predictor
    from tinykws.plots import plot_confusion
    from tinykws.train.evaluate import evaluate, load_eval_data, print_report

    backend = default_backend(args.model) if args.backend == "auto" else args.backend
    predictor = load_predictor(args.model, backend=backend)
    data = load_eval_data(predictor.meta, args.data, args.split)
    result = evaluate(predictor, data)
    result["model"], result["backend"] = str(args.model), backend
    print_report(result)
    if args.json_out:
        write_json(args.json_out, result)
    if args.confusion:
        plot_confusion(result, args.confusion)
    return 0


def predict_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.predict_files import predict_files, print_predictions

    results = predict_files(args.model, args.clips, top_k=args.top_k, backend=args.backend)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_predictions(results)
    return 0


def report_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.report.html import write_report

    if not Path(args.run_dir).is_dir():
        raise TinyKWSError(f"{args.run_dir}: no such run directory")
    print(write_report(args.run_dir))
    return 0


def print_run_summary(run_dir: Path) -> None:
    """A table of the run's metrics.json and the path of its report."""
    from rich.console import Console
    from rich.table import Table

    metrics_path = Path(run_dir) / "metrics.json"
    console = Console()
    if metrics_path.is_file():
        table = Table("stage", "figure", "value", title=f"run {run_dir}")
        for stage, values in json.loads(metrics_path.read_text()).items():
            for key, value in _flatten(values):
                table.add_row(stage, key, _fmt(value))
        console.print(table)
    report = Path(run_dir) / "report.html"
    if report.is_file():
        console.print(f"report: {report.resolve()}")


def _flatten(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
