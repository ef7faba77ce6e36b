"""``sim.inequality.average_ranks`` is ``scipy.stats.rankdata(method="average")`` to the bit (the
metrics use it so that a run does not import ``scipy.stats``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import rankdata

from sim.inequality import average_ranks

values = st.one_of(
    hnp.arrays(
        np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12), elements=st.integers(-3, 3)
    ),
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=12),
        elements=st.one_of(st.sampled_from([0.0, -0.0, 1.5, np.nan, np.inf]), st.floats(-2, 2)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(values, st.integers(0, 1))
def test_average_ranks_equal_scipy_rankdata(a, axis):
    axis = min(axis, a.ndim - 1)
    want = rankdata(a, method="average", axis=axis)
    got = average_ranks(a, axis=axis)
    assert got.dtype == np.float64 and got.shape == a.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [0, 1, 5000])
def test_average_ranks_sizes(n):
    a = np.random.default_rng(n).integers(0, 50, n)
    np.testing.assert_array_equal(average_ranks(a), rankdata(a, method="average"))
