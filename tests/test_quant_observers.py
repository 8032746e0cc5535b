"""Range observers: each picks the range its rule defines, on data where the answer is known."""

import numpy as np
import pytest
import torch

from tinykws.ir.params import weight_qrange
from tinykws.quant.observers import (
    EntropyObserver,
    MinMaxObserver,
    MovingAverageObserver,
    MSEObserver,
    PercentileObserver,
    kl_threshold,
    weight_scales,
)


def observe(observer, batches):
    for batch in batches:
        observer.update(batch)
    if observer.needs_histogram:
        for batch in batches:
            observer.update_histogram(batch)
    return observer.final_range()


def heavy_tailed(seed=0, n=200_000):
    """Gaussian values plus a few huge outliers at +-50."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    x[:20] = 50.0
    x[20:40] = -50.0
    return [x[: n // 2], x[n // 2 :]]


def test_minmax_sees_every_batch():
    assert observe(MinMaxObserver(), [torch.tensor([1.0, 2.0]), torch.tensor([-3.0])]) == (-3, 2)


def test_moving_average_starts_at_the_first_batch_then_moves_by_momentum():
    obs = MovingAverageObserver(momentum=0.5)
    obs.update(torch.tensor([0.0, 4.0]))
    obs.update(torch.tensor([-2.0, 8.0]))
    assert obs.range() == (-1.0, 6.0)
    assert MovingAverageObserver(0.1, start=(-1.0, 1.0)).range() == (-1.0, 1.0)


def test_percentile_drops_the_outliers():
    low, high = observe(PercentileObserver(percentile=99.9), heavy_tailed())
    assert -4.0 < low < -2.5 and 2.5 < high < 4.0  # N(0, 1): 0.05 % tails at +-3.3


def test_mse_and_entropy_clip_far_below_the_outliers():
    # At 4 bits the rounding error of the bulk outweighs clipping 40 outliers; KL ignores them.
    for observer in (MSEObserver(bits=4), EntropyObserver(bits=8)):
        low, high = observe(observer, heavy_tailed())
        assert 2.0 < high < 40.0 and -40.0 < low < -2.0, type(observer).__name__


def test_mse_keeps_the_full_range_when_clipping_would_cost_more():
    low, high = observe(MSEObserver(bits=8), heavy_tailed())  # 8 bits: rounding error is tiny
    assert high > 45.0 and low < -45.0


def test_histogram_observers_keep_a_clean_range():
    data = [torch.linspace(0.0, 6.0, 10_001)]
    for observer in (MSEObserver(bits=8), PercentileObserver(percentile=100.0)):
        low, high = observe(observer, data)
        assert low <= 0.01 and high == pytest.approx(6.0, abs=0.05)


def test_kl_threshold_keeps_a_uniform_histogram_whole():
    assert kl_threshold(np.ones(2048), levels=128) == pytest.approx(1.0, abs=0.01)


def test_weight_scales_minmax_per_channel_and_per_tensor():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25], [0.0, 0.0]])
    per_channel = weight_scales(w, 8, per_channel=True)
    assert torch.allclose(per_channel[:2], torch.tensor([2.0, 0.5]) / 127)
    assert per_channel[2] in per_channel[:2]  # a dead row borrows a live scale (the median)
    assert torch.allclose(weight_scales(w, 4, per_channel=False), torch.tensor([2.0 / 7]))


def test_weight_mse_clips_a_single_large_weight_and_lowers_the_error():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 256, generator=gen)
    w[:, 0] = 12.0
    qmax = weight_qrange(4)[1]

    def error(scales):
        q = torch.clamp(torch.round(w / scales[:, None]), -qmax, qmax)
        return float(((q * scales[:, None] - w) ** 2).sum())

    minmax = weight_scales(w, 4, True, "minmax")
    mse = weight_scales(w, 4, True, "mse")
    assert torch.all(mse < minmax) and error(mse) < 0.8 * error(minmax)


def test_power_of_two_weight_scales():
    w = torch.randn(8, 16)
    scales = weight_scales(w, 8, True, power_of_two=True)
    assert torch.all(torch.log2(scales) == torch.round(torch.log2(scales)))
    assert torch.all(scales >= weight_scales(w, 8, True))
