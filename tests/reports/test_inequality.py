"""The reports' Lorenz curve against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from reports.inequality import lorenz
from sim.inequality import gini


def test_lorenz_by_hand() -> None:
    # counts 3, 0, 1, 0 sorted: 0, 0, 1, 3 (total 4): cumulative 0, 0, 0, 1, 4
    x, y = lorenz(np.array([3, 0, 1, 0]))
    np.testing.assert_array_equal(x, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 0.25, 1.0])
    # the Gini of the metric contract is 1 − 2 · (area under this curve):
    # area = 0.25 · (0 + 0 + 0.125 + 0.625) = 0.1875, so G = 0.625
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
    assert area == pytest.approx(0.1875)
    assert gini(np.array([3, 0, 1, 0])) == pytest.approx(1 - 2 * area)


def test_lorenz_vertices_by_hand() -> None:
    # sorted 0, 0, 2, 2, 2, 6 (total 12): slope changes after the zeros and before the 6
    x, y = lorenz(np.array([2, 6, 0, 2, 0, 2]), vertices_only=True)
    np.testing.assert_allclose(x, [0.0, 2 / 6, 5 / 6, 1.0])
    np.testing.assert_allclose(y, [0.0, 0.0, 6 / 12, 1.0])


def test_lorenz_edge_cases() -> None:
    x, y = lorenz(np.full(4, 5))
    np.testing.assert_allclose(y, x)  # all equal: the diagonal
    x, y = lorenz(np.array([7]))
    np.testing.assert_array_equal(x, [0.0, 1.0])
    np.testing.assert_array_equal(y, [0.0, 1.0])
    assert np.isnan(lorenz(np.zeros(3))[1]).all()  # undefined without any impression
