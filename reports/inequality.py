"""The Lorenz curve of a distribution over items (numpy only).

Reports draw Lorenz curves from ``item_exposure.parquet``; the Gini coefficients they print come
from ``metrics.parquet`` (computed by ``sim.inequality.gini``, the metric contract), so a report
never recomputes a metric.
"""

from __future__ import annotations

import numpy as np


def lorenz(x: np.ndarray, *, vertices_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of ``x``: cumulative share of items (ascending) vs cumulative share of total.

    Starts at ``(0, 0)`` and ends at ``(1, 1)``; ``n + 1`` points for ``n`` items. The y values
    are NaN when ``x`` sums to 0 (the curve is undefined).

    Parameters
    ----------
    vertices_only : keep only the points where the slope changes (the ends of runs of equal
        values). The curve is linear in between, so plotting these is exact and far smaller
        for large catalogs.
    """
    s = np.sort(np.asarray(x, dtype=np.float64))
    n = s.size
    total = s.sum()
    share_items = np.arange(n + 1) / max(n, 1)
    cum = np.concatenate([[0.0], np.cumsum(s)])
    share_total = cum / total if total > 0 else np.full(n + 1, np.nan)
    if vertices_only and n > 1:
        # point k follows item k-1; the slope changes at k when s[k-1] != s[k]
        keep = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1, [n]])
        return share_items[keep], share_total[keep]
    return share_items, share_total
