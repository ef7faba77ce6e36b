"""Cross-domain transfer's seeder: B profiles, the ridge map and what it does for new users."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.second_domain import TransferConfig
from agents.streams import Streams
from agents.world import WorldConfig, build_world
from policies.als import ALSScorer
from policies.baselines import PopularityScorer
from policies.interactions import Interactions
from policies.models import ALSModel
from policies.pipeline import Deployment
from policies.transfer import TransferSeeder, click_profiles, cross_validated_r2, ridge_map


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(5, 40),
    k=st.integers(1, 6),
    f=st.integers(1, 5),
    lam=st.floats(1e-3, 50.0),
    seed=st.integers(0, 2**16),
)
def test_ridge_map_matches_an_augmented_least_squares(n, k, f, lam, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, k)) + rng.standard_normal(k)
    y = rng.standard_normal((n, f)) * 2 + 1
    weights, bias = ridge_map(p, y, lam)
    # independently: least squares on [P 1] with penalty rows sqrt(λ)·[I 0] (intercept free)
    design = np.vstack(
        [np.hstack([p, np.ones((n, 1))]), np.hstack([np.sqrt(lam) * np.eye(k), np.zeros((k, 1))])]
    )
    target = np.vstack([y, np.zeros((k, f))])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    np.testing.assert_allclose(weights, solution[:k], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(bias, solution[k], rtol=1e-7, atol=1e-9)


def test_profiles_are_the_truncated_svd_of_the_normalized_clicks():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.4, (60, 25)).astype(float)
    counts[[3, 17]] = 0.0  # users without activity there
    profiles = click_profiles(sp.csr_matrix(counts), 4)
    norms = np.linalg.norm(counts, axis=1, keepdims=True)
    scaled = np.divide(counts, norms, out=np.zeros_like(counts), where=norms > 0)
    u, s, _ = np.linalg.svd(scaled, full_matrices=False)
    expected = u[:, :4] * s[:4]
    signs = np.sign((profiles * expected).sum(axis=0))  # singular vectors' sign is arbitrary
    np.testing.assert_allclose(profiles * signs, expected, atol=1e-9)
    np.testing.assert_array_equal(profiles[[3, 17]], 0.0)
    assert click_profiles(sp.csr_matrix(counts), 100).shape == (60, 25)  # rank ≤ items_B


def _als_model(user_factors: np.ndarray, cold: np.ndarray, n_items: int = 7) -> ALSModel:
    n_users = user_factors.shape[0]
    empty = Interactions.empty(n_users, n_items)
    return ALSModel(
        version=0,
        seen=empty.clicks,
        user_factors=user_factors.astype(np.float32),
        item_factors=np.ones((n_items, user_factors.shape[1]), np.float32),
        fallback=PopularityScorer().fit(empty, 0),
        cold=cold.copy(),
    )


def test_seeder_maps_warm_users_and_seeds_only_cold_users_with_b_activity():
    rng = np.random.default_rng(1)
    n, k, f = 60, 3, 2
    profiles = rng.standard_normal((n, k))
    active = np.ones(n, bool)
    active[[5, 50, 51]] = False
    cold = np.zeros(n, bool)
    cold[45:] = True  # 45..59 cold; 50, 51 without B activity
    factors = (profiles @ rng.standard_normal((k, f)) + 0.3 * rng.standard_normal((n, f))).astype(
        np.float32
    )
    factors[cold] = 0.0
    model = _als_model(factors, cold)
    before = model.user_factors.copy()
    seeder = TransferSeeder(profiles, active, regularization=0.5)
    seeder.on_deploy(Deployment(model, np.zeros(7)))
    assert seeder.r2_ > 0.5
    train = ~cold & active  # warm with B activity: not 5
    weights, bias = ridge_map(profiles[train], before[train].astype(np.float64), 0.5)
    seeded = np.flatnonzero(cold & active)
    np.testing.assert_array_equal(seeder.seeded_, seeded)
    np.testing.assert_allclose(
        model.user_factors[seeded], profiles[seeded] @ weights + bias, rtol=1e-5, atol=1e-6
    )
    untouched = np.setdiff1d(np.arange(n), seeded)
    np.testing.assert_array_equal(model.user_factors[untouched], before[untouched])
    np.testing.assert_array_equal(model.cold, cold & ~active)  # 50, 51 stay on the fallback


def test_a_map_without_signal_seeds_nobody():
    rng = np.random.default_rng(2)
    n = 80
    cold = np.zeros(n, bool)
    cold[60:] = True
    factors = rng.standard_normal((n, 2)).astype(np.float32)  # unrelated to the profiles
    factors[cold] = 0.0
    model = _als_model(factors, cold)
    seeder = TransferSeeder(rng.standard_normal((n, 3)), np.ones(n, bool), min_r2=0.0)
    seeder.on_deploy(Deployment(model, np.zeros(7)))
    assert seeder.r2_ <= 0.0
    assert seeder.seeded_.size == 0 and seeder.map_ is None
    np.testing.assert_array_equal(model.cold, cold)
    np.testing.assert_array_equal(model.user_factors[cold], 0.0)


def _r2_by_hand(p: np.ndarray, y: np.ndarray, lam: float, folds: int) -> float:
    """The pooled held-out R² with each fold's map from an augmented least squares."""
    n, k = p.shape
    residual = total = 0.0
    for fold in range(folds):
        test = np.arange(n) % folds == fold
        pt, yt = p[~test], y[~test]
        design = np.vstack(
            [
                np.hstack([pt, np.ones((pt.shape[0], 1))]),
                np.hstack([np.sqrt(lam) * np.eye(k), np.zeros((k, 1))]),
            ]
        )
        sol = np.linalg.lstsq(design, np.vstack([yt, np.zeros((k, y.shape[1]))]), rcond=None)[0]
        pred = np.hstack([p[test], np.ones((test.sum(), 1))]) @ sol
        residual += ((y[test] - pred) ** 2).sum()
        total += ((y[test] - yt.mean(axis=0)) ** 2).sum()
    return 1.0 - residual / total


