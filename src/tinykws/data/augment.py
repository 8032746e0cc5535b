"""On-the-fly augmentation of waveform batches (torch) and of feature batches (SpecAugment).

Everything is drawn from an explicit `torch.Generator`, so a seed reproduces a run; augmented audio
is never cached. Waveforms are float32 (B, samples) in [-1, 1]; features are (B, frames, bins).
"""

from __future__ import annotations

import torch

from tinykws.data.augment_config import AugmentConfig


def time_shift(waves: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each clip by a uniform integer in [-max_shift, max_shift] samples, zero-filled."""
    if max_shift <= 0:
        return waves
    batch, length = waves.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 1), generator=gen)
    index = torch.arange(length).unsqueeze(0) - shifts
    valid = (index >= 0) & (index < length)
    shifted = torch.gather(waves, 1, index.clamp(0, length - 1).to(waves.device))
    return shifted * valid.to(waves.device)


def change_speed(waves: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Resample some clips by a random factor (linear interpolation), keeping them centred."""
    batch, length = waves.shape
    low, high = cfg.speed_range
    factor = low + (high - low) * torch.rand(batch, 1, generator=gen)
    factor[torch.rand(batch, 1, generator=gen) >= cfg.speed_prob] = 1.0
    centre = (length - 1) / 2
    position = centre + (torch.arange(length).unsqueeze(0) - centre) * factor
    valid = ((position >= 0) & (position <= length - 1)).to(waves.device)
    left = position.floor().long().clamp(0, length - 2)
    frac = (position - left).clamp(0, 1).to(waves.dtype).to(waves.device)
    left = left.to(waves.device)
    a = torch.gather(waves, 1, left)
    b = torch.gather(waves, 1, left + 1)
    return (a + (b - a) * frac) * valid


def mix_noise(
    waves: torch.Tensor, noise: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """Add a random background-noise segment to some clips at a random SNR.

    Args:
        waves: (B, L) float32 clips.
        noise: (M,) float32, all background recordings concatenated (M >= L).
    """
    batch, length = waves.shape
    if noise.numel() < length or cfg.noise_prob <= 0:
        return waves
    starts = torch.randint(0, noise.numel() - length + 1, (batch, 1), generator=gen)
    segments = noise.to(waves.device)[(starts + torch.arange(length)).to(waves.device)]
    low, high = cfg.snr_db
    snr_db = low + (high - low) * torch.rand(batch, 1, generator=gen)
    signal_power = waves.pow(2).mean(dim=1, keepdim=True)
    noise_power = segments.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12)
    gain = torch.sqrt(signal_power / (noise_power * 10 ** (snr_db.to(waves.device) / 10)))
    # Near-silent clips (the _silence_ class) have no meaningful SNR: use a plain random gain.
    quiet = signal_power < 1e-6
    random_gain = cfg.noise_gain_max * torch.rand(batch, 1, generator=gen).to(waves.device)
    gain = torch.where(quiet, random_gain, gain)
    apply = (torch.rand(batch, 1, generator=gen) < cfg.noise_prob).to(waves.device)
    return (waves + apply * gain * segments).clamp(-1.0, 1.0)


def augment_waves(
    waves: torch.Tensor, noise: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """Speed perturbation, time shift and background noise, in that order. (B, L) -> (B, L)."""
    if cfg.speed_prob > 0:
        waves = change_speed(waves, cfg, gen)
    waves = time_shift(waves, int(cfg.time_shift_ms * 16), gen)
    return mix_noise(waves, noise, cfg, gen)


def spec_augment(features: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment time and frequency masks on normalised features (B, T, F); masks are set to 0."""
    batch, frames, bins = features.shape
    keep = torch.ones(batch, frames, bins)
    for count, width, axis, size in (
        (cfg.time_masks, cfg.time_mask_frames, 1, frames),
        (cfg.freq_masks, cfg.freq_mask_bins, 2, bins),
    ):
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1), generator=gen)
            start = (torch.rand(batch, 1, generator=gen) * (size - w + 1)).long()
            pos = torch.arange(size).unsqueeze(0)
            mask = ((pos >= start) & (pos < start + w)).float()
            mask = mask.unsqueeze(2) if axis == 1 else mask.unsqueeze(1)
            keep = keep * (1 - mask)
    return features * keep.to(features.device)
