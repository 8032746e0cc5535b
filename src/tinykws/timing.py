"""Wall time of a call: the median of many, so that one interruption by the system does not
count.

Example:
    >>> round(median_ms(lambda x: x, 0, runs=5, warmup=1), 1)
    0.0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_ms(
    function: Callable[[Any], Any],
    argument,
    *,
    runs: int,
    warmup: int,
    sync: Callable[[], None] | None = None,
) -> float:
    """Median milliseconds (`time.perf_counter_ns`) of `function(argument)` over `runs` calls
    after `warmup` untimed calls; `sync` (e.g. `torch.cuda.synchronize`) runs inside each timed
    call so that asynchronous devices are timed to completion."""
    for _ in range(warmup):
        function(argument)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        function(argument)
        if sync is not None:
            sync()
        times[i] = time.perf_counter_ns() - start
    return float(np.median(times) / 1e6)
