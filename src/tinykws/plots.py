"""Figures for runs: training curves, confusion matrix, bar charts. matplotlib is imported lazily
and uses the non-interactive Agg backend, so plotting works on headless machines."""

from __future__ import annotations

import os

import numpy as np

from tinykws.io import save_figure


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict, out_png: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, training vs validation, side by side."""
    plt = pyplot()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, history[f"train_{key}"], label="training")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    if history.get("best_epoch"):
        axes[1].axvline(history["best_epoch"], color="grey", ls="--", lw=0.8)
    save_figure(fig, out_png)


def confusion_summaries(confusion) -> tuple[np.ndarray, np.ndarray]:
    """(row summary, column summary) of a confusion matrix (rows true, columns predicted): the
    share of each row on its diagonal (per-class recall; confusionchart's RowSummary
    "row-normalized") and of each column (per-class precision; ColumnSummary
    "column-normalized"); 0 for an empty row or column.

    Example:
        >>> recall, precision = confusion_summaries([[3, 1], [0, 4]])
        >>> recall.tolist(), precision.tolist()
        ([0.75, 1.0], [1.0, 0.8])
    """
    cm = np.asarray(confusion, dtype=np.float64)
    rows, columns = cm.sum(axis=1), cm.sum(axis=0)
    recall = np.divide(np.diag(cm), rows, out=np.zeros(len(cm)), where=rows > 0)
    precision = np.divide(np.diag(cm), columns, out=np.zeros(len(cm)), where=columns > 0)
    return recall, precision


def plot_confusion(result: dict, out_png: str | os.PathLike, title: str = "") -> None:
    """Confusion chart (counts, shaded by row share) with MATLAB confusionchart's summaries:
    a row summary at the right (per true class, the share predicted correctly (recall) and
    wrongly; "row-normalized") and a column summary below (per predicted class, the share that
    was right (precision) and wrong; "column-normalized").

    Args:
        result: an evaluation (`tinykws.train.evaluate.evaluate`): labels, confusion, accuracy.
        out_png: where to save the figure.
        title: the figure's title (default: the split and its accuracy).
    """
    plt = pyplot()
    labels, cm = result["labels"], np.array(result["confusion"], dtype=np.float64)
    k = len(labels)
    recall, precision = confusion_summaries(cm)
    size = 0.55 * k + 3.0
    fig, ax = plt.subplots(figsize=(size + 1.5, size + 0.5))
    grid = np.full((k + 3, k + 3), np.nan)
    grid[:k, :k] = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
    summary = np.full((k + 3, k + 3, 4), 0.0)  # RGBA overlay: green right, red wrong
    rows, columns = cm.sum(1) > 0, cm.sum(0) > 0  # no summary for an empty row or column
    for i in range(k):
        if rows[i]:
            summary[i, k + 1] = (0.2, 0.6, 0.3, 0.25 + 0.75 * recall[i])
            summary[i, k + 2] = (0.8, 0.2, 0.2, 0.25 + 0.75 * (1 - recall[i]))
        if columns[i]:
            summary[k + 1, i] = (0.2, 0.6, 0.3, 0.25 + 0.75 * precision[i])
            summary[k + 2, i] = (0.8, 0.2, 0.2, 0.25 + 0.75 * (1 - precision[i]))
    ax.imshow(summary)
    _confusion_text(ax, cm, grid, recall, precision)
    ticks = [*range(k), k + 1, k + 2]
    ax.set_xticks(ticks, [*labels, "recall", "missed"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, [*labels, "precision", "wrong"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    default = f"{result.get('split', '')} accuracy {100 * result['accuracy']:.1f}%"
    ax.set_title(title or default)
    save_figure(fig, out_png)


def _confusion_text(ax, cm, shares, recall, precision) -> None:
    """Counts in the matrix, percentages in the summaries."""
    k = len(cm)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
        for offset, value in ((1, recall[i]), (2, 1 - recall[i])):
            if cm[i].sum():
                ax.text(k + offset, i, f"{100 * value:.0f}%", ha="center", va="center", fontsize=7)
        for offset, value in ((1, precision[i]), (2, 1 - precision[i])):
            if cm[:, i].sum():
                ax.text(i, k + offset, f"{100 * value:.0f}%", ha="center", va="center", fontsize=7)


def plot_bars(values: dict[str, float], ylabel: str, title: str, out_png) -> None:
    """One bar per entry (e.g. learnables of original / pruned / quantized), value on top."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(values) + 2, 3.2))
    bars = ax.bar(list(values), list(values.values()), color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values.values()], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, out_png)


def plot_mcu_ops(mcu: dict, out_png, min_share: float = 0.01) -> None:
    """Where the time goes on the emulated Cortex-M4: one horizontal bar per step of an
    inference (front end, each op, copies) in order, instructions in millions with the share
    of the total; steps under `min_share` of the total are merged into one last bar.

    Args:
        mcu: mcu.json figures (`tinykws.export.c.mcu.EmulatorRun.to_dict`).
        out_png: where to save the figure.
    """
    plt = pyplot()
    total = max(mcu["instructions"], 1)
    steps = [(s["label"], s["instructions"]) for s in mcu["per_op"]]
    shown = [(label, n) for label, n in steps if n >= min_share * total]
    rest = [n for _, n in steps if n < min_share * total]
    if rest:
        shown.append((f"{len(rest)} other steps (< {100 * min_share:g}% each)", sum(rest)))
    labels, values = [label for label, _ in shown], [n / 1e6 for _, n in shown]
    colors = ["#dd8452" if label == "front end" else "#4c72b0" for label in labels]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(shown) + 1.4))
    bars = ax.barh(range(len(shown)), values, color=colors)
    ax.bar_label(
        bars, labels=[f"{v:.2f} M ({100 * v * 1e6 / total:.0f}%)" for v in values], fontsize=7
    )
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("instructions per inference (millions)")
    ax.set_title(
        f"Cortex-M4 (emulated, {mcu.get('optimization', '-Os')}): "
        f"{mcu['instructions'] / 1e6:.2f} M instructions per inference"
    )
    ax.margins(x=0.2)
    save_figure(fig, out_png)
