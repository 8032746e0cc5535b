"""Range observers: what interval [low, high] of a tensor the integer grid should cover.

Activations (per tensor), chosen by name in `ACTIVATION_OBSERVERS`:
- ``minmax``: the smallest and largest value seen.
- ``moving_average``: min and max of each batch, averaged exponentially (QAT's observer).
- ``percentile``: the `percentile`-th and (100 - `percentile`)-th percentiles (clips outliers).
- ``mse``: the clipping of the min-max range that minimises the expected squared error.
- ``entropy``: TensorRT's calibration: the threshold whose quantized distribution has the
  smallest KL divergence from the observed one.

The histogram observers (percentile, mse, entropy) need two passes over the calibration data:
the first finds the min-max range, the second fills a histogram of `HISTOGRAM_BINS` bins over it.

Weights (per output channel or per tensor), in `WEIGHT_OBSERVERS`: ``minmax`` (max |w|) and
``mse`` (the clipping of max |w| with the smallest squared error). Both return symmetric scales;
`asymmetric_weight_qparams` gives asymmetric ones (scale and zero point from [min, max], or its
MSE clipping); `power_of_two` rounds every scale up to a power of two.

Example:
    >>> import torch
    >>> obs = MinMaxObserver()
    >>> obs.update(torch.tensor([-1.0, 3.0])); obs.update(torch.tensor([5.0]))
    >>> obs.range()
    (-1.0, 5.0)
"""

from __future__ import annotations

import numpy as np
import torch

from tinykws.ir import fixedpoint as fp
from tinykws.ir import params
from tinykws.ir.fixedpoint import round_half_away
from tinykws.ir.params import CLIP_CANDIDATES
from tinykws.quant.fake import activation_qrange, affine_qparams

HISTOGRAM_BINS = 2048


class MinMaxObserver:
    """Running minimum and maximum."""

    needs_histogram = False

    def __init__(self) -> None:
        self.low, self.high = float("inf"), float("-inf")

    def update(self, x: torch.Tensor) -> None:
        low, high = torch.aminmax(x.detach())
        self.low = min(self.low, float(low))
        self.high = max(self.high, float(high))

    def seen(self) -> bool:
        return self.low <= self.high

    def range(self) -> tuple[float, float]:
        return (self.low, self.high) if self.seen() else (0.0, 0.0)

    def final_range(self) -> tuple[float, float]:
        """The range to quantize to, once every pass is done."""
        return self.range()


class MovingAverageObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max (the first batch sets them)."""

    def __init__(self, momentum: float = 0.01, start: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.momentum = momentum
        if start is not None:
            self.low, self.high = start

    def update(self, x: torch.Tensor) -> None:
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if not self.seen():
            self.low, self.high = low, high
            return
        self.low += self.momentum * (low - self.low)
        self.high += self.momentum * (high - self.high)


class HistogramObserver(MinMaxObserver):
    """Min-max on the first pass, a histogram over that range on the second."""

    needs_histogram = True

    def __init__(self, bits: int = 8, symmetric: bool = False, percentile: float = 99.99) -> None:
        super().__init__()
        self.bits, self.symmetric, self.percentile = bits, symmetric, percentile
        self.counts = np.zeros(HISTOGRAM_BINS, np.float64)

    def update_histogram(self, x: torch.Tensor) -> None:
        low, high = self.range()
        if high <= low:
            return
        hist = torch.histc(x.detach().float().flatten(), HISTOGRAM_BINS, low, high)
        self.counts += hist.cpu().double().numpy()

    def centers(self) -> np.ndarray:
        low, high = self.range()
        width = (high - low) / HISTOGRAM_BINS
        return low + width * (np.arange(HISTOGRAM_BINS) + 0.5)

    def range_from_histogram(self) -> tuple[float, float]:
        raise NotImplementedError

    def final_range(self) -> tuple[float, float]:
        low, high = self.range()
        if high <= low or self.counts.sum() == 0:
            return low, high
        return self.range_from_histogram()


class PercentileObserver(HistogramObserver):
    """The central `percentile` % of the values (e.g. 99.99: drop 0.01 % at each end)."""

    def range_from_histogram(self) -> tuple[float, float]:
        cdf = np.cumsum(self.counts) / self.counts.sum()
        tail = 1.0 - self.percentile / 100.0
        centers = self.centers()
        low = centers[min(np.searchsorted(cdf, tail), HISTOGRAM_BINS - 1)]
        high = centers[min(np.searchsorted(cdf, 1.0 - tail), HISTOGRAM_BINS - 1)]
        return float(low), float(high)


class MSEObserver(HistogramObserver):
    """The clipped range [a * low, a * high] with the least expected squared rounding error."""

    def range_from_histogram(self) -> tuple[float, float]:
        qmin, qmax = activation_qrange(self.bits)
        centers, counts = self.centers(), self.counts
        best, best_error = (self.low, self.high), np.inf
        for ratio in np.linspace(1.0 / CLIP_CANDIDATES, 1.0, CLIP_CANDIDATES):
            low, high = ratio * min(self.low, 0.0), ratio * max(self.high, 0.0)
            scale, zero = affine_qparams(low, high, self.bits, self.symmetric)
            q = np.clip(fp.round_half_away(centers / scale) + zero, qmin, qmax)
            error = float(np.sum(counts * (centers - (q - zero) * scale) ** 2))
            if error < best_error:
                best, best_error = (low, high), error
        return best


class EntropyObserver(HistogramObserver):
    """TensorRT's KL-divergence threshold on the histogram of |x|; the range is clipped to it."""

    def range_from_histogram(self) -> tuple[float, float]:
        magnitude = max(abs(self.low), abs(self.high))
        hist = _fold_to_magnitude(self.counts, self.centers(), magnitude)
        signed = self.low < 0 and self.high > 0
        levels = 2 ** (self.bits - 1) if signed else 2**self.bits - 1
        threshold = kl_threshold(hist, levels) * magnitude
        return max(self.low, -threshold), min(self.high, threshold)


