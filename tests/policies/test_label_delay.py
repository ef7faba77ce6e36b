"""Delayed conversion labels: the delayed-feedback fit and the correction weights, checked against
closed forms and an independent maximum-likelihood fit (policies.label_delay)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from policies.interactions import Interactions
from policies.label_delay import (
    IPW_CAP,
    DelayFit,
    dfm_weights,
    fit_delay,
    ipw_weights,
    label_weights,
    soft_label_least_squares,
)


def synthetic(n: int, p: float, mean: float, horizon: float, seed: int = 0):
    """Clicks uniform over [0, horizon); each converts with ``p`` after an exponential delay;
    observed at the cut-off ``horizon`` only if it happened by then."""
    rng = np.random.default_rng(seed)
    click_t = rng.uniform(0, horizon, n)
    converts = rng.random(n) < p
    delay = rng.exponential(mean, n)
    seen = converts & (click_t + delay < horizon)
    return horizon - click_t, np.where(seen, delay, np.nan), seen


def mixture_mle(elapsed, delay, seen):
    """Maximum of the delayed-feedback likelihood by a generic optimizer (one global rate):
    Σ_seen log(p λ e^{−λd}) + Σ_unseen log(1 − p + p e^{−λe})."""

    def nll(theta):
        p, lam = 1 / (1 + np.exp(-theta[0])), np.exp(theta[1])
        ll = np.sum(np.log(p * lam) - lam * delay[seen])
        ll += np.sum(np.log(1 - p + p * np.exp(-lam * elapsed[~seen])))
        return -ll

    res = optimize.minimize(
        nll,
        x0=[0.0, np.log(1 / 10.0)],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 5000},
    )
    return 1 / (1 + np.exp(-res.x[0])), np.exp(res.x[1])


def test_em_reaches_the_likelihood_maximum_and_the_truth():
    elapsed, delay, seen = synthetic(40_000, p=0.3, mean=30.0, horizon=200.0)
    items = np.zeros(seen.size, np.int64)  # one item: its rate is the global rate
    fit = fit_delay(elapsed, delay, seen, items, n_items=1, prior_clicks=0.0)
    p_ref, rate_ref = mixture_mle(elapsed, delay, seen)
    assert fit.p == pytest.approx(p_ref, rel=1e-4)
    assert fit.rate == pytest.approx(rate_ref, rel=1e-4)
    # and the MLE is near the truth on 40k clicks
    assert fit.p == pytest.approx(0.3, abs=0.02)
    assert 1 / fit.rate == pytest.approx(30.0, rel=0.05)


def test_item_rates_shrink_to_the_global_rate():
    rng = np.random.default_rng(1)
    n = 20_000
    items = rng.integers(0, 2, n)
    elapsed = rng.uniform(0, 500, n)
    p_true = np.where(items == 0, 0.1, 0.5)
    converts = rng.random(n) < p_true
    delay = rng.exponential(20.0, n)
    seen = converts & (delay < elapsed)
    fit = fit_delay(elapsed, np.where(seen, delay, np.nan), seen, items, 3, prior_clicks=20.0)
    assert fit.p_item[0] == pytest.approx(0.1, abs=0.02)
    assert fit.p_item[1] == pytest.approx(0.5, abs=0.03)
    assert fit.p_item[2] == fit.p  # no clicks: the global rate


def test_ipw_weights_are_the_capped_inverse_exponential_cdf():
    fit = DelayFit(p=0.2, rate=1 / 48.0, p_item=np.full(3, 0.2), iterations=1)
    elapsed = np.array([0.5, 3.0, 10.0, 48.0, 500.0])
    cdf = stats.expon(scale=48.0).cdf(elapsed)
    expected = np.minimum(1 / cdf, IPW_CAP)
    np.testing.assert_allclose(ipw_weights(elapsed, fit), expected, rtol=1e-12)
    assert ipw_weights(np.array([0.0]), fit)[0] == IPW_CAP  # a click of the cut-off's hour


def test_dfm_weights_are_the_bayes_posterior():
    p = np.array([0.1, 0.4])
    fit = DelayFit(p=0.25, rate=1 / 24.0, p_item=p, iterations=1)
    elapsed = np.array([0.0, 12.0, 24.0, 240.0])
    items = np.array([0, 1, 1, 0])
    surv = stats.expon(scale=24.0).sf(elapsed)
    # P(converts | not converted by e) = p S(e) / (p S(e) + 1 − p)
    expected = p[items] * surv / (p[items] * surv + 1 - p[items])
    np.testing.assert_allclose(dfm_weights(elapsed, items, fit), expected, rtol=1e-12)


def test_uncapped_ipw_restores_the_eventual_count():
    """With the true delay law, Σ 1/F(e) over observed conversions estimates the number of
    eventual conversions (the capped weights only under-count the newest clicks)."""
    elapsed, _, seen = synthetic(200_000, p=0.2, mean=24.0, horizon=240.0, seed=3)
    fit = DelayFit(p=0.2, rate=1 / 24.0, p_item=np.zeros(1), iterations=1)
    total = ipw_weights(elapsed[seen], fit, cap=np.inf).sum()
    assert total == pytest.approx(0.2 * elapsed.size, rel=0.03)
    assert ipw_weights(elapsed[seen], fit).sum() < total


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    p=st.floats(0.01, 0.9),
    mean=st.floats(1.0, 200.0),
    horizon=st.floats(1.0, 500.0),
    seed=st.integers(0, 2**16),
)
def test_weights_are_bounded(n, p, mean, horizon, seed):
    elapsed, delay, seen = synthetic(n, p, mean, horizon, seed)
    items = np.random.default_rng(seed).integers(0, 5, n)
    for correction in ("none", "ipw", "dfm"):
        w = label_weights(correction, elapsed, delay, seen, items, 5)
        assert np.all(np.isfinite(w))
        if correction == "ipw":
            assert np.all(w[seen] >= 1.0) and np.all(w[seen] <= IPW_CAP)
            assert np.all(w[~seen] == 0)
        elif correction == "dfm":
            assert np.all(w[seen] == 1.0)
            assert np.all((w[~seen] >= 0) & (w[~seen] < 1))
        else:
            np.testing.assert_array_equal(w, seen.astype(float))


def test_no_conversion_yet_leaves_an_empty_label_set():
    elapsed = np.array([1.0, 2.0])
    seen = np.zeros(2, bool)
    for correction in ("ipw", "dfm"):
        w = label_weights(correction, elapsed, np.full(2, np.nan), seen, np.zeros(2, int), 1)
        np.testing.assert_array_equal(w, [0.0, 0.0])


def test_weighted_pairs_sum_and_zero_weights_are_left_out():
    users = np.array([0, 0, 1, 2])
    items = np.array([1, 1, 0, 2])
    m = Interactions.from_pairs(users, items, 3, 3, weights=np.array([0.5, 2.0, 0.0, 1.0])).clicks
    assert m.nnz == 2
    assert m[0, 1] == pytest.approx(2.5) and m[2, 2] == 1.0 and m[1, 0] == 0
    plain = Interactions.from_pairs(users, items, 3, 3).clicks
    assert plain[0, 1] == 2 and plain[1, 0] == 1


@settings(max_examples=50, deadline=None)
@given(q=st.floats(0.0, 3.0), alpha=st.floats(0.5, 40.0))
def test_soft_labels_keep_implicit_als_expected_loss(q, alpha):
    """``w (t − s)²`` and ``q·α(1 − s)² + (1 − q)·s²`` (for q ≤ 1; ``q·α(1 − s)²`` for a sum of
    labels q ≥ 1, implicit's confidence) differ by a constant in the score s."""
    w, t = soft_label_least_squares(np.array([q]), alpha)
    s = np.linspace(-2.0, 3.0, 7)
    if q <= 1:
        expected = q * alpha * (1 - s) ** 2 + (1 - q) * s**2
    else:
        expected = q * alpha * (1 - s) ** 2
    diff = w[0] * (t[0] - s) ** 2 - expected
    np.testing.assert_allclose(diff, diff[0], atol=1e-9 * (1 + alpha * q))
