"""Content bootstrapping for items: the ridge map, its cross-validated λ, the blend, the scorer."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from experiments.config import ConfigError, parse_config
from policies.als import ALSScorer
from policies.components import BuildContext
from policies.content_map import (
    FOLD_STREAM,
    cv_r2,
    fit_content_map,
    fit_ridge,
    fold_ids,
    learned_weight,
)
from policies.interactions import Interactions
from policies.scorers import ALS
from tests.conftest import tiny_config

LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _problem(n: int = 60, p: int = 6, f: int = 4, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, size=p) + rng.normal(size=p)
    w = rng.normal(size=(p, f))
    y = x @ w + 2.0 + noise * rng.normal(size=(n, f))
    return x, y


def _ridge_by_augmentation(x, y, lam):
    """Standardize, center y, and solve the ridge as an ordinary least squares on the augmented
    system [Z; √λ I] β = [y_c; 0] (an independent route to the same estimator)."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / sd
    ybar = y.mean(axis=0)
    p = x.shape[1]
    a = np.vstack([z, np.sqrt(lam) * np.eye(p)])
    b = np.vstack([y - ybar, np.zeros((p, y.shape[1]))])
    beta, *_ = np.linalg.lstsq(a, b, rcond=None)
    return lambda xn: ((xn - mean) / sd) @ beta + ybar


@pytest.mark.parametrize("lam", LAMBDAS)
def test_ridge_matches_the_augmented_least_squares(lam):
    x, y = _problem()
    x_new = np.random.default_rng(1).normal(size=(7, x.shape[1]))
    ridge = fit_ridge(x, y, [lam])[0]
    np.testing.assert_allclose(ridge.predict(x_new), _ridge_by_augmentation(x, y, lam)(x_new))


def test_ridge_leaves_a_constant_column_alone():
    x, y = _problem()
    x[:, 2] = 4.0
    ridge = fit_ridge(x, y, [1.0])[0]
    reference = _ridge_by_augmentation(np.delete(x, 2, axis=1), y, 1.0)
    np.testing.assert_allclose(ridge.predict(x), reference(np.delete(x, 2, axis=1)))


def test_cv_r2_matches_a_loop_over_folds_with_normal_equations():
    x, y = _problem(n=53)
    folds = fold_ids(53, 5, np.random.default_rng(3))
    expected = []
    for lam in LAMBDAS:
        sse = 0.0
        for k in range(5):
            tr, te = folds != k, folds == k
            mean, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
            z = (x[tr] - mean) / sd
            ybar = y[tr].mean(axis=0)
            beta = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y[tr] - ybar))
            sse += (((x[te] - mean) / sd @ beta + ybar - y[te]) ** 2).sum()
        expected.append(1 - sse / ((y - y.mean(axis=0)) ** 2).sum())
    np.testing.assert_allclose(cv_r2(x, y, LAMBDAS, folds), expected)


def test_folds_are_balanced():
    counts = np.bincount(fold_ids(23, 5, np.random.default_rng(0)), minlength=5)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1


def test_the_map_picks_the_best_cv_lambda_and_refits_on_the_warm_items():
    x, y = _problem(n=80, noise=2.0, seed=5)
    n_clicks = np.r_[np.full(60, 3), np.zeros(20, dtype=int)]  # the last 20 items are cold
    fitted = fit_content_map(
        x, y, n_clicks, warm_clicks=3, lambdas=LAMBDAS, blend_k=5.0, seed=11, version=2
    )
    # The same folds (the map's named stream for version 2), everything else recomputed here.
    key = (zlib.crc32(FOLD_STREAM.encode()), 2)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(11, spawn_key=key)))
    folds = rng.permutation(60) % 5
    scores = cv_r2(x[:60], y[:60], LAMBDAS, folds)
    best = int(np.argmax(scores))
    assert fitted.lambda_ == LAMBDAS[best]
    assert fitted.cv_r2 == pytest.approx(scores[best])
    assert fitted.n_warm == 60
    reference = _ridge_by_augmentation(x[:60], y[:60], LAMBDAS[best])
    np.testing.assert_allclose(fitted.predicted, reference(x), rtol=1e-9, atol=1e-9)


def test_signal_picks_a_small_lambda_and_noise_the_largest():
    x, y = _problem(n=200, noise=0.01)
    clicks = np.full(200, 5)
    clean = fit_content_map(
        x, y, clicks, warm_clicks=3, lambdas=LAMBDAS, blend_k=5.0, seed=0, version=0
    )
    assert clean.lambda_ <= 0.1 and clean.cv_r2 > 0.99
    pure_noise = np.random.default_rng(9).normal(size=y.shape)
    noisy = fit_content_map(
        x, pure_noise, clicks, warm_clicks=3, lambdas=LAMBDAS, blend_k=5.0, seed=0, version=0
    )
    assert noisy.lambda_ == 100.0 and noisy.cv_r2 < 0.05


def test_too_few_warm_items_fit_nothing():
    x, y = _problem(n=30)
    clicks = np.r_[np.full(9, 4), np.zeros(21, dtype=int)]
    fitted = fit_content_map(
        x, y, clicks, warm_clicks=3, lambdas=LAMBDAS, blend_k=5.0, seed=0, version=0
    )
    assert np.isnan(fitted.lambda_) and fitted.n_warm == 9
    assert not fitted.predicted.any()


