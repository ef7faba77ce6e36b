"""Plackett–Luce helpers checked against independent computations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp

from policies.plackett_luce import logsumexp_rows

# finite values of every magnitude, rounded ones (ties, also of the maximum), and the
# special values a masked row holds (-inf) or a broken one would (inf, NaN)
VALUES = st.one_of(
    st.floats(-800, 800),
    st.integers(-3, 3).map(float),
    st.sampled_from([-np.inf, np.inf, np.nan]),
)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=VALUES))
def test_logsumexp_rows_is_scipys_logsumexp_to_the_bit(a):
    assert logsumexp_rows(a).tobytes() == logsumexp(a, axis=1).tobytes()


def test_logsumexp_rows_on_softmax_sized_masked_rows():
    """The shape softmax uses: (batch, candidates) logits with the slots already taken masked."""
    rng = np.random.default_rng(3)
    a = (rng.normal(size=(300, 50)) * 20).round(1)
    a[rng.random(a.shape) < 0.4] = -np.inf
    want = logsumexp(a, axis=1)
    assert logsumexp_rows(a).tobytes() == want.tobytes()
    finite = np.isfinite(a).any(axis=1)  # and it is the log-sum-exp, to rounding
    np.testing.assert_allclose(
        logsumexp_rows(a)[finite], np.log(np.exp(a[finite] / 1.0).sum(axis=1)), rtol=1e-12
    )
