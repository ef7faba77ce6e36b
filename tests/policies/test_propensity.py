"""Unit tests of the Monte-Carlo helpers in ``policies.propensity`` against plain Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.propensity import (
    EXACT,
    EXACT_SEQUENTIAL_MC_MARGINAL,
    METHODS,
    MONTE_CARLO,
    concat_estimates,
    mc_estimates,
    top_k_indices,
)

SETTINGS = settings(max_examples=80, deadline=None)


def test_methods():
    assert set(METHODS) == {EXACT, EXACT_SEQUENTIAL_MC_MARGINAL, MONTE_CARLO}
    assert len(METHODS) == 3


@st.composite
def sampled_slates(draw):
    """(n, M, K) sampled slates and (n, K) shown slates of distinct candidate indices."""
    n = draw(st.integers(0, 4))
    m = draw(st.integers(1, 6))
    c = draw(st.integers(1, 5))
    k = draw(st.integers(1, c))
    slate = st.permutations(list(range(c))).map(lambda p: p[:k])
    samples = [[draw(slate) for _ in range(m)] for _ in range(n)]
    shown = [draw(slate) for _ in range(n)]
    return (
        np.array(samples, dtype=np.int64).reshape(n, m, k),
        np.array(shown, dtype=np.int64).reshape(n, k),
        c,
    )


@SETTINGS
@given(sampled_slates())
def test_mc_estimates_match_counting_in_python(case):
    """The shown slate is one of M + 1 samples: marginal = share with the shown item in the
    slot, prefix = share agreeing on slots 0..k, show = share containing each candidate."""
    samples, shown, c = case
    n, m, k = samples.shape
    marginal, prefix, show = mc_estimates(samples, shown, c)
    assert marginal.shape == prefix.shape == (n, k) and show.shape == (n, c)
    for r in range(n):
        slates = [list(s) for s in samples[r]] + [list(shown[r])]
        for t in range(k):
            same = sum(s[t] == shown[r, t] for s in slates)
            agree = sum(s[: t + 1] == list(shown[r, : t + 1]) for s in slates)
            assert marginal[r, t] == same / (m + 1)
            assert prefix[r, t] == agree / (m + 1)
        for j in range(c):
            assert show[r, j] == sum(j in s for s in slates) / (m + 1)
    if n:
        assert (marginal >= 1 / (m + 1)).all() and (prefix >= 1 / (m + 1)).all()
        assert (np.diff(prefix, axis=1) <= 0).all()
        np.testing.assert_allclose(show.sum(axis=1), k)


def _stable_top_k(row, k):
    return sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]


@SETTINGS
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=8), st.integers(1, 8))
def test_top_k_indices_keeps_a_ranked_order_with_ties(values, k):
    """Keys already in (non-increasing) rank order, ties included — the candidates' own scores,
    or UCB/Thompson with β = 0 — come back as the first k indices: ties keep the ranking."""
    k = min(k, len(values))
    row = sorted(values, reverse=True)
    got = top_k_indices(np.array([row], dtype=np.float64), k)
    assert got[0].tolist() == _stable_top_k(row, k) == list(range(k))


@SETTINGS
@given(
    st.lists(st.lists(st.integers(-3, 3), min_size=5, max_size=5), min_size=1, max_size=4),
    st.integers(1, 5),
)
def test_top_k_indices_sorts_the_k_best_descending(rows, k):
    """Best first, the right set of keys."""
    keys = np.array(rows, dtype=np.float64)
    got = top_k_indices(keys, k)
    for r, row in enumerate(rows):
        assert [row[i] for i in got[r]] == [row[i] for i in _stable_top_k(row, k)]
        assert len(set(got[r].tolist())) == k


def test_top_k_indices_breaks_ties_at_the_boundary_by_lower_index():
    got = top_k_indices(np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]), 3)
    assert got[0].tolist() == [4, 0, 1]


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_top_k_indices_continuous_agrees_without_ties(seed, k):
    keys = np.random.default_rng(seed).normal(size=(3, 4, 6))
    np.testing.assert_array_equal(top_k_indices(keys, k, continuous=True), top_k_indices(keys, k))
    want = np.argsort(-keys, axis=-1)[..., :k]
    np.testing.assert_array_equal(top_k_indices(keys, k), want)


def test_concat_estimates():
    assert [a.shape for a in concat_estimates([], 3, 5)] == [(0, 3), (0, 3), (0, 5)]
    rng = np.random.default_rng(0)
    parts = [tuple(rng.random((n, w)) for w in (3, 3, 5)) for n in (2, 0, 4)]
    joined = concat_estimates(parts, 3, 5)
    for i, arr in enumerate(joined):
        np.testing.assert_array_equal(arr, np.concatenate([p[i] for p in parts]))


@pytest.mark.parametrize(("n", "m", "c", "k"), [(40, 50, 20, 5), (7, 5, 10, 10), (30, 3, 12, 1)])
def test_draw_estimates_equal_ranking_then_counting(n, m, c, k):
    """Thompson's counts from the draws' scores are mc_estimates of the rankings the draws induce,
    to the bit (continuous draws: no ties)."""
    from policies.propensity import draw_estimates, top_k_indices

    rng = np.random.default_rng(n)
    draws = rng.standard_normal((n, m, c))
    shown = np.argsort(-rng.standard_normal((n, c)), axis=1)[:, :k]
    want = mc_estimates(top_k_indices(draws, k, continuous=True), shown, c)
    for got, ref in zip(draw_estimates(draws, shown), want, strict=True):
        np.testing.assert_array_equal(got, ref)
