"""The study figures of report.html, drawn from what the run wrote.

The reference studies (DESIGN.md) publish three kinds of picture; each is drawn only when the
run has what it needs, so a run without it shows nothing for that figure:

- one "yes" and one "no" clip of the run's data (or the first two command words when the labels
  have no yes/no) as waveform, magnitude spectrum, spectrogram, band spectrogram and MFCC, with
  the run's front end (needs data/summary.json and the dataset folder it names);
- learnables and parameter memory of the original, pruned and quantized models, in total
  (quantize/summary.json, else prune/summary.json) and per layer, BatchNorm folded into its
  conv as on the device (the models' checkpoints);
- the emulated Cortex-M4 time of one inference split into front end, network and
  post-processing (the softmax, when the graph has one, and the output copy), when the C
  export measured it (export/c/mcu.json). Instruction counts become milliseconds at one
  instruction per cycle at the recipe's `check.mcu_clock`: an estimate, labelled as one.

The pictures are written to report/ in the run directory and inlined in the page.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from tinykws.config import load_toml
from tinykws.data.layout import audio_files
from tinykws.errors import TinyKWSError
from tinykws.io import save_figure
from tinykws.log import logger
from tinykws.measure.check import CheckConfig, parse_hz
from tinykws.measure.metrics import read_mcu
from tinykws.models.fold import layer_weight_bias
from tinykws.models.trace import WEIGHTED, trace_steps
from tinykws.plots import pyplot
from tinykws.quant.files import load_quantized
from tinykws.quant.sizes import packed_bytes
from tinykws.report.blocks import image, read_json, table
from tinykws.report.clip import plot_clip
from tinykws.train.model_file import load_float_model

FIGURES_DIR = "report"
CLIP_WORDS = ("yes", "no")
MODEL_FILES = {
    "original": "train/best.safetensors",
    "pruned": "prune/pruned.safetensors",
    "quantized": "quantize/model.safetensors",
}
MODEL_COLORS = {"original": "#4c72b0", "pruned": "#dd8452", "quantized": "#55a868"}
MCU_FILE = "export/c/mcu.json"
POST_PROCESSING = ("SOFTMAX", "output copy")  # per_op labels that start like these


def study_section(run_dir: str | Path) -> str:
    """HTML of the study figures ("" when the run has none of them)."""
    run_dir = Path(run_dir)
    parts = [clip_figures(run_dir), size_figures(run_dir), mcu_time_figure(run_dir)]
    body = "".join(parts)
    return "<h2>Study figures</h2>" + body if body else ""


def recipe_table(run_dir: Path, name: str) -> dict:
    """One table of the run's recipe.toml ({} when the run has no recipe or no such table)."""
    path = run_dir / "recipe.toml"
    if not path.is_file():
        return {}
    table_ = load_toml(path).get(name, {})
    return table_ if isinstance(table_, dict) else {}


# -- clips --------------------------------------------------------------------------------


def clip_words(labels: list[str], root: Path) -> list[str]:
    """ "yes" and "no" when both are labels with clips, else the first two command words that
    have clips (labels starting with "_" are not words)."""
    words = [w for w in labels if not w.startswith("_") and audio_files(root / w)]
    if all(w in words for w in CLIP_WORDS):
        return list(CLIP_WORDS)
    return words[:2]


def clip_figures(run_dir: Path) -> str:
    """The five-panel picture of a "yes" and a "no" clip with the run's front end."""
    summary = read_json(run_dir / "data" / "summary.json")
    if not summary or not Path(summary["root"]).is_dir():
        return ""
    root = Path(summary["root"])
    frontend = recipe_table(run_dir, "frontend") or "logmel"
    parts = []
    for word in clip_words(summary["labels"], root):
        clip = root / word / audio_files(root / word)[0]  # the first clip in sorted order
        out = run_dir / FIGURES_DIR / f"clip_{word}.png"
        try:
            plot_clip(clip, out, frontend)
        except TinyKWSError as exc:  # a damaged clip costs its picture, not the report
            logger.warning(f"report: no picture of {clip}: {exc}")
            continue
        parts.append(image(out, f"clip {word}"))
    if not parts:
        return ""
    return "<h3>Clips of the data, as the front end sees them</h3>" + "".join(parts)


