"""Training throughput of DS-CNN-S: tinykws's `fit` vs a bare PyTorch loop over the same data.

Prints clips/s for one epoch of each (cached MFCC features, no augmentation), their ratio, and
the throughput with on-the-fly augmentation (waveforms -> torch front end). Both loops run in
the same process, so the ratio is meaningful on a noisy shared machine; absolute numbers are not.

    python benchmarks/train.py --clips 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from tinykws.data.augment import AugmentConfig
from tinykws.features.batch import compute_features
from tinykws.features.frontend import FrontEnd, Normalization, frontend_config
from tinykws.models import build_model, model_config
from tinykws.train.loop import TrainConfig, TrainingData, fit


def make_data(clips: int, augment: bool) -> TrainingData:
    rng = np.random.default_rng(0)
    fe = FrontEnd(frontend_config("mfcc"))
    waves = (rng.normal(0, 0.1, (clips, 16000)) * 32767).astype(np.int16)
    feats = compute_features(waves, fe)
    labels = rng.integers(0, 12, clips)
    return TrainingData(
        frontend=fe,
        normalization=Normalization.fit(feats),
        train_waves=waves,
        train_features=feats,
        train_labels=labels,
        val_features=feats[:200],
        val_labels=labels[:200],
        noise=rng.normal(0, 0.1, 160000).astype(np.float32),
        class_weights=np.ones(12, np.float32),
    )


def time_fit(data: TrainingData, batch: int, augment: bool) -> float:
    model = build_model(model_config("dscnn_s", 12, data.frontend.output_shape))
    cfg = TrainConfig(epochs=1, batch_size=batch, augment=AugmentConfig(enabled=augment))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        fit(model, data, cfg, out)
        return time.perf_counter() - start


def time_bare_loop(data: TrainingData, batch: int) -> float:
    model = build_model(model_config("dscnn_s", 12, data.frontend.output_shape))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats = data.normalization.apply_torch(torch.from_numpy(np.asarray(data.train_features)))
    labels = torch.from_numpy(data.train_labels)
    start = time.perf_counter()
    model.train()
    for i in range(0, len(labels), batch):
        opt.zero_grad()
        F.cross_entropy(model(feats[i : i + batch].unsqueeze(1)), labels[i : i + batch]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():  # fit also scores the validation split each epoch
        model(feats[:200].unsqueeze(1))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    data = make_data(args.clips, augment=False)
    n = args.clips
    bare = time_bare_loop(data, args.batch_size)
    ours = time_fit(data, args.batch_size, augment=False)
    augmented = time_fit(data, args.batch_size, augment=True)
    print(
        f"DS-CNN-S, {n} clips of 49x10 MFCC, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  bare PyTorch loop      {bare:6.2f} s/epoch  {n / bare:8.0f} clips/s")
    print(f"  tinykws fit (cached)   {ours:6.2f} s/epoch  {n / ours:8.0f} clips/s")
    print(f"  tinykws fit (augment)  {augmented:6.2f} s/epoch  {n / augmented:8.0f} clips/s")
    print(f"  ratio fit / bare loop (cached features): {bare / ours:.2f}x the bare throughput")


if __name__ == "__main__":
    main()
