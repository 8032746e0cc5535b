"""A pruning sweep: prune at several amounts, each with and without retraining, and plot accuracy
against parameters, MACs and measured batch-1 latency.

Without retraining, accuracy falls off a cliff well before the network is that much smaller;
with it, most of the accuracy comes back.
"""

from __future__ import annotations

from torch import nn

from tinykws.errors import TinyKWSError
from tinykws.io import save_figure, write_json
from tinykws.log import logger
from tinykws.plots import pyplot
from tinykws.progress import track
from tinykws.prune.config import PruneConfig
from tinykws.prune.measure import model_figures, torch_latency_ms, validation_accuracy
from tinykws.prune.methods import PRUNERS
from tinykws.prune.retrain import retrain
from tinykws.prune.unstructured import finalize


def sweep(model: nn.Module, config, data, out_dir=None, stem: str = "sweep", mcu_time=None) -> dict:
    """Prune `model` at each of `config.amounts`, with and without retraining (the run of
    `config.fine_tune`, the recipe's `[prune.sweep.fine_tune]` table).

    Args:
        model: the trained model (not changed).
        config: a `PruneSweepConfig`.
        data: a `TrainingData` (validation accuracy and retraining).
        out_dir: where <stem>.json and <stem>.png go (nothing written when None).
        stem: the file names' stem ("sweep", or "sweep-<name>" among several sweeps).
        mcu_time: None, or a callable (model -> {"ms", "source"}) giving the microcontroller
            time of a model as deployed (`tinykws.run.pruning.sweep_mcu_time`); measured on the
            unpruned model and on each fine-tuned point ("mcu_ms", "mcu_source").

    Returns:
        {"name", "method", "scope", "baseline": figures, "rows": [one figures dict per amount with
        "amount", "val_accuracy", "val_accuracy_fine_tuned", "latency_ms"]}.
    """
    if data is None:
        raise TinyKWSError("a pruning sweep measures accuracy; give it data (--data)")
    baseline = _measure(model, data, config) | _mcu(mcu_time, model)
    rows = []
    for amount in track(config.amounts, f"{config.label} sweep"):
        rows.append({"amount": amount, **_sweep_point(model, config, data, amount, mcu_time)})
        logger.info(
            f"sweep {amount:.2f}: accuracy {rows[-1]['val_accuracy']:.4f} without, "
            f"{rows[-1]['val_accuracy_fine_tuned']:.4f} with retraining"
        )
    result = {"name": config.label, "method": config.method, "scope": config.scope}
    result |= {"baseline": baseline, "rows": rows}
    if out_dir is not None:
        write_json(out_dir / f"{stem}.json", result)
        plot_sweep(result, out_dir / f"{stem}.png")
    return result


def _sweep_point(model, config, data, amount: float, mcu_time=None) -> dict:
    cfg = PruneConfig(
        method=config.method, amount=amount, scope=config.scope, retrain_enabled=False
    )
    pruned, _ = PRUNERS[config.method](model, cfg, data)
    point = _measure(pruned, data, config)
    retrain(pruned, data, config.fine_tune)
    finalize(pruned)
    point["val_accuracy_fine_tuned"] = _measure(pruned, data, config, latency=False)["val_accuracy"]
    return point | _mcu(mcu_time, pruned)


def _mcu(mcu_time, model) -> dict:
    if mcu_time is None:
        return {}
    figures = mcu_time(model)
    return {"mcu_ms": figures["ms"], "mcu_source": figures["source"]}


def _measure(model, data, config, latency: bool = True) -> dict:
    figures = model_figures(model) | {"val_accuracy": validation_accuracy(model, data)}
    if latency:
        figures["latency_ms"] = torch_latency_ms(model, runs=config.latency_runs)
    return figures


def plot_sweep(result: dict, out_png) -> None:
    """Accuracy vs the pruning amount (the threshold), non-zero parameters, MACs, batch-1 latency
    on this PC and, when measured, the microcontroller time; without and with fine-tuning on
    each panel, the unpruned model as a star."""
    plt = pyplot()
    rows, base = result["rows"], {"amount": 0.0, **result["baseline"]}
    panels = [
        ("amount", "pruning amount (threshold)"),
        ("nonzero_params", "parameters (non-zero)"),
        ("macs", "MACs"),
        ("latency_ms", "batch-1 latency, this PC (ms)"),
    ]
    if "mcu_ms" in base:
        panels.append(("mcu_ms", f"microcontroller time (ms)\n{base['mcu_source']}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, (key, label) in zip(axes, panels):
        xs = [r[key] for r in rows]
        ax.plot(xs, [100 * r["val_accuracy"] for r in rows], "o-", label="pruned")
        ax.plot(
            xs,
            [100 * r["val_accuracy_fine_tuned"] for r in rows],
            "s-",
            label="pruned + fine-tuned",
        )
        ax.plot([base[key]], [100 * base["val_accuracy"]], "k*", ms=12, label="original")
        for r, x in zip(rows, xs):
            ax.annotate(
                f"{r['amount']:.2f}",
                (x, 100 * r["val_accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set(xlabel=label, ylabel="validation accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    name = result.get("name", result["method"])
    title = f"{result['method']} pruning ({result['scope']})"
    if name != result["method"]:
        title = f"{name}: {title}"
    fig.suptitle(f"{title}: accuracy vs size and speed")
    save_figure(fig, out_png)
