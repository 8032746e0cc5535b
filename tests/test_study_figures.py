"""The study figures of report.html: drawn from what the run wrote, nothing for what it lacks."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from tinykws.models import build_model
from tinykws.report.html import write_report
from tinykws.report.study import (
    clip_words,
    layer_sizes,
    mcu_breakdown,
    study_section,
    total_sizes,
)

MCU = {
    "emulator": "qemu-system-arm",
    "instructions": 16_000,
    "per_op": [
        {"label": "front end", "instructions": 10_000},
        {"label": "input copy", "instructions": 200},
        {"label": "CONV_2D 'conv'", "instructions": 4_000},
        {"label": "FULLY_CONNECTED 'fc'", "instructions": 1_000},
        {"label": "SOFTMAX 'probabilities'", "instructions": 600},
        {"label": "output copy", "instructions": 200},
    ],
}


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_run_without_figures_shows_no_section(tmp_path):
    assert study_section(tmp_path) == ""
    write(tmp_path / "recipe.toml", 'name = "x"\n')
    assert "Study figures" not in write_report(tmp_path).read_text()


def test_mcu_time_is_split_into_front_end_network_and_post_processing(tmp_path):
    assert mcu_breakdown(MCU) == {"front end": 10_000, "network": 5_200, "post-processing": 800}
    write(tmp_path / "export" / "c" / "mcu.json", json.dumps(MCU))
    write(tmp_path / "recipe.toml", '[check]\nmcu_clock = "10MHz"\n')
    page = study_section(tmp_path)
    # 10,000 instructions at one per cycle at 10 MHz = 1.00 ms; 16,000 = 1.60 ms
    assert "<td>front end</td><td>10,000</td><td>1.00</td>" in page
    assert "<td>total</td><td>16,000</td><td>1.60</td>" in page
    assert "estimate" in page.lower()
    assert (tmp_path / "report" / "mcu_time.png").stat().st_size > 1000


def test_sizes_come_from_the_quantize_stage_else_the_prune_stage(tmp_path):
    prune = {
        "before": {"params": 1000, "nonzero_params": 1000, "param_bytes": 4000},
        "after": {"params": 1000, "nonzero_params": 300, "param_bytes": 4000},
    }
    write(tmp_path / "prune" / "summary.json", json.dumps(prune))
    assert total_sizes(tmp_path) == {
        "original": {"learnables": 1000, "bytes": 4000},
        "pruned": {"learnables": 300, "bytes": 4000},
    }
    sizes = {
        "original": {"learnables": 1000, "total_bytes": 4000},
        "pruned": {"learnables": 600, "total_bytes": 2400},
        "quantized": {"learnables": 600, "total_bytes": 900},
    }
    write(tmp_path / "quantize" / "summary.json", json.dumps({"sizes": sizes}))
    assert total_sizes(tmp_path)["quantized"] == {"learnables": 600, "bytes": 900}
    page = study_section(tmp_path)
    assert "<td>quantized</td><td>600</td><td>900</td>" in page
    assert (tmp_path / "report" / "sizes_total.png").is_file()


@pytest.mark.parametrize("bits", [32, 8, 4])
def test_layer_sizes_fold_batchnorm_and_pack_weights(bits):
    model = build_model({"family": "dscnn", "first_filters": 8, "block_filters": [8]})
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    sizes = layer_sizes(model, bits)
    assert len(sizes) == len(layers)
    for (learnables, n_bytes), layer in zip(sizes.values(), layers):
        weights, outputs = layer.weight.numel(), layer.weight.shape[0]
        assert learnables == weights + outputs  # one (folded) bias per output channel
        weight_bytes = 4 * weights if bits == 32 else math.ceil(weights * bits / 8)
        assert n_bytes == weight_bytes + 4 * outputs


def test_clip_words_prefer_yes_and_no(tone_corpus):
    labels = ["yes", "no", "up", "_unknown_", "_silence_"]
    assert clip_words(labels, tone_corpus) == ["yes", "no"]
    assert clip_words(["go", "stop"], tone_corpus) == ["go", "stop"]
    assert clip_words(["_unknown_", "absent", "up", "down"], tone_corpus) == ["up", "down"]


def test_clips_of_the_run_data_are_drawn(tone_corpus, tmp_path):
    summary = {"root": str(tone_corpus), "labels": ["go", "stop"]}
    write(tmp_path / "data" / "summary.json", json.dumps(summary))
    write(tmp_path / "recipe.toml", '[frontend]\npreset = "gostop"\n')
    page = study_section(tmp_path)
    assert page.count('alt="clip ') == 2
    assert (tmp_path / "report" / "clip_go.png").is_file()
    assert (tmp_path / "report" / "clip_stop.png").is_file()
    summary["root"] = str(tmp_path / "gone")  # data folder moved away: no clip figure
    write(tmp_path / "data" / "summary.json", json.dumps(summary))
    assert study_section(tmp_path) == ""


def test_a_damaged_clip_costs_its_picture_not_the_report(tone_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    write(corpus / "yes" / "a_nohash_0.wav", "not audio")
    (corpus / "no").mkdir()
    (corpus / "no" / "a_nohash_0.wav").write_bytes(
        sorted((tone_corpus / "no").iterdir())[0].read_bytes()
    )
    write(
        tmp_path / "data" / "summary.json",
        json.dumps({"root": str(corpus), "labels": ["yes", "no"]}),
    )
    page = study_section(tmp_path)
    assert 'alt="clip no"' in page and 'alt="clip yes"' not in page
