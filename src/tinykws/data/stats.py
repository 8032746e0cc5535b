"""A dataset at a glance: clips per split and class, and the training class weights."""

from __future__ import annotations

from typing import Any

from tinykws.data.speech_commands import Dataset


def stats_rows(dataset: Dataset) -> list[dict[str, Any]]:
    """One row per label (plus a "total" row): counts per split, their sum, and the class weight.

    Example:
        >>> # rows[0] == {"label": "yes", "train": 529, "validation": 69, "test": 2,
        >>> #             "total": 600, "weight": 0.647}
    """
    names = list(dataset.splits)
    counts = {name: dataset.class_counts(name) for name in names}
    # Weights of the first split with clips: train, or "test" for an official test-set folder.
    weight_split = next((name for name in names if dataset.splits[name]), names[0])
    weights = dataset.class_weights(weight_split)
    rows = []
    for i, label in enumerate(dataset.labels):
        row: dict[str, Any] = {"label": label}
        row.update({name: counts[name][label] for name in names})
        row["total"] = sum(counts[name][label] for name in names)
        row["weight"] = float(weights[i])
        rows.append(row)
    total: dict[str, Any] = {"label": "total"}
    total.update({name: len(dataset.splits[name]) for name in names})
    total["total"] = sum(len(clips) for clips in dataset.splits.values())
    total["weight"] = None
    return [*rows, total]


def stats_table(dataset: Dataset):
    """The rows of `stats_rows` as a rich Table, titled with the folder and how it was split."""
    from rich.table import Table

    rows = stats_rows(dataset)
    title = (
        f"{dataset.root}\nsplit: {dataset.split_source}, "
        f"{len(dataset.noise_files)} background recordings"
    )
    table = Table(title=title)
    columns = [key for key in rows[0] if key != "label"]
    table.add_column("label")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        if row["label"] == "total":
            table.add_section()
        cells = [_cell(row[column]) for column in columns]
        table.add_row(row["label"], *cells)
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
