"""Trained tiny models of every family on the tone corpus, their integer graphs, and runners for
the export tests (shared, cached per test session)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from tinykws.models import build_model, config_to_dict, model_config

FRONTEND = "micro"  # 49 x 40, the fastest numpy front end
INPUT_SHAPE = (49, 40)
# One small configuration per family, all on 49 x 40 features. cnn3 with SAME padding has a
# ZeroPad2d before a stride-2 conv (explicit pads -> PAD in TFLite) and a flatten of a 2-D map.
FAMILIES = {
    "tinyconv": {"family": "tinyconv", "filters": 6},
    "dscnn": {"family": "dscnn", "first_filters": 8, "block_filters": (8, 6)},
    "commandnet": {"family": "commandnet", "filters": (4, 6, 8, 8, 6)},
    "cnn3": {"family": "cnn3", "filters": (4, 6, 8), "dense_units": 8, "padding": "same"},
    "cnn3_gap": {"preset": "cnn3_gap", "filters": (4, 6, 8), "dense_units": 8},
    "bcresnet": {
        "family": "bcresnet",
        "head_channels": 6,
        "stage_channels": (4, 4, 6, 6),
        "classifier_channels": 8,
        "stage_blocks": (1, 1, 1, 1),
    },
}
LOWERABLE = list(FAMILIES)  # every family has an integer graph


@dataclass
class ToneData:
    """Tone-corpus features: un-normalised (N, 49, 40), model inputs (N, 1, 49, 40), labels."""

    labels: tuple[str, ...]
    meta: dict
    normalization: object
    train: np.ndarray
    train_y: np.ndarray
    validation: np.ndarray
    validation_y: np.ndarray

    def inputs(self, split: str) -> np.ndarray:
        """Normalised model inputs (N, 1, frames, bins), computed as every predictor does."""
        from tinykws.quant.data import feature_batches

        features = self.train if split == "train" else self.validation
        return np.concatenate([b.numpy() for b in feature_batches(features, self.normalization)])


@functools.lru_cache(maxsize=1)
def _tone_data(root: str) -> ToneData:
    from tinykws.data.speech_commands import DataConfig, load_dataset, load_waveforms
    from tinykws.features.batch import compute_features
    from tinykws.features.frontend import FrontEnd, Normalization, frontend_config

    data_config = DataConfig(preset="12", unknown_fraction=1.0)
    dataset = load_dataset(root, data_config)
    fe = FrontEnd(frontend_config(FRONTEND))
    arrays = {}
    for split in ("train", "validation"):
        clips = dataset.clips(split)
        features = compute_features(load_waveforms(clips), fe)
        arrays[split] = (features, np.array([dataset.labels.index(c.label) for c in clips]))
    norm = Normalization.fit(arrays["train"][0])
    from tinykws.config import to_dict

    meta = {
        "labels": list(dataset.labels),
        "frontend": FRONTEND,
        "normalization": {"mean": list(norm.mean), "std": list(norm.std)},
        "data": to_dict(data_config),
    }
    return ToneData(
        tuple(dataset.labels),
        meta,
        norm,
        arrays["train"][0],
        arrays["train"][1],
        arrays["validation"][0],
        arrays["validation"][1],
    )


def tone_data(tone_corpus) -> ToneData:
    """The tone corpus's features (cached); test modules wrap it in a `tone` fixture."""
    return _tone_data(str(tone_corpus))


def train_quickly(model, data: ToneData, epochs: int = 30, seed: int = 0):
    """A few epochs of Adam on the tone corpus (enough for clear margins between classes)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(data.inputs("train"))
    y = torch.from_numpy(data.train_y)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@functools.cache
def _trained(root: str, family: str):
    data = _tone_data(root)
    with _one_thread():
        torch.manual_seed(0)  # initial weights independent of which test asked first
        model = build_model(model_config(FAMILIES[family], len(data.labels), INPUT_SHAPE))
        return train_quickly(model, data)


class _one_thread:
    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def trained_model(tone_corpus, family: str):
    """A trained tiny model of `family` (cached: do not modify it)."""
    return _trained(str(tone_corpus), family)


@functools.cache
def _quantized(root: str, family: str, weight_bits: int, method: str):
    from tinykws.quant import QuantConfig, QuantData, quantize

    data = _tone_data(root)
    model = _trained(root, family)
    with _one_thread():
        return quantize(
            model,
            QuantConfig(method=method, weight_bits=weight_bits),
            QuantData(data.train, data.normalization),
        )


def quantized_model(tone_corpus, family: str, weight_bits: int = 8, method: str = "ptq"):
    """The PTQ (or dynamic) model of `trained_model(family)`, calibrated on the train split."""
    return _quantized(str(tone_corpus), family, weight_bits, method)


def int8_graph(tone_corpus, family: str, weight_bits: int = 8):
    """The integer graph of `quantized_model`, with the model's metadata."""
    from tinykws.quant.lower import lower

    graph = lower(quantized_model(tone_corpus, family, weight_bits))
    graph.metadata.update(_tone_data(str(tone_corpus)).meta)
    return graph


def checkpoint_meta(model, data: ToneData) -> dict:
    """What a trained checkpoint carries."""
    return {"model": config_to_dict(model.config), **data.meta, "recipe": "tones"}


def save_float(tone_corpus, family: str, path):
    """Write the trained model as a checkpoint; returns the path."""
    from tinykws.checkpoint import save_checkpoint

    model = trained_model(tone_corpus, family)
    save_checkpoint(path, model.state_dict(), checkpoint_meta(model, _tone_data(str(tone_corpus))))
    return path


def save_quantized(tone_corpus, family: str, path, weight_bits: int = 8, method: str = "ptq"):
    """Write the quantized model (and its graph) as `tinykws quantize` does; returns the path."""
    from tinykws.quant.files import save_quantized as save
    from tinykws.quant.scoring import lower_if_possible

    model = trained_model(tone_corpus, family)
    quantized = quantized_model(tone_corpus, family, weight_bits, method)
    meta = checkpoint_meta(model, _tone_data(str(tone_corpus)))
    return save(path, quantized, meta, lower_if_possible(quantized))


def litert_outputs(data: bytes, inputs: np.ndarray, reference: bool) -> np.ndarray:
    """Raw outputs (the file's dtype) of a .tflite on every sample of `inputs` (file dtype)."""
    from tinykws.measure.runtimes import TFLiteRunner

    runner = TFLiteRunner(data, "BUILTIN_REF" if reference else "AUTO")
    return runner.run_raw(inputs)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
