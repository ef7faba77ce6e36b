"""Debiased training data: IPW weights computed independently, clipping, θ sources, config errors,
the unbiased (Rel-MF) fit against a dense solve."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import policy_config
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.config import build_policy_config
from policies.debiasing import ClickWeighting
from policies.interactions import Interactions, RoundImpressions, SlotCounts
from policies.policy import build_policy


def _interactions(users, items, positions, n_users=6, n_items=8, **kw) -> Interactions:
    return Interactions.from_pairs(
        np.asarray(users),
        np.asarray(items),
        n_users,
        n_items,
        click_positions=np.asarray(positions),
        **kw,
    )


@settings(max_examples=50, deadline=None)
@given(
    eta=st.floats(0.0, 3.0),
    clip=st.floats(1.0, 20.0),
    positions=st.lists(st.integers(0, 9), min_size=1, max_size=40),
)
def test_position_ipw_weights_are_inverse_theta_clipped(eta, clip, positions):
    theta = (1.0 / (np.arange(10) + 1.0)) ** eta
    n = len(positions)
    inter = _interactions(np.arange(n) % 6, np.arange(n) % 8, positions)
    w = ClickWeighting("position_ipw", clip=clip, true_theta=theta, n_slots=10).weights(inter)
    expected = [min((k + 1.0) ** eta, clip) for k in positions]  # 1/θ_k, computed directly
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w.max() <= clip + 1e-12 and w.min() >= 1.0 - 1e-12


def test_weighted_matrix_sums_each_pairs_click_weights():
    theta = np.array([1.0, 0.5, 0.25])
    inter = _interactions([0, 0, 1, 0], [2, 2, 3, 5], [0, 2, 1, 1], n_items=6)
    m = ClickWeighting("position_ipw", clip=3.0, true_theta=theta, n_slots=3).matrix(inter)
    # user 0 item 2: clicks at slots 0 and 2 -> 1 + min(4, 3) = 4; user 1 item 3: 2; user 0 item 5: 2
    assert m[0, 2] == pytest.approx(4.0) and m[1, 3] == pytest.approx(2.0)
    assert m[0, 5] == pytest.approx(2.0) and m.nnz == 3
    # no debiasing: the click counts themselves
    plain = ClickWeighting("none").matrix(inter)
    assert plain[0, 2] == 2.0 and plain.nnz == 3


def test_popularity_ipw_downweights_popular_items():
    items = [0] * 9 + [1] * 1 + [2] * 2
    inter = _interactions(np.arange(12) % 6, items, np.zeros(12, int), n_items=3)
    w = ClickWeighting("popularity_ipw", clip=5.0, popularity_power=1.0).weights(inter)
    mean_pop = np.mean([9, 1, 2])
    expected = [min(mean_pop / {0: 9, 1: 1, 2: 2}[i], 5.0) for i in items]
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_randomized_theta_is_the_ctr_ratio_and_falls_back_without_data():
    slots = SlotCounts(np.array([1000.0, 800.0, 500.0]), np.array([100.0, 40.0, 10.0]))
    inter = _interactions([0], [0], [0], randomized_slots=slots)
    weighting = ClickWeighting("position_ipw", propensity="randomized", n_slots=3)
    np.testing.assert_allclose(weighting.theta(inter), [1.0, 0.05 / 0.1, 0.02 / 0.1])
    assert weighting.theta(_interactions([0], [0], [0])).tolist() == [1.0, 1.0, 1.0]


EM_SLOTS = 5
EM_THETA = 1.0 / (np.arange(EM_SLOTS) + 1.0)  # η = 1


def _em_round(seed: int, n_req: int = 6000) -> Interactions:
    """One round of ``n_req`` noisily ranked requests clicked with ``EM_THETA[k] · sigmoid(s - 1)``."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=(n_req, EM_SLOTS))
    order = np.argsort(-(score + rng.normal(0, 1.0, score.shape)), axis=1)  # noisy ranking
    score = np.take_along_axis(score, order, axis=1)
    rel = 1 / (1 + np.exp(-(score - 1.0)))
    clicked = rng.random((n_req, EM_SLOTS)) < EM_THETA * rel
    e = np.zeros(n_req * EM_SLOTS, np.int64)
    slots = np.tile(np.arange(EM_SLOTS), n_req)
    rnd = RoundImpressions(e, e, clicked.ravel(), e, slots, score.ravel())
    return _interactions([0], [0], [0], latest_round=rnd)