# -- learnables and parameter memory ---------------------------------------------------------


def total_sizes(run_dir: Path) -> dict[str, dict]:
    """{model: {"learnables", "bytes"}} in total: the quantize stage's sizes (original /
    [pruned] / quantized), else the prune stage's before / after; {} when neither ran."""
    quantize = read_json(run_dir / "quantize" / "summary.json")
    if quantize:
        return {
            name: {"learnables": s["learnables"], "bytes": s["total_bytes"]}
            for name, s in quantize["sizes"].items()
        }
    prune = read_json(run_dir / "prune" / "summary.json")
    if not prune or "before" not in prune:
        return {}
    return {
        name: {
            "learnables": prune[key].get("nonzero_params", prune[key]["params"]),
            "bytes": prune[key]["param_bytes"],
        }
        for name, key in (("original", "before"), ("pruned", "after"))
        if "param_bytes" in prune.get(key, {})
    }


def layer_sizes(net, weight_bits: int = 32) -> dict[str, tuple[int, int]]:
    """{layer path: (learnables, bytes)} of every conv / linear layer of `net`, BatchNorm folded
    in (as deployed): weights packed at `weight_bits` (float32 at 32), biases 4 bytes each
    (int32 or float32)."""
    sizes = {}
    for step in trace_steps(net).steps:
        if step.kind not in WEIGHTED:
            continue
        weight, bias = layer_weight_bias(net, step)
        weight_bytes = 4 * weight.numel() if weight_bits == 32 else None
        if weight_bytes is None:
            weight_bytes = packed_bytes(weight.numel(), weight_bits)
        sizes[step.module] = (weight.numel() + bias.numel(), weight_bytes + 4 * bias.numel())
    return sizes


