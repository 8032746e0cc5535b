import numpy as np
import torch

from tinykws.data.augment import (
    AugmentConfig,
    augment_waves,
    change_speed,
    mix_noise,
    spec_augment,
    time_shift,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_time_shift_moves_samples_and_zero_fills():
    waves = torch.arange(1, 11, dtype=torch.float32).repeat(64, 1)
    shifted = time_shift(waves, 3, gen())
    for row in shifted:
        nz = row[row != 0]
        # The surviving samples are a contiguous run of the original.
        assert torch.equal(nz, torch.arange(nz[0], nz[0] + len(nz)))
        assert len(nz) >= 7


def test_speed_factor_one_is_identity_and_other_factors_stretch():
    waves = torch.sin(torch.linspace(0, 60, 1000)).repeat(4, 1)
    same = change_speed(waves, AugmentConfig(speed_prob=0.0), gen())
    torch.testing.assert_close(same, waves, atol=1e-6, rtol=0)
    fast = change_speed(waves, AugmentConfig(speed_prob=1.0, speed_range=(1.2, 1.2001)), gen())
    # Played 1.2x faster, the zero crossings come 1.2x as often.
    crossings = lambda x: int((torch.sign(x[:-1]) != torch.sign(x[1:])).sum())  # noqa: E731
    ratio = crossings(fast[0][200:800]) / crossings(waves[0][200:800])
    assert 1.1 < ratio < 1.3


def test_noise_is_mixed_at_the_requested_snr():
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(rng.normal(0, 0.1, (32, 4000)).astype(np.float32))
    noise = torch.from_numpy(rng.normal(0, 0.3, 40000).astype(np.float32))
    cfg = AugmentConfig(noise_prob=1.0, snr_db=(10.0, 10.0))
    mixed = mix_noise(waves, noise, cfg, gen())
    added = mixed - waves
    snr = 10 * torch.log10(waves.pow(2).mean(1) / added.pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full_like(snr, 10.0), atol=0.05, rtol=0)


def test_augmentation_is_deterministic_for_a_seed():
    waves = torch.randn(8, 16000, generator=gen(1)) * 0.1
    noise = torch.randn(48000, generator=gen(2)) * 0.1
    cfg = AugmentConfig()
    a = augment_waves(waves, noise, cfg, gen(5))
    b = augment_waves(waves, noise, cfg, gen(5))
    c = augment_waves(waves, noise, cfg, gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_spec_augment_masks_whole_rows_and_columns():
    feats = torch.ones(16, 49, 10)
    cfg = AugmentConfig(time_masks=1, time_mask_frames=5, freq_masks=1, freq_mask_bins=3)
    out = spec_augment(feats, cfg, gen())
    for row in out:
        zero_frames = (row == 0).all(dim=1).sum()
        zero_bins = (row == 0).all(dim=0).sum()
        assert zero_frames <= 5 and zero_bins <= 3
        assert set(row.unique().tolist()) <= {0.0, 1.0}
