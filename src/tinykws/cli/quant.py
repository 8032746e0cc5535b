"""Verbs: quantize (ptq / dynamic / qat, 2-8 bits, optional sweep) and compare (two models)."""

from __future__ import annotations

import json
from pathlib import Path

from tinykws.cli._common import add_verb, comma_ints, comma_words
from tinykws.config import from_dict
from tinykws.io import write_json
from tinykws.quant import QuantConfig


def register(subparsers) -> None:
    p = add_verb(
        subparsers,
        "quantize",
        "quantize a model to 2-8 bits (ptq, dynamic, qat)",
        quantize_verb,
        QUANTIZE_HELP,
    )
    _add_quantize_options(p)

    p = add_verb(
        subparsers,
        "compare",
        "compare two models: accuracy, drop, size, predictions",
        compare_verb,
        COMPARE_HELP,
    )
    p.add_argument("model_a", help="model file or run directory (e.g. the float model)")
    p.add_argument("model_b", help="model file or run directory (e.g. the quantized model)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="validation", choices=["train", "validation", "test", "all"])
    p.add_argument("--backend-a", help="torch, fakequant or int (default: int when available)")
    p.add_argument("--backend-b", help="torch, fakequant or int (default: int when available)")
    p.add_argument("--json", dest="json_out", help="write the comparison as JSON here")
    p.add_argument("--cache-dir", help="keep decoded audio and features here between runs")


def _add_quantize_options(p) -> None:
    p.add_argument("model", help="float checkpoint or run directory")
    p.add_argument("--data", required=True, help="the dataset folder the model was trained on")
    p.add_argument("--out", required=True, help="folder for model.safetensors, model.json, ...")
    p.add_argument("--method", choices=["ptq", "dynamic", "qat"])
    p.add_argument("--bits", type=int, help="weight bit width, 2..8 (default 8)")
    p.add_argument("--activation-bits", type=int, help="2..8; the integer graph needs 8")
    p.add_argument(
        "--weight-scheme",
        choices=["per_channel", "per_tensor", "per_channel_depthwise"],
        help="weight scales per output channel (default), per tensor, or per channel in "
        "depthwise convs only (a smaller .tflite)",
    )
    p.add_argument(
        "--weight-mode",
        choices=["sym", "asym"],
        help="symmetric weights (default; zero point 0, what TFLite and C hold) or asymmetric "
        "(zero point per scale, full range: evaluated in fake quantization, not exported)",
    )
    p.add_argument("--activation-scheme", choices=["asym", "sym"])
    p.add_argument(
        "--observer", help="activation observer: minmax, moving_average, percentile, mse, entropy"
    )
    p.add_argument("--weight-observer", help="minmax or mse")
    p.add_argument("--power-of-two", action="store_true", help="power-of-two scales")
    p.add_argument(
        "--equalize",
        action="store_true",
        help="cross-layer equalization before calibration: per-tensor weight scales then fit "
        "every channel (ptq, qat)",
    )
    p.add_argument("--calibration-per-class", type=int, help="calibration clips per class")
    p.add_argument(
        "--calibration-clips",
        type=int,
        help="calibration clips in total, stratified over the classes (seeded); instead of "
        "--calibration-per-class",
    )
    p.add_argument("--qat-epochs", type=int, help="QAT fine-tuning epochs")
    p.add_argument("--qat-lr", type=float, help="QAT learning rate")
    p.add_argument(
        "--unknown-weight",
        type=float,
        help="QAT: multiply the loss weight of _unknown_ (default: the model's training value "
        "as its checkpoint records it, else 1)",
    )
    p.add_argument(
        "--qat-no-augment",
        action="store_true",
        help="QAT: fine-tune on clean features (default: the model's training augmentation)",
    )
    p.add_argument("--sweep-bits", type=comma_ints, help="e.g. 2,4,6,8: sweep weight widths")
    p.add_argument("--schemes", type=comma_words, help="sweep activation schemes, e.g. sym,asym")
    p.add_argument("--weight-modes", type=comma_words, help="sweep weight modes, e.g. sym,asym")
    p.add_argument("--methods", type=comma_words, help="sweep methods, e.g. ptq,qat")
    p.add_argument("--cache-dir", help="keep decoded audio and features here between runs")


QUANTIZE_HELP = """\
Quantize a float model and lower it to the integer graph. OUT receives model.safetensors
(evaluate it with --backend torch|fakequant|int), model.json + model.npz (the integer graph),
summary.json and size charts; with --sweep-bits also sweep.json, sweep.csv and sweep.png.

examples:
  tinykws quantize runs/real10 --data DIR --out runs/real10_int8
  tinykws quantize runs/real10 --data DIR --out q4 --method qat --bits 4 --qat-epochs 8
  tinykws quantize runs/real10 --data DIR --out small --weight-scheme per_tensor --equalize
  tinykws quantize runs/cnn3 --data DIR --out int8 --calibration-clips 200
  tinykws quantize runs/yesno --data DIR --out asym4 --bits 4 --weight-mode asym
  tinykws quantize runs/real10 --data DIR --out sweep --sweep-bits 2,4,6,8 \\
      --schemes sym,asym --weight-modes sym,asym --methods ptq,qat
"""

COMPARE_HELP = """\
Score two models on the same clips: both accuracies, the drop, top-1 agreement, both parameter
memories, the compression ratio and ten side-by-side predictions.

example:
  tinykws compare runs/real10/train/best.safetensors runs/real10_int8/model.safetensors --data DIR
"""

OPTION_KEYS = {
    "method": "method",
    "bits": "weight_bits",
    "activation_bits": "activation_bits",
    "weight_scheme": "weight_scheme",
    "weight_mode": "weight_mode",
    "activation_scheme": "activation_scheme",
    "observer": "activation_observer",
    "weight_observer": "weight_observer",
    "calibration_per_class": "calibration_per_class",
    "calibration_clips": "calibration_clips",
}


def quant_config_from_args(args):
    """(QuantConfig, QuantSweepConfig | None) from the command line options."""
    # lazy: pulls torch
    from tinykws.quant.sweep import QuantSweepConfig

    table = {
        key: getattr(args, opt)
        for opt, key in OPTION_KEYS.items()
        if getattr(args, opt) is not None
    }
    for flag in ("power_of_two", "equalize"):
        if getattr(args, flag):
            table[flag] = True
    qat = {
        k: v
        for k, v in (
            ("epochs", args.qat_epochs),
            ("lr", args.qat_lr),
            ("unknown_weight", args.unknown_weight),
        )
        if v is not None
    }
    if args.qat_no_augment:
        qat["augment"] = {"enabled": False}
    if qat:
        table["qat"] = qat
    config = from_dict(QuantConfig, table, "quantize")
    sweep = None
    if args.sweep_bits or args.schemes or args.methods or args.weight_modes:
        sweep_table = {
            k: v
            for k, v in (
                ("bits", args.sweep_bits),
                ("schemes", args.schemes),
                ("weight_modes", args.weight_modes),
                ("methods", args.methods),
            )
            if v
        }
        sweep = from_dict(QuantSweepConfig, sweep_table, "quantize.sweep")
    return config, sweep


def quantize_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.quant.sweep import print_sweep
    from tinykws.quant.workflow import metrics_of, quantize_file

    config, sweep = quant_config_from_args(args)
    summary = quantize_file(args.model, args.data, args.out, config, sweep, args.cache_dir)
    metrics = metrics_of(summary)
    for key, value in metrics.items():
        print(f"{key}: {_format(key, value)}")
    if sweep is not None:
        print_sweep(json.loads((Path(args.out) / "sweep.json").read_text())["rows"])
    print(f"written: {args.out}")
    return 0


def _format(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "accuracy_drop":
        return f"{100 * value:.2f} points"
    if "accuracy" in key or "agreement" in key:
        return f"{100 * value:.2f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def compare_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.compare import compare, print_comparison

    result = compare(
        args.model_a,
        args.model_b,
        args.data,
        args.split,
        (args.backend_a, args.backend_b),
        args.cache_dir,
    )
    print_comparison(result)
    if args.json_out:
        write_json(args.json_out, result)
    return 0