def test_em_theta_recovers_a_known_curve_from_the_latest_round():
    # Tolerance: the mean + 5 SD of max_k |θ̂_k - θ_k| over 200 seeds (1000..1199) of the same
    # 6k-request round, rounded up (numpy 2.4.6, 2026-12-02): mean 0.0213, SD 0.0084, largest
    # 0.0459 (2.9 SD); per-slot SD 0.013-0.016, no slot's mean error beyond 1.9 of its standard
    # errors. Five SD as in test_position_bias.py (right-skewed maxima). Seed 0 measures 0.0102.
    est = ClickWeighting("position_ipw", propensity="em", n_slots=EM_SLOTS).theta(_em_round(seed=0))
    assert np.max(np.abs(est - EM_THETA)) < 0.064


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"debias": "position_ipw", "ipw_clip": 0.5}, "policy.debias.clip=0.5"),
        (
            {"debias": "position_ipw", "ipw_propensity": "randomized"},
            "policy.debias.propensity",
        ),
        (
            {"debias": "popularity_ipw", "scorer": "popularity"},
            "policy.debias.mode='popularity_ipw'",
        ),
        ({"debias": "popularity_ipw", "popularity_power": -1}, "policy.debias.popularity_power=-1"),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        policy_config(**overrides)


def test_unknown_debias_mode_is_named():
    node = {"_target_": "policies.debiasing.Debias", "mode": "magic"}
    with pytest.raises(ValueError, match=re.escape("policy.debias.mode='magic'")):
        build_policy_config({"name": "p", "scorer": "als", "selector": "greedy", "debias": node})


