"""`AugmentConfig`: what training (and quantization-aware fine-tuning) does to its batches.

Kept apart from the torch code in `tinykws.data.augment`, so configs that name an augmentation
load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinykws.config import check_range


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation applied to training batches only.

    Attributes:
        enabled: master switch; when False training reads cached features directly.
        time_shift_ms: clips move by up to ±this many ms (zero fill), as TF's speech_commands.
        noise_prob: probability that a clip gets background noise mixed in.
        snr_db: (low, high) signal-to-noise ratio of the mixed noise, drawn uniformly in dB.
        noise_gain_max: silence/near-silent clips get noise at a gain up to this value instead.
        speed_prob: probability of a speed (and so pitch) perturbation.
        speed_range: (low, high) resampling factor, e.g. (0.9, 1.1).
        time_masks / time_mask_frames: SpecAugment masks along time, each up to N frames.
        freq_masks / freq_mask_bins: SpecAugment masks along frequency, each up to N bins.
    """

    enabled: bool = True
    time_shift_ms: float = 100.0
    noise_prob: float = 0.8
    snr_db: tuple[float, float] = (0.0, 20.0)
    noise_gain_max: float = 0.1
    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    time_masks: int = 2
    time_mask_frames: int = 8
    freq_masks: int = 2
    freq_mask_bins: int = 4

    def __post_init__(self):
        check_range("augment.noise_prob", self.noise_prob, 0.0, 1.0)
        check_range("augment.speed_prob", self.speed_prob, 0.0, 1.0)
        check_range("augment.time_shift_ms", self.time_shift_ms, 0.0, 500.0)
        check_range("augment.speed_range[0]", self.speed_range[0], 0.5, self.speed_range[1])
        check_range("augment.speed_range[1]", self.speed_range[1], self.speed_range[0], 2.0)
