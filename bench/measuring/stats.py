"""Summary statistics: every metric is reported with its count and spread."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

STAT_NAMES = ("n", "median", "mean", "stdev", "p90", "p99", "ci95_low", "ci95_high")


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, median, mean, sample stdev, p90, p99 and a 95% Student-t confidence interval of the mean.

    With fewer than two finite values the spread and interval are None (unknown, not zero). The
    interval of values that are all non-negative (a time, a rate) stops at 0: with two rounds the
    t quantile is 12.7, and a throughput's interval read below zero tokens/s. The mean of such
    values cannot be negative, so the cut interval still holds it 95% of the time.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return {k: (0 if k == "n" else None) for k in STAT_NAMES}
    mean = float(x.mean())
    out = {"n": n, "median": float(np.median(x)), "mean": mean,
           "p90": float(np.percentile(x, 90)), "p99": float(np.percentile(x, 99)),
           "stdev": None, "ci95_low": None, "ci95_high": None}
    if n >= 2:
        sd = float(x.std(ddof=1))
        from scipy import stats as _st  # here: scipy takes a second to import, and most callers never need it

        half = float(_st.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        low = mean - half
        out.update(stdev=sd, ci95_low=max(low, 0.0) if x.min() >= 0 else low, ci95_high=mean + half)
    return out
