"""Verb: prune (Taylor, L1/L2/Linf channel pruning, unstructured and gradual magnitude)."""

from __future__ import annotations

from pathlib import Path

from tinykws.cli._common import add_verb, comma_floats
from tinykws.data.augment_config import AugmentConfig
from tinykws.errors import TinyKWSError

PRUNE_HELP = """\
Prune a trained model and write the smaller model as a new checkpoint.

methods:
  taylor     remove filters with the lowest |activation x gradient| (Molchanov et al.),
             8 at a time over 16 rounds of 50 fine-tuning mini-batches (needs --data)
  l1|l2|linf remove --amount of the channels whose filters have the lowest norm
  magnitude  zero --amount of the smallest weights (same shape; zeros stay zero while fine-tuning)
  gradual    zero weights gradually while training for --fine-tune-epochs (0.5 -> 0.85 sparsity)

Channel pruning (taylor, l1, l2, linf) removes channels physically, with everything coupled to
them (BatchNorm, depthwise filters, FC inputs, residual branches), so the new model is smaller and
faster and loads from its own config. --amounts runs a sweep instead: each amount with and
without fine-tuning, accuracy plotted against parameters, MACs and batch-1 latency in OUT/.

examples:
  tinykws prune runs/real10 --method taylor --data ~/speech_commands \\
      --out real10_taylor.safetensors --fine-tune-epochs 30
  tinykws prune model.safetensors --method l1 --amount 0.5 --out model_l1.safetensors
  tinykws prune model.safetensors --method l1 --data ~/speech_commands \\
      --amounts 0.1,0.2,0.35,0.5,0.65 --out sweep_l1/
"""


def register(subparsers) -> None:
    p = add_verb(
        subparsers,
        "prune",
        "prune a model (taylor, l1, l2, linf, magnitude, gradual)",
        prune_verb,
        PRUNE_HELP,
    )
    p.add_argument("model", help="checkpoint (.safetensors) or run directory")
    p.add_argument(
        "--method", required=True, choices=["taylor", "l1", "l2", "linf", "magnitude", "gradual"]
    )
    p.add_argument(
        "--data",
        help="the Speech Commands-layout folder the model was trained on "
        "(needed by taylor, gradual, --amounts and fine-tuning)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="new checkpoint (.safetensors); with --amounts, a folder for sweep.json and sweep.png",
    )
    p.add_argument(
        "--amount",
        type=float,
        default=0.5,
        help="fraction of channels (l1/l2/linf) or weights (magnitude), in [0, 1); default 0.5",
    )
    p.add_argument(
        "--amounts",
        type=comma_floats,
        metavar="A,B,...",
        help="sweep these amounts, each with and without fine-tuning",
    )
    p.add_argument(
        "--scope",
        choices=["layer", "global"],
        default="layer",
        help="rank within each layer (default) or over the whole network",
    )
    _add_fine_tune_options(p)
    _add_taylor_options(p)
    p.add_argument(
        "--cache-dir",
        help="where decoded audio and features are cached "
        "(default: ~/.cache/tinykws, or $TINYKWS_CACHE)",
    )


def _add_fine_tune_options(p) -> None:
    p.add_argument(
        "--fine-tune-epochs",
        type=int,
        metavar="N",
        help="retrain after pruning for N epochs (default 0; 10 for --amounts and gradual)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (Adam)")
    p.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    p.add_argument(
        "--monitor",
        choices=["val_accuracy", "val_loss"],
        default="val_accuracy",
        help="fine-tuning keeps the epoch with the best validation accuracy (default) or the "
        "lowest validation loss",
    )
    p.add_argument(
        "--distill",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="fine-tune with the unpruned model as teacher: WEIGHT of the distillation loss "
        "in [0, 1] (e.g. 0.7; default 0 = labels only)",
    )
    p.add_argument(
        "--unknown-weight",
        type=float,
        help="multiply the loss weight of _unknown_ while fine-tuning and scoring "
        "(default: the value the model was trained with, else 1)",
    )
    p.add_argument(
        "--no-augment",
        action="store_true",
        help="fine-tune on clean cached features (default: the model's training augmentation)",
    )


def _add_taylor_options(p) -> None:
    p.add_argument("--max-iterations", type=int, default=16, help="taylor: pruning rounds")
    p.add_argument("--max-to-prune", type=int, default=8, help="taylor: filters per round")
    p.add_argument(
        "--target-macs",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="taylor: stop once this fraction of the MACs is removed, e.g. 0.5 "
        "(default: run every round)",
    )
    p.add_argument(
        "--minibatches", type=int, default=50, help="taylor: fine-tuning mini-batches per round"
    )
    p.add_argument(
        "--taylor-batch-size", type=int, default=128, help="taylor: clips per mini-batch"
    )