def test_exposure_matrix_is_implicits_form_of_the_weighted_objective():
    """implicit on the exposure matrix solves the same normal equations as our weighted ALS with
    P = alpha·clicks and N = 1 + β·m on shown-never-clicked pairs (written out independently)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from policies.weighted_als import solve_factors

    rng = np.random.default_rng(4)
    n_users, n_items, alpha, beta = 12, 15, 10.0, 2.0
    cu, ci = rng.integers(0, n_users, 40), rng.integers(0, n_items, 40)
    eu, ei = rng.integers(0, n_users, 120), rng.integers(0, n_items, 120)
    inter = Interactions.from_pairs(
        cu, ci, n_users, n_items, click_positions=np.zeros(40, int), exposures=(eu, ei)
    )
    w = ClickWeighting("exposure", alpha=alpha, exposure_weight=beta)
    train = w.matrix(inter)
    clicked = inter.clicks.toarray()
    shown = np.zeros((n_users, n_items))
    np.add.at(shown, (eu, ei), 1.0)
    negatives = np.where((clicked == 0) & (shown > 0), 1.0 + beta * shown, 0.0)
    import scipy.sparse as sp

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=3, regularization=0.1, alpha=alpha, iterations=2, use_cg=False, random_state=0
        )
        model.fit(train, show_progress=False)
        ours = model.recalculate_user(np.arange(n_users), train)
    ref = solve_factors(
        sp.csr_matrix(alpha * clicked),
        sp.csr_matrix(negatives),
        np.asarray(model.item_factors, dtype=np.float64),
        unobserved_weight=1.0,
        regularization=0.1,
    )
    np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=1e-5)
    assert (negatives > 0).sum() == (train.toarray() < 0).sum() > 0


def test_position_unbiased_policy_solves_the_rel_mf_objective():
    """The ``position_unbiased`` preset, built and fitted as a run does, against dense numpy.

    Rel-MF with unit weights on *every* (user, item) entry: minimize
    ``Σ_ui (t_ui − x_u·y_i)² + λ(‖X‖² + ‖Y‖²)``, ``t_ui = Σ min(1/θ_k, clip)`` over the pair's clicks
    (0 for unclicked pairs; λ not scaled by counts). Two independent checks:

    * the fixed point: every user's normal equations ``(YᵀY + λI) x_u = Yᵀ t_u`` hold for the
      returned factors, and every item's ``(XᵀX + λI) y_i = Xᵀ t_i`` (ALS has converged);
    * the global minimum: with every entry weighed 1 the objective is ``‖T − XYᵀ‖² + λ(‖X‖² +
      ‖Y‖²)``, whose minimum over rank-f factors is ``XYᵀ = Σ_{j≤f} (σ_j − λ)₊ u_j v_jᵀ`` (SVD of
      T, singular values soft-thresholded by λ: ``λ(‖X‖²+‖Y‖²) ≥ 2λ‖XYᵀ‖_*``, equal at balanced
      factors). The served scores must equal it.

    Swapping the positives (weights) and targets makes the weights ``Σ 1/θ`` and every target 1:
    both checks fail.
    """
    theta = np.array([1.0, 0.5, 0.2, 0.05])  # 1/θ = 1, 2, 5, 20: slot 3 is clipped at 10
    clip, lam, f = 10.0, 1.0, 2
    # clicks (user, item, slot); (0, 0) and (2, 2) are clicked twice, at different slots
    log = [(0, 0, 0), (0, 1, 1), (0, 2, 3), (1, 0, 2), (1, 3, 0), (2, 1, 0), (2, 2, 1),
           (2, 4, 2), (3, 0, 3), (3, 4, 1), (4, 3, 0), (4, 2, 2), (5, 1, 1), (5, 4, 3),
           (5, 0, 0), (0, 0, 2), (2, 2, 0)]  # fmt: skip
    users, items, slots = np.array(log).T
    n_users, n_items = 6, 5
    targets = np.zeros((n_users, n_items))
    for u, i, k in log:
        targets[u, i] += min(1.0 / theta[k], clip)
    assert targets[0, 0] == 6.0 and targets[0, 2] == 10.0  # repeated clicks sum; clip applies

    config = policy_config(
        "position_unbiased",
        factors=f,
        regularization=lam,
        # The error shrinks ~0.75x per sweep (measured; about (σ₃/σ₂)² = 0.72): 50 sweeps reach
        # float32 precision, 100 leave a margin.
        iterations=100,
        ipw_clip=clip,
        slate_size=theta.size,
        n_candidates=theta.size,
    )
    policy = build_policy(config, n_items, n_users, seed=0, examination=theta)
    inter = Interactions.from_pairs(users, items, n_users, n_items, click_positions=slots)
    model = policy.fit(inter, version=0).model
    x = model.user_factors.astype(np.float64)
    y = model.item_factors.astype(np.float64)

    # The factors are float32: residuals of size ~1e-6 on normal equations of size ~1e2.
    tol = 1e-4
    ridge = lam * np.eye(f)
    np.testing.assert_allclose((y.T @ y + ridge) @ x.T, y.T @ targets.T, atol=tol)
    np.testing.assert_allclose((x.T @ x + ridge) @ y.T, x.T @ targets, atol=tol)

    u, s, vt = np.linalg.svd(targets)
    assert s[f - 1] > lam  # the minimum has rank f: a non-trivial check
    best = (u[:, :f] * (s[:f] - lam)) @ vt[:f]
    scores = model.score(np.arange(n_users), np.tile(np.arange(n_items), (n_users, 1)))
    np.testing.assert_allclose(scores, best, atol=tol)
