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
