"""Inequality of a distribution over items: the Gini coefficient of the metric contract.

Reports print the Gini values of ``metrics.parquet`` and draw Lorenz curves with
``reports.inequality.lorenz`` from ``item_exposure.parquet``; they never import this module.
"""

from __future__ import annotations

import numpy as np


def gini(x: np.ndarray) -> float:
    """Gini coefficient with zeros included; NaN when ``Σx = 0`` (undefined).

    ``G = Σ_k (2k − n − 1) x_(k) / (n Σ x)`` with ``x`` sorted ascending, ``k = 1..n``.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    k = np.arange(1, n + 1)
    return float(np.sum((2 * k - n - 1) * x) / (n * total))


def average_ranks(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks from 1 along ``axis``, ties sharing their mean rank: ``scipy.stats.rankdata(a,
    method="average", axis=axis)`` to the bit (a slice holding a NaN is all NaN), without importing
    ``scipy.stats`` (half a second of every run's start-up). One stable sort per slice."""
    x = np.moveaxis(np.asarray(a), axis, -1)
    if x.size == 0:
        return np.moveaxis(np.empty(x.shape), -1, axis)
    shape, n = x.shape, x.shape[-1]
    rows = x.reshape(-1, n)
    order = np.argsort(rows, axis=1, kind="stable")
    ranked = np.take_along_axis(rows, order, axis=1)
    first = np.ones(ranked.shape, dtype=bool)  # a run of equal values starts here
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    last = np.ones(ranked.shape, dtype=bool)  # ... ends here
    last[:, :-1] = first[:, 1:]
    pos = np.broadcast_to(np.arange(n), ranked.shape)
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    out = np.empty(rows.shape)
    np.put_along_axis(out, order, 0.5 * (start + end + 2), axis=1)
    if rows.dtype.kind in "fc":
        out[np.isnan(rows).any(axis=1)] = np.nan
    return np.moveaxis(out.reshape(shape), -1, axis)
