"""Confidence intervals across seeds that never leave a metric's range.

A sweep has few seeds per arm (often 2 or 3), so the interval of an arm's mean is Student's t
across its seeds — and with ``n = 2`` the t quantile is 12.7: a raw t-interval of a coverage of
99% easily reaches 110%, of a CTR of 4% easily −12%. Every metric has a range
(:attr:`reports.metric_catalog.Metric.domain`); the interval shown is the t-interval **cut to
that range**. The true mean lies in the range, so the cut interval covers it exactly as often as
the uncut one: it is still a 95% interval, it just never claims impossible values.

Why not a transform or a bootstrap: a logit transform of a share that sits at its bound (the
coverage of a random policy is 100% on most seeds) needs an arbitrary clipping constant and then
turns seeds of 100%, 100% and 99.9% into an interval reaching down to 83%; a bootstrap over two
or three seeds can only return the range of the seeds (too narrow to be a 95% interval). Cutting
keeps the t-interval's calibration and its width where the data are far from the bounds.

Paired differences (arm minus baseline on the same seed) keep the paired t-test and its interval,
cut to the range a difference can take (``±`` the metric's width).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
METHOD = (
    "95% Student-t interval across seeds, cut to the metric's range (the true mean lies in the "
    "range, so the cut interval keeps its 95% coverage); none with a single seed"
)

Domain = tuple[float | None, float | None]


def t_quantile(n: np.ndarray | int, confidence: float = CONFIDENCE) -> np.ndarray:
    """Two-sided t quantile for ``n`` values (``n − 1`` degrees of freedom); NaN where ``n < 2``."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        from scipy import stats  # lazily: start-up time

        return np.where(n >= 2, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)


def clip_to(values: np.ndarray, domain: Domain) -> np.ndarray:
    """``values`` cut to ``domain`` (an open end is ``None``); NaN stays NaN."""
    low, high = domain
    return np.clip(
        values,
        -np.inf if low is None else low,
        np.inf if high is None else high,
    )


def difference_domain(domain: Domain) -> Domain:
    """The range of a difference of two values in ``domain``: ``±`` its width (open if unbounded)."""
    low, high = domain
    if low is None or high is None:
        return (None, None)
    width = high - low
    return (-width, width)


@dataclass(frozen=True)
class Interval:
    """A mean across seeds and its interval; ``low``/``high`` are NaN when ``n < 2``."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, value: float) -> bool:
        return self.has_interval and self.low <= value <= self.high


def _finite(values: Iterable[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def mean_interval(values: Iterable[Any], domain: Domain = (None, None)) -> Interval:
    """Mean of the finite values (None/NaN dropped) and its t-interval cut to ``domain``."""
    x = _finite(values)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(t_quantile(x.size)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    low, high = clip_to(np.array([mean - half, mean + half]), domain)
    return Interval(mean, float(low), float(high), int(x.size))


def column_intervals(
    matrix: np.ndarray, domain: Domain = (None, None)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``matrix`` (rows = seeds, NaN = missing): mean, low, high and n.

    Vectorized :func:`mean_interval`: low/high are NaN where a column has fewer than 2 values.
    """
    m = np.asarray(matrix, dtype=np.float64)
    finite = np.isfinite(m)
    n = finite.sum(axis=0)
    filled = np.where(finite, m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled.sum(axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(finite, m - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=0) / np.maximum(n - 1, 1))
        half = t_quantile(n) * std / np.sqrt(np.maximum(n, 1))
    low = clip_to(mean - half, domain)
    high = clip_to(mean + half, domain)
    return mean, low, high, n


def error_bar(iv: Interval) -> dict[str, Any]:
    """A plotly error bar (``error_x`` / ``error_y``) from a point's mean to the ends of its cut
    interval, asymmetric; invisible with one seed (no interval)."""
    if not iv.has_interval:
        return {"visible": False}
    return {
        "type": "data",
        "symmetric": False,
        "array": [iv.high - iv.mean],
        "arrayminus": [iv.mean - iv.low],
        "visible": True,
    }