def prune_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.train.model_file import load_float_model, resolve_model_path

    sweeping = bool(args.amounts)
    model, meta = load_float_model(resolve_model_path(args.model))
    cfg = prune_config(args, sweeping, meta)
    needs_data = sweeping or args.method in ("taylor", "gradual") or cfg.retrain_enabled
    if needs_data and not args.data:
        raise TinyKWSError(f"--method {args.method} with these options needs --data ROOT")
    out = Path(args.out)
    if not sweeping and out.suffix != ".safetensors":
        raise TinyKWSError(f"--out {out}: the pruned model is a .safetensors file")
    if sweeping and out.exists() and not out.is_dir():
        raise TinyKWSError(f"--out {out}: a sweep writes into a folder; this is a file")
    data = None
    if args.data:
        # lazy: pulls torch
        from tinykws.cache import DEFAULT_CACHE_DIR
        from tinykws.prune.data import training_data_for

        data = training_data_for(meta, args.data, args.cache_dir or DEFAULT_CACHE_DIR)
    if sweeping:
        return run_sweep(model, meta, cfg, data, out)
    return run_prune(model, meta, cfg, data, out)


def prune_config(args, sweeping: bool, meta: dict):
    """The `PruneConfig` (with a `PruneSweepConfig` when sweeping) the arguments describe;
    fine-tuning defaults to the augmentation and `_unknown_` weight of the model's training
    (`meta`)."""
    # lazy: pulls torch
    from tinykws.prune.config import PruneConfig, PruneSweepConfig, TaylorConfig
    from tinykws.train.loop import TrainConfig
    from tinykws.train.state import recorded_training

    augment, unknown_weight = recorded_training(meta)
    if args.no_augment:
        augment = AugmentConfig(enabled=False)
    if args.unknown_weight is not None:
        unknown_weight = args.unknown_weight
    default_epochs = 10 if sweeping or args.method == "gradual" else 0
    epochs = default_epochs if args.fine_tune_epochs is None else args.fine_tune_epochs
    fine_tune = TrainConfig(
        epochs=max(epochs, 1),
        batch_size=args.batch_size,
        optimizer="adam",
        lr=args.lr,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
        unknown_weight=unknown_weight,
        distill_weight=args.distill,
        augment=augment,
        monitor=args.monitor,
    )
    taylor = TaylorConfig(
        unknown_weight=unknown_weight,
        max_iterations=args.max_iterations,
        max_to_prune=args.max_to_prune,
        minibatches=args.minibatches,
        batch_size=args.taylor_batch_size,
        target_macs=args.target_macs,
    )
    sweep = None
    if sweeping:
        sweep = PruneSweepConfig(
            method=args.method, amounts=args.amounts, scope=args.scope, fine_tune=fine_tune
        )
    return PruneConfig(
        method=args.method,
        amount=args.amount,
        scope=args.scope,
        taylor=taylor,
        retrain=fine_tune,
        retrain_enabled=epochs > 0,
        sweep=sweep,
    )


def run_prune(model, meta, cfg, data, out: Path) -> int:
    # lazy: pulls torch
    from tinykws.run.pruning import PruneJob, run_prune_job

    job = PruneJob(
        model=model,
        meta=meta,
        config=cfg,
        data=data,
        checkpoint=out,
        summary=out.with_suffix(".json"),
        taylor_plot=out.with_suffix(".taylor.png"),
    )
    print_summary(run_prune_job(job)["pruned"], out)
    return 0


def run_sweep(model, meta: dict, cfg, data, out: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    # lazy: pulls torch
    from tinykws.run.pruning import run_sweeps

    (result,) = run_sweeps(model, cfg.sweep[:1], data, out, meta)["sweeps"]
    table = Table(
        "amount",
        "params",
        "MACs",
        "latency ms",
        "MCU ms",
        "accuracy",
        "fine-tuned",
        title=f"{cfg.method} sweep ({cfg.scope})",
    )
    rows = [
        {
            "amount": 0.0,
            **result["baseline"],
            "val_accuracy_fine_tuned": result["baseline"]["val_accuracy"],
        },
        *result["rows"],
    ]
    for r in rows:
        table.add_row(
            f"{r['amount']:.2f}",
            f"{r['nonzero_params']:,}",
            f"{r['macs']:,}",
            f"{r['latency_ms']:.3f}",
            f"{r['mcu_ms']:.3f}" if "mcu_ms" in r else "-",
            f"{r['val_accuracy']:.4f}",
            f"{r['val_accuracy_fine_tuned']:.4f}",
        )
    console = Console()
    console.print(table)
    if "mcu_ms" in result["baseline"]:
        console.print(f"MCU ms: {result['baseline']['mcu_source']}")
    console.print(f"plot: {out / 'sweep.png'}")
    return 0


def print_summary(summary: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "before", "after", title=f"{summary['method']} pruning")
    for key in ("params", "nonzero_params", "param_bytes", "macs", "val_accuracy"):
        if f"{key}_before" in summary:
            before, after = summary[f"{key}_before"], summary[f"{key}_after"]
            fmt = "{:.4f}" if key == "val_accuracy" else "{:,}"
            table.add_row(key, fmt.format(before), fmt.format(after))
    console = Console()
    console.print(table)
    console.print(f"MACs removed: {summary['macs_removed']:.1%}; wrote {out}")