def _fold_to_magnitude(counts: np.ndarray, centers: np.ndarray, magnitude: float) -> np.ndarray:
    """Histogram of |x| over [0, magnitude] with HISTOGRAM_BINS bins, from a signed histogram."""
    index = np.minimum(
        (np.abs(centers) / magnitude * HISTOGRAM_BINS).astype(int), HISTOGRAM_BINS - 1
    )
    folded = np.zeros(HISTOGRAM_BINS, np.float64)
    np.add.at(folded, index, counts)
    return folded


def kl_threshold(hist: np.ndarray, levels: int, stride: int = 8) -> float:
    """The clipping threshold (fraction of the histogram's range) with the least KL divergence.

    For each candidate i, the reference distribution is the first i bins with the tail folded
    into bin i - 1; the candidate quantizes those bins into `levels` groups, spreading each
    group's mass evenly over its non-empty bins.
    """
    n = len(hist)
    if hist.sum() == 0 or n <= levels:
        return 1.0
    best_i, best_kl = n, np.inf
    for i in range(levels, n + 1, stride):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()
        candidate = _quantized_distribution(hist[:i], levels)
        kl = _kl_divergence(reference, candidate)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i / n


def _quantized_distribution(hist: np.ndarray, levels: int) -> np.ndarray:
    """`hist` merged into `levels` consecutive groups (sizes as `np.array_split`), each group's
    mass spread evenly over its non-empty bins."""
    n = len(hist)
    sizes = np.full(levels, n // levels)
    sizes[: n % levels] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group = np.repeat(np.arange(levels), sizes)
    nonzero = hist > 0
    totals = np.add.reduceat(hist, starts)
    counts = np.add.reduceat(nonzero.astype(np.float64), starts)
    return np.where(nonzero, totals[group] / np.maximum(counts[group], 1), 0.0)


def _kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / max(q.sum(), 1e-30)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def make_activation_observer(name: str, bits: int, symmetric: bool, percentile: float):
    """A fresh observer of kind `name` (a key of `ACTIVATION_OBSERVERS`)."""
    return ACTIVATION_OBSERVERS[name](bits, symmetric, percentile)


ACTIVATION_OBSERVERS = {
    "minmax": lambda bits, sym, pct: MinMaxObserver(),
    "moving_average": lambda bits, sym, pct: MovingAverageObserver(),
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


# --- weights ------------------------------------------------------------------------------------


def weight_scales(weight: torch.Tensor, *rule, **options) -> torch.Tensor:
    """Symmetric weight scales of a torch weight, float32 (C,) or (1,), on its device.

    `rule` and `options` are those of `tinykws.ir.params.weight_scales` (bits, per_channel,
    observer, power_of_two): the one rule, which the dynamic-range exporters read too.
    """
    scales = params.weight_scales(weight.detach().float().cpu().numpy(), *rule, **options)
    return torch.from_numpy(scales).to(weight.device)


def asymmetric_weight_qparams(
    weight: torch.Tensor,
    bits: int,
    per_channel: bool,
    observer: str = "minmax",
    power_of_two: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric weight (scales, zero points), float32 (C,) or (1,) each.

    The full range [-2^(bits-1), 2^(bits-1) - 1] covers [min(w), max(w)] of each channel
    (widened to include 0, so a zero weight stays exact): scale = (high - low) / (2^bits - 1),
    zero point = qmin - round_half_away(low / scale), clamped to the range. "mse" shrinks both
    ends by the ratio with the smallest squared rounding error. A channel of zeros gets the
    median scale of the others (1 if none). Scales and divisions are float32.
    """
    qmin, qmax = activation_qrange(bits)
    w = weight.detach().float()
    w = w.flatten(1) if per_channel else w.reshape(1, -1)
    low = w.amin(dim=1).clamp_max(0.0)
    high = w.amax(dim=1).clamp_min(0.0)
    if observer == "mse":
        ratios = torch.linspace(1.0 / CLIP_CANDIDATES, 1.0, CLIP_CANDIDATES, device=w.device)
        lows, highs = low[:, None] * ratios, high[:, None] * ratios  # (C, R)
        scales, zeros = (v.unsqueeze(2) for v in _affine_weight(lows, highs, bits))
        q = (round_half_away(w.unsqueeze(1) / scales) + zeros).clamp(qmin, qmax)
        error = (((q - zeros) * scales - w.unsqueeze(1)) ** 2).sum(dim=2)
        best = error.argmin(dim=1, keepdim=True)
        low, high = lows.gather(1, best)[:, 0], highs.gather(1, best)[:, 0]
    return _affine_weight(low, high, bits, power_of_two)


def _affine_weight(low, high, bits: int, power_of_two: bool = False):
    """(scales, zero points) of ranges [low, high] (any shape), as `asymmetric_weight_qparams`."""
    qmin, qmax = activation_qrange(bits)
    scales = ((high - low) / (qmax - qmin)).float()
    alive = scales > 0
    if not bool(alive.all()):
        fill = scales[alive].median() if bool(alive.any()) else torch.tensor(1.0)
        scales = torch.where(alive, scales, fill.to(scales))
    if power_of_two:
        scales = torch.pow(2.0, torch.ceil(torch.log2(scales))).float()
    zeros = (qmin - round_half_away(low / scales)).clamp(qmin, qmax)
    return scales, zeros