def model_layer_sizes(run_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """{model: layer_sizes} of each model the run wrote (original, pruned, quantized)."""
    out = {}
    for name, relpath in MODEL_FILES.items():
        path = run_dir / relpath
        if not path.is_file():
            continue
        try:
            if name == "quantized":
                quantized, _ = load_quantized(path)
                net, bits = quantized.module.net, quantized.config.weight_bits
            else:
                (net, _), bits = load_float_model(path), 32
            out[name] = layer_sizes(net, bits)
        except TinyKWSError:  # a model that does not trace has no per-layer figure
            continue
    return out


def size_figures(run_dir: Path) -> str:
    """Bar charts of learnables and parameter memory per model, in total and per layer."""
    totals = total_sizes(run_dir)
    per_layer = model_layer_sizes(run_dir)
    if not totals and not per_layer:
        return ""
    out = run_dir / FIGURES_DIR
    parts = ["<h3>Learnables and parameter memory</h3>"]
    if totals:
        plot_totals(totals, out / "sizes_total.png")
        parts.append(image(out / "sizes_total.png", "sizes in total"))
        rows = [[n, f"{s['learnables']:,}", f"{s['bytes']:,}"] for n, s in totals.items()]
        parts.append(table(["model", "learnables", "parameter memory (bytes)"], rows))
    if per_layer:
        plot_per_layer(per_layer, out / "sizes_per_layer.png")
        parts.append(image(out / "sizes_per_layer.png", "sizes per layer"))
        parts.append(
            "<p class='note'>Per layer: conv / linear layers with their BatchNorm folded in, as "
            "deployed; quantized weights at their stored width, biases 4 bytes each.</p>"
        )
    return "".join(parts)


def plot_totals(totals: dict[str, dict], out_png: Path) -> None:
    """Two bar charts side by side: learnables and parameter memory (kB) per model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    names = list(totals)
    for ax, key, scale, label in (
        (axes[0], "learnables", 1, "learnables"),
        (axes[1], "bytes", 1024, "parameter memory (kB)"),
    ):
        values = [totals[n][key] / scale for n in names]
        bars = ax.bar(names, values, color=[MODEL_COLORS.get(n, "#8172b3") for n in names])
        ax.bar_label(bars, labels=[f"{v:,.1f}" if scale > 1 else f"{v:,.0f}" for v in values])
        ax.set(title=f"{label}, in total", ylabel=label)
        ax.margins(y=0.15)
    save_figure(fig, out_png)


def plot_per_layer(per_layer: dict[str, dict[str, tuple[int, int]]], out_png: Path) -> None:
    """Grouped bars per layer (one colour per model): learnables above, bytes below."""
    plt = pyplot()
    layers = list(dict.fromkeys(layer for sizes in per_layer.values() for layer in sizes))
    x = np.arange(len(layers))
    width = 0.8 / len(per_layer)
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.7 * len(layers) + 2), 6), sharex=True)
    for k, (model, sizes) in enumerate(per_layer.items()):
        for row, ax in enumerate(axes):
            values = [sizes.get(layer, (0, 0))[row] for layer in layers]
            offset = (k - (len(per_layer) - 1) / 2) * width
            ax.bar(x + offset, values, width, label=model, color=MODEL_COLORS.get(model))
    axes[0].set(ylabel="learnables", title="per layer (BatchNorm folded)")
    axes[1].set(ylabel="parameter memory (bytes)")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(x, layers, rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_png)


# -- Cortex-M4 time ------------------------------------------------------------------------


def mcu_breakdown(mcu: dict) -> dict[str, int]:
    """Instructions of one inference as {"front end", "network", "post-processing"}: the
    front end step, every graph op but the softmax (with the input copy), and the softmax (if
    any) with the output copy."""
    parts = dict.fromkeys(("front end", "network", "post-processing"), 0)
    for step in mcu["per_op"]:
        label, count = step["label"], int(step["instructions"])
        if label == "front end":
            parts["front end"] += count
        elif label.startswith(POST_PROCESSING):
            parts["post-processing"] += count
        else:
            parts["network"] += count
    return parts


def mcu_time_figure(run_dir: Path) -> str:
    """The Cortex-M4 time of one inference by part, when the C export measured it."""
    mcu = read_mcu(run_dir / Path(MCU_FILE).parent)
    if mcu is None or not mcu.get("per_op"):
        return ""
    check = recipe_table(run_dir, "check")
    clock_hz = parse_hz(check.get("mcu_clock", CheckConfig().mcu_clock))
    parts = mcu_breakdown(mcu)
    ms = {name: n / clock_hz * 1e3 for name, n in parts.items()}
    out = run_dir / FIGURES_DIR / "mcu_time.png"
    plot_mcu_time(ms, clock_hz, out)
    rows = [[n, f"{parts[n]:,}", f"{ms[n]:.2f}"] for n in parts]
    rows.append(["total", f"{sum(parts.values()):,}", f"{sum(ms.values()):.2f}"])
    note = (
        f"Estimate: instructions counted on an emulated Cortex-M4 "
        f"({html.escape(str(mcu.get('emulator', 'qemu')))}), one instruction per cycle at "
        f"{clock_hz / 1e6:g} MHz; a real core with wait states takes longer."
    )
    return (
        "<h3>Cortex-M4 time per inference (estimate)</h3>"
        + image(out, "Cortex-M4 time")
        + table(["part", "instructions", "ms (estimate)"], rows)
        + f"<p class='note'>{note}</p>"
    )


def plot_mcu_time(ms: dict[str, float], clock_hz: float, out_png: Path) -> None:
    """One stacked horizontal bar: front end / network / post-processing in ms."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.8), layout="constrained")
    left = 0.0
    for (name, value), color in zip(ms.items(), ("#dd8452", "#4c72b0", "#55a868")):
        ax.barh([0], [value], left=left, color=color, label=f"{name} {value:.2f} ms")
        left += value
    ax.set_yticks([])
    ax.set_xlabel(f"ms per inference (estimate: 1 instruction per cycle at {clock_hz / 1e6:g} MHz)")
    ax.set_title(f"Cortex-M4 (emulated): {left:.2f} ms per inference")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6), ncol=3)
    save_figure(fig, out_png)
