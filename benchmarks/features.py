"""Front-end throughput: tinykws's batched torch path vs librosa clip by clip, same parameters.

Prints clips/s for the 98x40 log-mel preset (30 ms / 10 ms, 512-point FFT, 40 HTK mel bands,
ln(x + 1e-6)) computed by `batch_features` on batches, by librosa one clip at a time, and by the
numpy reference one clip at a time: the median and best rate over rounds that interleave the
paths, and the ratios of the medians. The ratios hold on a shared machine; absolute numbers move
with its load (target: >= 2,000 clips/s for the torch path on 2 idle cores). The largest
difference from librosa is printed as a check that both compute the same features.

    python benchmarks/features.py --clips 4096 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tinykws.features.batch import batch_features
from tinykws.features.frontend import FrontEnd, frontend_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4096, help="clips through the torch path")
    parser.add_argument("--batch-size", type=int, default=256, help="clips per torch call")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores to use)")
    parser.add_argument(
        "--librosa-clips", type=int, default=300, help="clips through each clip-by-clip path"
    )
    parser.add_argument("--frontend", default="logmel", help="front-end preset (default logmel)")
    return parser.parse_args()


def make_clips(n: int) -> np.ndarray:
    """float32 (n, 16000): seeded noise under a random-frequency tone, like voiced speech."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tones = np.sin(2 * np.pi * rng.uniform(100, 4000, (n, 1)) * t)
    return (0.3 * tones + rng.normal(0, 0.05, (n, 16000))).astype(np.float32)


def librosa_log_mel(frontend: FrontEnd, clip: np.ndarray) -> np.ndarray:
    """librosa with the front end's parameters; the signal is padded so that librosa's centred
    window covers the same samples as tinykws's frames."""
    import librosa

    c = frontend.config
    pad = (c.n_fft - c.window_samples) // 2
    mel = librosa.feature.melspectrogram(
        y=np.pad(clip, pad),
        sr=c.sample_rate_hz,
        n_fft=c.n_fft,
        hop_length=c.hop_samples,
        win_length=c.window_samples,
        window=c.window,
        center=False,
        power=2.0,
        n_mels=c.n_bands,
        fmin=c.fmin_hz,
        fmax=c.fmax_hz,
        htk=c.mel_scale == "htk",
        norm="slaney" if c.band_norm == "area" else None,
    )
    return np.log(mel + c.log_offset).T


def timed(compute, items) -> float:
    """Seconds per item of `compute` over `items`."""
    start = time.perf_counter()
    for item in items:
        compute(item)
    return (time.perf_counter() - start) / len(items)


TORCH = "tinykws torch, batched"


def measure(frontend: FrontEnd, clips: np.ndarray, args: argparse.Namespace) -> dict:
    """Seconds per clip of each path, one value per round. Rounds interleave the paths (one
    torch batch, then a few clips through each clip-by-clip path), so load changes hit all."""
    rounds = max(1, args.clips // args.batch_size)
    per_round = max(1, args.librosa_clips // rounds)
    per_clip = {
        "librosa, clip by clip": lambda clip: librosa_log_mel(frontend, clip),
        "tinykws numpy, clip by clip": frontend.numpy,
    }

    def batched(batch: np.ndarray) -> None:
        batch_features(frontend, torch.from_numpy(batch))

    batched(clips[:2])  # warm-up: torch copies of the matrices, librosa's filterbank cache
    for compute in per_clip.values():
        compute(clips[0])
    seconds = {TORCH: [], **{name: [] for name in per_clip}}
    with torch.inference_mode():
        for r in range(rounds):
            batch = clips[r * args.batch_size : (r + 1) * args.batch_size]
            seconds[TORCH].append(timed(batched, [batch]) / len(batch))
            few = clips[r * per_round : (r + 1) * per_round]
            for name, compute in per_clip.items():
                seconds[name].append(timed(compute, few))
    return seconds


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    frontend = FrontEnd(frontend_config(args.frontend))
    if frontend.config.kind != "logmel" or frontend.config.resize is not None:
        raise SystemExit("error: the librosa comparison needs a log-mel preset without resize")
    clips = make_clips(max(args.clips, args.batch_size))
    max_diff = max(
        float(np.abs(frontend.numpy(clip) - librosa_log_mel(frontend, clip)).max())
        for clip in clips[:8]
    )
    seconds = measure(frontend, clips, args)
    rows, cols = frontend.output_shape
    setup = f"threads {args.threads}, batch {args.batch_size}"
    print(f"front end {args.frontend} ({rows}x{cols}), {setup}")
    print(f"max |tinykws - librosa| = {max_diff:.1e}")
    print(f"  {'clips/s':<30} {'median':>9} {'best':>9}   median vs librosa")
    librosa_median = float(np.median(seconds["librosa, clip by clip"]))
    for name, values in seconds.items():
        median, best = float(np.median(values)), min(values)
        ratio = librosa_median / median
        print(f"  {name:<30} {1 / median:>9,.0f} {1 / best:>9,.0f}   {ratio:6.1f}x")
    torch_median = 1 / float(np.median(seconds[TORCH]))
    target = "met" if torch_median >= 2000 else "NOT met (is the machine busy?)"
    print(f"target >= 2,000 clips/s (median) for the torch path: {target}")


if __name__ == "__main__":
    main()