def test_blend_weights():
    n = np.array([0, 1, 5, 10, 95])
    np.testing.assert_allclose(learned_weight(n, 5.0), [0, 1 / 6, 0.5, 2 / 3, 0.95])
    np.testing.assert_array_equal(learned_weight(n, None), [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(learned_weight(n, 0.0), [0, 1, 1, 1, 1])


# --- the scorer --------------------------------------------------------------------------------
def _interactions(n_users: int = 80, n_items: int = 60, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    # Items 0..39 get clicks (a few of them only one or two), items 40..59 none.
    users = rng.integers(0, n_users, size=600)
    items = rng.integers(0, 40, size=600)
    items[:3] = [37, 38, 38]
    return Interactions.from_pairs(users, items, n_users, n_items)


def _scorer(**kw) -> ALSScorer:
    return ALSScorer(factors=6, iterations=4, random_state=3, **kw)


def test_scorer_serves_the_blend_and_keeps_user_factors():
    inter = _interactions()
    content = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32)
    plain = _scorer().fit(inter, 0)
    mapped = _scorer(content_map=True, item_content=content, content_blend_k=2.0).fit(inter, 0)
    np.testing.assert_array_equal(mapped.user_factors, plain.user_factors)
    np.testing.assert_array_equal(mapped.cold, plain.cold)
    n = np.asarray(inter.clicks.sum(axis=0)).ravel()
    fitted = fit_content_map(
        content,
        plain.item_factors,
        n,
        warm_clicks=3,
        lambdas=LAMBDAS,
        blend_k=2.0,
        seed=3,
        version=0,
    )
    w = n / (n + 2.0)
    expected = w[:, None] * plain.item_factors + (1 - w[:, None]) * fitted.predicted
    np.testing.assert_allclose(mapped.item_factors, expected, rtol=1e-6, atol=1e-7)
    cold_items = n == 0
    np.testing.assert_allclose(
        mapped.item_factors[cold_items], fitted.predicted[cold_items], rtol=1e-6
    )
    np.testing.assert_array_equal(mapped.item_content_factors, fitted.predicted)
    np.testing.assert_allclose(mapped.item_learned_weight, w)
    assert plain.content_map is None and plain.item_content_factors is None


def test_warm_start_continues_from_unblended_factors():
    inter = _interactions()
    content = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32)
    scorer = _scorer(content_map=True, item_content=content, warm_start=True)
    deployed = scorer.fit(inter, 0)
    own = np.asarray(scorer._model.item_factors)
    assert not np.allclose(own, deployed.item_factors)  # the deployed copy is blended
    reference = _scorer(warm_start=True)
    reference.fit(inter, 0)
    np.testing.assert_array_equal(own, reference._model.item_factors)
    # the next warm-started fits stay identical to the map-less scorer's
    again = scorer.fit(inter, 1)
    again_ref = reference.fit(inter, 1)
    np.testing.assert_array_equal(scorer._model.item_factors, reference._model.item_factors)
    np.testing.assert_array_equal(again.user_factors, again_ref.user_factors)


def test_blending_off_switches_at_the_first_click():
    inter = _interactions()
    content = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32)
    plain = _scorer().fit(inter, 0)
    off = _scorer(content_map=True, item_content=content, content_blend_k=None).fit(inter, 0)
    n = np.asarray(inter.clicks.sum(axis=0)).ravel()
    np.testing.assert_array_equal(off.item_factors[n >= 1], plain.item_factors[n >= 1])
    np.testing.assert_allclose(
        off.item_factors[n == 0], off.item_content_factors[n == 0].astype(np.float32)
    )


# --- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("content_map", "yes"),
        ("content_warm_clicks", 0),
        ("content_warm_clicks", 2.5),
        ("content_lambdas", []),
        ("content_lambdas", [0.1, -1.0]),
        ("content_lambdas", [0.1, 0.0]),
        ("content_lambdas", "1.0"),
        ("content_lambdas", 1.0),
        ("content_blend_k", -1.0),
        ("content_blend_k", "5"),
    ],
)
def test_bad_content_map_keys_fail_with_one_line_naming_the_key(key, value):
    cfg = tiny_config()
    cfg["policy"]["scorer"][key] = value
    with pytest.raises(ConfigError, match=rf"^policy\.scorer\.{key}=") as err:
        parse_config(cfg)
    assert "\n" not in str(err.value)


def test_good_content_map_keys_parse():
    spec = ALS(content_map=True, content_lambdas=[1, 2.5], content_blend_k=None)
    assert spec.content_lambdas == (1.0, 2.5)
    assert ALS(content_blend_k=0).content_blend_k == 0


def test_content_map_without_item_content_fails_clearly():
    ctx = BuildContext(n_users=5, n_items=4, slate_size=2, seed=0)
    with pytest.raises(ValueError, match="content_map=true: needs the items' content"):
        ALS(content_map=True).build(ctx)
    ALS().build(ctx)  # off: content is not needed


def test_defaults_build_the_scorer_as_before():
    ctx = BuildContext(
        n_users=5, n_items=4, slate_size=2, seed=0, item_content=np.zeros((4, 3), np.float32)
    )
    scorer = ALS().build(ctx)
    assert scorer.content_map is False and scorer.item_content is None
    model = scorer.fit(Interactions.from_pairs(np.r_[0, 1], np.r_[0, 2], 5, 4), 0)
    assert model.content_map is None
    assert isinstance(model.seen, sp.csr_matrix)