@settings(max_examples=20, deadline=None)
@given(n=st.integers(12, 60), noise=st.floats(0.0, 3.0), seed=st.integers(0, 2**16))
def test_cross_validated_r2_matches_a_fold_by_fold_computation(n, noise, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, 3))
    y = p @ rng.standard_normal((3, 2)) + noise * rng.standard_normal((n, 2))
    assert cross_validated_r2(p, y, 0.7) == pytest.approx(_r2_by_hand(p, y, 0.7, 5), rel=1e-9)


def test_seeder_needs_an_als_model():
    seeder = TransferSeeder(np.zeros((4, 2)), np.ones(4, bool))
    fallback = PopularityScorer().fit(Interactions.empty(4, 3), 0)
    with pytest.raises(TypeError, match="seeds ALS user factors"):
        seeder.on_deploy(Deployment(fallback, np.zeros(3)))


def _ndcg(scores: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Per-row NDCG@k of ranking by ``scores`` against graded ``relevance`` (independent)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.argsort(-scores, axis=1)[:, :k]
    ideal = -np.sort(-relevance, axis=1)[:, :k]
    return (np.take_along_axis(relevance, top, axis=1) @ discount) / (ideal @ discount)


def _new_user_ndcg(
    correlation: float, min_r2: float | None = None
) -> tuple[float, float, TransferSeeder]:
    """Mean true NDCG@10 of held-out (cold) users ranked by their mapped vector, and by the
    popularity fallback, on a small world: ALS trained on clicks of the other users drawn
    from their true relevance."""
    config = WorldConfig(n_users=1200, n_items=300)
    transfer = TransferConfig(enabled=True, correlation=correlation, n_items=300)
    world = build_world(config, Streams(0), transfer=transfer)
    rng = np.random.default_rng(0)
    warm = np.arange(900)
    truth = world.relevance_matrix(np.arange(config.n_users))
    p = truth[warm] / truth[warm].sum(axis=1, keepdims=True)
    counts = rng.multinomial(rng.poisson(25, warm.size), p)
    users, items = np.nonzero(counts)
    inter = Interactions.from_pairs(users, items, config.n_users, config.n_items)
    model = ALSScorer(factors=16, iterations=10, random_state=0).fit(inter, version=0)
    assert model.cold[900:].all() and not model.cold[:900].any()
    popularity = np.tile(model.fallback.ranking_score, (300, 1))
    seeder = TransferSeeder.from_clicks(
        world.second_domain.clicks, transfer.profile_dim, transfer.regularization, min_r2
    )
    seeder.on_deploy(Deployment(model, np.zeros(config.n_items)))
    new = np.arange(900, 1200)
    mapped = model.user_factors[new] @ model.item_factors.T
    return _ndcg(mapped, truth[new], 10).mean(), _ndcg(popularity, truth[new], 10).mean(), seeder


def test_mapped_vectors_rank_new_users_better_than_popularity():
    mapped, popularity, seeder = _new_user_ndcg(0.7)
    np.testing.assert_array_equal(seeder.seeded_, np.arange(900, 1200))
    assert mapped > popularity + 0.03, (mapped, popularity)
    unrelated, _, _ = _new_user_ndcg(0.0)  # preferences unrelated across the domains
    assert mapped > unrelated + 0.03, (mapped, unrelated)
    # there the map has no signal: with the R² gate, nobody is seeded
    _, _, seeder = _new_user_ndcg(0.0, min_r2=0.0)
    assert seeder.r2_ <= 0.0 and seeder.seeded_.size == 0
